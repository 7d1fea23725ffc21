"""Bad-input cases: exact head patching on a subset of heads, its shards assembled, and sharded
over an executor (see base.py). Every case fails before any worker starts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from bad_cases.base import Case, api
from iteration_heads.pathways.patching_shards import assemble_head_patching, split_heads
from iteration_heads.pathways.restoration import head_patching
from iteration_heads.runs import LocalExecutor
from iteration_heads.runs.sharding import sharded_head_patching

AREA = "sharding"
S = "sharded_head_patching({})"
OK = "'untrained', sh_prompts, sh_ex"
HP = "head_patching(model, sh_prompts, method='exact', heads={})"

CASES: list[Case] = [
    api(AREA, "zero shards", S.format(f"{OK}, shards=0")),
    api(AREA, "negative shards", S.format(f"{OK}, shards=-1")),
    api(AREA, "more shards than heads", S.format(f"{OK}, shards=3")),
    api(AREA, "float shards", S.format(f"{OK}, shards=2.0")),
    api(AREA, "bool shards", S.format(f"{OK}, shards=True")),
    api(AREA, "string shards", S.format(f"{OK}, shards='2'")),
    api(AREA, "live model instead of a path", S.format("model, sh_prompts, sh_ex")),
    api(AREA, "model source a number", S.format("3, sh_prompts, sh_ex")),
    api(AREA, "model source None", S.format("None, sh_prompts, sh_ex")),
    api(AREA, "model source empty", S.format("'', sh_prompts, sh_ex")),
    api(AREA, "model source a file", S.format("'afile', sh_prompts, sh_ex")),
    api(AREA, "model source an empty folder", S.format("'adir', sh_prompts, sh_ex")),
    api(AREA, "model source missing", S.format("'no/such/model', sh_prompts, sh_ex")),
    api(AREA, "model source a symlink loop", S.format("'loop1', sh_prompts, sh_ex")),
    api(AREA, "model source a broken link", S.format("'broken', sh_prompts, sh_ex")),
    api(AREA, "prompts without corruption", S.format("'untrained', sh_bare, sh_ex")),
    api(AREA, "token tensor for prompts", S.format("'untrained', tokens, sh_ex")),
    api(AREA, "prompt labelled all", S.format("'untrained', sh_all, sh_ex")),
    api(AREA, "clean token beyond the vocabulary", S.format("'untrained', sh_far_clean, sh_ex")),
    api(AREA, "answer beyond the vocabulary", S.format("'untrained', sh_far_answer, sh_ex")),
    api(AREA, "corrupted token beyond the vocabulary", S.format("'untrained', sh_far_corr, sh_ex")),
    api(AREA, "executor None", S.format("'untrained', sh_prompts, None")),
    api(AREA, "executor by name", S.format("'untrained', sh_prompts, 'local'")),
    api(AREA, "executor factory not called", S.format("'untrained', sh_prompts, make_executor")),
    api(AREA, "negative min_kl", S.format(f"{OK}, min_kl=-1")),
    api(AREA, "NaN min_kl", S.format(f"{OK}, min_kl=float('nan')")),
    api(AREA, "string min_kl", S.format(f"{OK}, min_kl='0.1'")),
    api(AREA, "zero batch size", S.format(f"{OK}, batch_size=0")),
    api(AREA, "float batch size", S.format(f"{OK}, batch_size=8.0")),
    api(
        AREA,
        "heads with the attribution method",
        HP.replace("'exact'", "'attribution'").format([(0, 0)]),
    ),
    api(AREA, "head beyond the layers", HP.format([(2, 0)])),
    api(AREA, "negative head", HP.format([(0, -1)])),
    api(AREA, "head not a pair", HP.format([0])),
    api(AREA, "heads as a string", HP.format("'all'")),
    api(AREA, "no head", HP.format([])),
    api(AREA, "bool in a head", HP.format([(True, 0)])),
    api(AREA, "assemble nothing", "assemble_head_patching([])"),
    api(AREA, "assemble a head missing", "assemble_head_patching(sh_parts[:1])"),
    api(AREA, "assemble a head twice", "assemble_head_patching([*sh_parts, sh_parts[0]])"),
    api(AREA, "assemble other prompts", "assemble_head_patching([sh_parts[0], sh_other])"),
    api(AREA, "assemble a string", "assemble_head_patching('shards')"),
    api(AREA, "split into zero shards", "split_heads(2, 1, 0)"),
]


def prepare(work: Path, namespace: dict[str, Any]) -> None:
    """Prompts for the tiny model (2 layers x 1 head), broken ways, an executor that starts no
    worker until a call, and the two shards of a patching result."""
    steps = namespace["steps"]
    few = steps.select(list(range(6)))
    from helpers import tiny_model

    model = tiny_model()  # not the cases' model: a first forward pass sets up the bridge's hooks
    parts = [(h, head_patching(model, few, method="exact", min_kl=0.0, heads=h))
             for h in split_heads(2, 1, 2)]  # fmt: skip
    other = head_patching(model, steps.select([0, 1]), method="exact", min_kl=0.0, heads=[(1, 0)])
    assert few.corrupted is not None
    namespace.update(
        sharded_head_patching=sharded_head_patching,
        head_patching=head_patching,
        assemble_head_patching=assemble_head_patching,
        split_heads=split_heads,
        sh_ex=LocalExecutor(jobs=1),
        sh_prompts=few,
        sh_bare=dataclasses.replace(few, corrupted=None),
        sh_all=dataclasses.replace(few, labels=("all",) * len(few)),
        sh_far_clean=dataclasses.replace(few, clean=few.clean + 100),
        sh_far_answer=dataclasses.replace(few, answer=few.answer + 100),
        sh_far_corr=dataclasses.replace(few, corrupted=torch.full_like(few.corrupted, 999)),
        sh_parts=parts,
        sh_other=([(1, 0)], other),
    )
