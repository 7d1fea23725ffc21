"""Bad-input cases: pruning curves estimated by attribution with an exact check of the circuit
(``linear_pruning_curve``) (see base.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from bad_cases.base import Case, api
from iteration_heads.pathways import all_heads
from iteration_heads.pathways.pruning_attribution import linear_pruning_curve

AREA = "pruning by attribution"
L = "lpc(model, lp_few, {}, lp_ref{})"


def call(options: str = "", ranking: str = "lp_rank") -> str:
    return L.format(ranking, options and f", {options}")


CASES: list[Case] = [
    api(AREA, "ranking a string", call(ranking="'heads'")),
    api(AREA, "ranking empty", call(ranking="[]")),
    api(AREA, "ranking missing a head", call(ranking="lp_rank[:-1]")),
    api(AREA, "ranking repeats a head", call(ranking="lp_rank[:-1] + lp_rank[:1]")),
    api(AREA, "ranking head beyond the model", call(ranking="lp_rank[:-1] + [(99, 0)]")),
    api(AREA, "ks empty", call("ks=[]")),
    api(AREA, "k beyond the heads", call("ks=[999]")),
    api(AREA, "k negative", call("ks=[-1]")),
    api(AREA, "k a boolean", call("ks=[True]")),
    api(AREA, "k a float", call("ks=[1.5]")),
    api(AREA, "threshold above 1", call("threshold=1.5")),
    api(AREA, "threshold negative", call("threshold=-0.1")),
    api(AREA, "threshold NaN", call("threshold=float('nan')")),
    api(AREA, "threshold a string", call("threshold='0.9'")),
    api(AREA, "threshold a boolean", call("threshold=True")),
    api(AREA, "n_random zero", call("n_random=0")),
    api(AREA, "n_random a float", call("n_random=2.0")),
    api(AREA, "seed negative", call("seed=-1")),
    api(AREA, "seed a string", call("seed='0'")),
    api(AREA, "batch_size zero", call("batch_size=0")),
    api(AREA, "batch_size a float", call("batch_size=4.0")),
    api(AREA, "candidates one", call("candidates=1")),
    api(AREA, "candidates a string", call("candidates='5'")),
    api(AREA, "steps zero", call("steps=0")),
    api(AREA, "steps a boolean", call("steps=True")),
    api(AREA, "mean unknown", call("mean='median'")),
    api(AREA, "reference narrower than the prompts", L.format("lp_rank", "[:, :2]")),
    api(AREA, "reference one sequence, 1-D", L.format("lp_rank", "[0]")),
    api(AREA, "reference token beyond the vocabulary", L.format("lp_rank", " + 1000")),
    api(AREA, "reference of floats", L.format("lp_rank", ".float() + 0.5")),
    api(AREA, "reference mask of another shape", call("reference_mask=lp_mask[:, :-1]")),
    api(AREA, "reference mask of integers", call("reference_mask=lp_mask.int()")),
    api(AREA, "reference mask with no real token", call("reference_mask=lp_mask & False")),
    api(AREA, "prompts bare token ids", "lpc(model, lp_few.clean, lp_rank, lp_ref)"),
    api(AREA, "prompt token beyond the vocabulary", "lpc(model, lp_far, lp_rank, lp_ref)"),
    api(AREA, "model a string", "lpc('gpt2', lp_few, lp_rank, lp_ref)"),
]


def prepare(work: Path, namespace: dict[str, Any]) -> None:
    """A few prompts, a reference with its mask, and every head of the cases' model."""
    few = namespace["steps"].select(list(range(6)))
    ref = namespace["tokens"][:6]
    mask = torch.ones(ref.shape, dtype=torch.bool)
    mask[:, -2:] = False
    namespace.update(
        lpc=linear_pruning_curve,
        lp_few=few,
        lp_ref=ref,
        lp_mask=mask,
        lp_rank=all_heads(namespace["model"]),
        lp_far=dataclasses.replace(few, clean=few.clean + 100),
    )
