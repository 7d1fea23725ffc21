"""Bad-input cases: the pathway analyses (foils, robust aggregates, mean ablation over whole sequences, pruning) (see base.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

import iteration_heads.pathways as pathways_module
from bad_cases.base import Case, api
from iteration_heads.pathways.reference import reference_means
from iteration_heads.pathways.restoration import head_patching
from iteration_heads.viz.pathway_circuits import head_patching_heatmap

AREA = "pathways"
W = "pw.answer_writers(model, {})"
P = "pw.pruned_logits(model, few, [(1, 0)], ref{})"

CASES: list[Case] = [
    api(AREA, "centre unknown", W.format("few, centre='mean'")),
    api(AREA, "centre not a string", W.format("few, centre=1")),
    api(AREA, "centre foils without foils", W.format("bare, centre='foils'")),
    api(AREA, "foil token beyond the vocabulary", W.format("far_foils")),
    api(AREA, "foil token below -1", W.format("low_foils")),
    api(AREA, "trace centre unknown", "pw.trace_flow(model, few, centre='answer')"),
    api(
        AREA,
        "trace centre foils on bare tokens",
        "pw.trace_flow(model, few.clean[0], centre='foils')",
    ),
    api(AREA, "traces centre foils without foils", "pw.trace_flows(model, bare, centre='foils')"),
    api(AREA, "traces unknown option", "pw.trace_flows(model, few, writer=2)"),
    api(AREA, "trace_many centre misspelt", "pw.trace_many(model, few, centre='vocabulary')"),
    api(
        AREA,
        "pruning mean unknown",
        "pw.pruning_curve(model, few, [(0, 0), (1, 0)], ref, mean='median')",
    ),
    api(
        AREA, "pruning mean None", "pw.pruning_curve(model, few, [(0, 0), (1, 0)], ref, mean=None)"
    ),
    api(
        AREA,
        "pruning mask of floats",
        "pw.pruning_curve(model, few, [(0, 0), (1, 0)], ref, reference_mask=mask.float())",
    ),
    api(
        AREA,
        "pruning mask of another shape",
        "pw.pruning_curve(model, few, [(0, 0), (1, 0)], ref, reference_mask=mask[:, :3])",
    ),
    api(
        AREA,
        "pruning mask with no real token",
        "pw.pruning_curve(model, few, [(0, 0), (1, 0)], ref, reference_mask=~mask & False)",
    ),
    api(
        AREA,
        "ablation check mean misspelt",
        "pw.ablation_check(model, few, [(1, 0)], ref, mean='Position')",
    ),
    api(
        AREA,
        "ablation check mask as a list",
        "pw.ablation_check(model, few, [(1, 0)], ref, reference_mask=mask.tolist())",
    ),
    api(AREA, "pruned logits mask of integers", P.format(", reference_mask=mask.int()")),
    api(AREA, "pruned logits mask transposed", P.format(", reference_mask=mask.T")),
    api(
        AREA,
        "pruned logits 1-D reference with sequence mean",
        "pw.pruned_logits(model, few, [(1, 0)], ref[0], mean='sequence')",
    ),
    api(
        AREA,
        "pruned logits float reference with sequence mean",
        "pw.pruned_logits(model, few, [(1, 0)], ref.float(), mean='sequence')",
    ),
    api(AREA, "pruned logits reference narrower than the prompts", P.format("[:, :3]")),
    api(AREA, "pruned predictions no variant", "pw.pruned_predictions(model, few, [], ref)"),
    api(
        AREA,
        "pruned predictions variants as a string",
        "pw.pruned_predictions(model, few, 'L0H0', ref)",
    ),
    api(
        AREA,
        "pruned predictions mean unknown",
        "pw.pruned_predictions(model, few, [[(1, 0)]], ref, mean='token')",
    ),
    api(AREA, "reference means width 0", "reference_means(model, ref, width=0)"),
    api(AREA, "reference means batch size 0", "reference_means(model, ref, batch_size=0)"),
    api(
        AREA,
        "reference means reference token beyond the vocabulary",
        "reference_means(model, ref + 100, mean='sequence')",
    ),
    api(AREA, "patching ranking aggregate unknown", "patching.ranking(aggregate='median')"),
    api(AREA, "patching scores aggregate unknown", "patching.scores('kl', 'sum')"),
    api(AREA, "patching spread label unknown", "patching.spread('nope')"),
    api(AREA, "patching spread metric unknown", "patching.spread(metric='js')"),
    api(AREA, "patching top k negative", "patching.top(-1)"),
    api(AREA, "heatmap aggregate unknown", "head_patching_heatmap(patching, aggregate='robust')"),
]

H = "pw.head_patching(model, {})"
CASES += [
    api(AREA, "head patching method unknown", H.format("few, method='fast'")),
    api(AREA, "head patching method empty", H.format("few, method=''")),
    api(AREA, "head patching method None", H.format("few, method=None")),
    api(AREA, "head patching method an int", H.format("few, method=1")),
    api(AREA, "head patching method True", H.format("few, method=True")),
    api(AREA, "head patching method capitalised", H.format("few, method='Exact'")),
    api(AREA, "head patching method with a space", H.format("few, method='auto '")),
    api(AREA, "head patching method as bytes", H.format("few, method=b'exact'")),
    api(AREA, "head patching method in a list", H.format("few, method=['exact']")),
    api(AREA, "head patching method abbreviated", H.format("few, method='attr'")),
    api(AREA, "attribution with negative min_kl", H.format("few, method='attribution', min_kl=-1")),
    api(AREA, "attribution with batch size 0", H.format("few, method='attribution', batch_size=0")),
    api(AREA, "attribution on a tensor of tokens", H.format("ref, method='attribution'")),
    api(AREA, "attribution without corruption", H.format("uncorrupted, method='attribution'")),
    api(
        AREA, "attribution token beyond the vocabulary", H.format("far_clean, method='attribution'")
    ),
    api(
        AREA,
        "attribution answer beyond the vocabulary",
        H.format("far_answer, method='attribution'"),
    ),
    api(AREA, "choose method unknown", "pw.choose_method(model, few, 'linear')"),
    api(AREA, "choose method None", "pw.choose_method(model, few, None)"),
    api(AREA, "choose method on a list of prompts", "pw.choose_method(model, [few], 'exact')"),
    api(
        AREA,
        "choose method model without a config",
        "pw.choose_method(torch.nn.Linear(2, 2), few, 'auto')",
    ),
    api(AREA, "exact cost prompts a tensor", "pw.exact_cost(model, ref)"),
    api(AREA, "exact cost model None", "pw.exact_cost(None, few)"),
    api(AREA, "exact cost model a path string", "pw.exact_cost('polynomial_paper', few)"),
    api(
        AREA,
        "transformer lens estimates without corruption",
        "pw.transformer_lens_estimates(model, uncorrupted)",
    ),
    api(
        AREA,
        "transformer lens estimates token beyond the vocabulary",
        "pw.transformer_lens_estimates(model, far_clean)",
    ),
    api(
        AREA,
        "transformer lens estimates answer beyond the vocabulary",
        "pw.transformer_lens_estimates(model, far_answer)",
    ),
    api(
        AREA,
        "transformer lens estimates prompts a tensor",
        "pw.transformer_lens_estimates(model, ref)",
    ),
    api(
        AREA,
        "transformer lens estimates model without a config",
        "pw.transformer_lens_estimates(torch.nn.Linear(2, 2), few)",
    ),
]


def prepare(work: Path, namespace: dict[str, Any]) -> None:
    """Prompts with and without foils, a reference with its padding mask, a patching result."""
    from helpers import tiny_model

    steps = namespace["steps"]
    few = steps.select(list(range(6)))
    ref = namespace["tokens"][:6]
    mask = torch.ones(ref.shape, dtype=torch.bool)
    mask[:, -2:] = False
    far, low = few.foils.clone(), few.foils.clone()
    far[:, 0], low[:, 0] = 1000, -3
    namespace.update(
        pw=pathways_module,
        few=few,
        bare=dataclasses.replace(few, foils=None),
        far_foils=dataclasses.replace(few, foils=far),
        low_foils=dataclasses.replace(few, foils=low),
        ref=ref,
        mask=mask,
        reference_means=reference_means,
        head_patching_heatmap=head_patching_heatmap,
        patching=head_patching(tiny_model(), few, min_kl=0.0),  # not the cases' model
        uncorrupted=dataclasses.replace(few, corrupted=None),
        far_clean=dataclasses.replace(few, clean=few.clean + 100),
        far_answer=dataclasses.replace(few, answer=few.answer + 100),
    )
