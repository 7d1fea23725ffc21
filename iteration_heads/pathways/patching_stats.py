"""The aggregates of head patching: ratio of means (the default), mean of per-prompt ratios, and
the spread of the per-prompt scores.

A per-prompt score divides by that prompt's effect of the corruption (``KL(P_clean‖P_corr)`` or
``LD_clean - LD_corr``). A prompt whose corruption barely changes the output makes its score
explode (one prompt at -5,146 drags a head's mean to -29 while its ratio of means is 0.006), so
the ranking and the figures use the **ratio of means** (Dutta et al.'s own aggregate): the mean
restored effect over the mean effect, where every prompt weighs by its effect. The mean of the
per-prompt scores stays available with its spread per head: median, quartiles, inter-quartile
range and the fractions of prompts scoring below -1 or above 2 (restoring "more than
everything", or doing the opposite by more than the corruption did).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.scores import standard_error
from iteration_heads.memory import batch_rows
from iteration_heads.pathways.prompts import Prompts

ALL_LABELS = "all"
"""The label under which every prompt is aggregated."""

SPREAD_STATS = ("median", "q1", "q3", "iqr", "frac_below_-1", "frac_above_2")
"""The per-head statistics of :func:`spread` (``frac_*``: fractions of the included prompts)."""

FIELDS = [f"{m}_{s}" for m in ("kl", "logit_diff") for s in ("score", "stderr", "ratio")]
"""The per-label maps of head patching: per-prompt mean, its standard error, ratio of means."""


def spread(
    per_prompt: Float[Tensor, "layer head n"], rows: Bool[Tensor, " n"]
) -> dict[str, Float[Tensor, "layer head"]]:
    """Median, quartiles, inter-quartile range and the fractions of scores < -1 and > 2 of
    every head over the prompts ``rows`` (NaN scores, the excluded prompts, left out; NaN
    where no prompt is left).

    Example:
        >>> scores = torch.tensor([[[0.9, 1.0, 1.1, -50.0]]], dtype=torch.float64)
        >>> s = spread(scores, torch.tensor([True, True, True, True]))
        >>> round(float(s["median"]), 3), float(s["frac_below_-1"]), float(s["frac_above_2"])
        (0.95, 0.25, 0.0)
    """
    values = per_prompt[..., rows]
    finite = ~torch.isnan(values)
    count = finite.sum(-1)
    if values.shape[-1] == 0 or not bool(finite.any()):
        nan = torch.full(per_prompt.shape[:-1], math.nan, dtype=torch.float64)
        return dict.fromkeys(SPREAD_STATS, nan)
    q1, median, q3 = (torch.nanquantile(values.double(), q, dim=-1) for q in (0.25, 0.5, 0.75))
    size = count.clamp(min=1).double()
    low = ((values < -1) & finite).sum(-1) / size
    high = ((values > 2) & finite).sum(-1) / size
    none = count == 0
    low, high = (torch.where(none, math.nan, x) for x in (low, high))
    return {"median": median, "q1": q1, "q3": q3, "iqr": q3 - q1,
            "frac_below_-1": low, "frac_above_2": high}  # fmt: skip


def patching_aggregates(
    kl_corrupted: Float[Tensor, " n"],
    kl_patched: Float[Tensor, "layer head n"],
    ld_clean: Float[Tensor, " n"],
    ld_corrupted: Float[Tensor, " n"],
    ld_patched: Float[Tensor, "layer head n"],
    labels: Sequence[str],
    included: Bool[Tensor, " n"],
) -> tuple[dict[str, dict[str, Tensor]], dict[str, Tensor], dict[str, int], dict[str, int]]:
    """Every aggregate of head patching per label and over all prompts (``"all"``): the maps of
    :data:`FIELDS`, the per-prompt scores ``kl`` and ``logit_diff`` ``[layer, head, n]``
    (NaN for prompts not ``included``), and the counts of prompts used and excluded.

    ``kl_ratio = (mean KL_corr - mean KL_patched) / mean KL_corr`` and ``logit_diff_ratio =
    (mean LD_patched - mean LD_corr) / mean (LD_clean - LD_corr)``, means over the label's
    included prompts; ``kl_score`` and ``logit_diff_score`` are the means of the per-prompt
    ratios.

    Example:
        >>> kl_c = torch.tensor([1.0, 1.0, 0.001], dtype=torch.float64)
        >>> kl_p = torch.tensor([[[0.1, 0.2, 0.01]]], dtype=torch.float64)
        >>> ld = torch.ones(3, dtype=torch.float64)
        >>> maps, per, n, _ = patching_aggregates(kl_c, kl_p, 2 * ld, ld, ld[None, None],
        ...                                       ["a", "a", "b"], torch.ones(3, dtype=torch.bool))
        >>> round(float(maps["kl_ratio"]["all"]), 4), round(float(maps["kl_score"]["all"]), 2)
        (0.8451, -2.43)
    """
    nan = torch.tensor(math.nan, dtype=torch.float64)
    per_kl = torch.where(included, (kl_corrupted - kl_patched) / kl_corrupted, nan)
    per_ld = torch.where(included, (ld_patched - ld_corrupted) / (ld_clean - ld_corrupted), nan)
    out: dict[str, dict[str, Tensor]] = {name: {} for name in FIELDS}
    n_prompts, n_excluded = {}, {}
    for label in [*dict.fromkeys(labels), ALL_LABELS]:
        rows = torch.tensor([label in (ALL_LABELS, x) for x in labels])
        use = rows & included
        n_prompts[label], n_excluded[label] = int(use.sum()), int((rows & ~included).sum())
        kl_c, kl_p = kl_corrupted[use].mean(), kl_patched[..., use].mean(-1)
        ld_gap = (ld_clean - ld_corrupted)[use].mean()
        ld_ratio = (ld_patched[..., use].mean(-1) - ld_corrupted[use].mean()) / ld_gap
        for name, value in (
            ("kl_score", _mean(per_kl[..., use])),
            ("kl_stderr", _stderr(per_kl[..., use])),
            ("kl_ratio", (kl_c - kl_p) / kl_c),
            ("logit_diff_score", _mean(per_ld[..., use])),
            ("logit_diff_stderr", _stderr(per_ld[..., use])),
            ("logit_diff_ratio", ld_ratio),
        ):
            out[name][label] = value.float()
    return out, {"kl": per_kl, "logit_diff": per_ld}, n_prompts, n_excluded


def kl_from_clean(
    clean_lp: Float[Tensor, "*batch vocab"], logits: Float[Tensor, "*batch vocab"]
) -> Float[Tensor, "*batch"]:
    """``KL(P_clean‖P)`` over the last dimension (float64) from the clean log-probabilities and
    another run's logits, broadcast over leading dimensions.

    Example:
        >>> clean = torch.tensor([[2.0, 0.0]]).double().log_softmax(-1)
        >>> kl_from_clean(clean, torch.tensor([[2.0, 0.0]])).tolist()
        [0.0]
        >>> round(kl_from_clean(clean, torch.tensor([[0.0, 0.0]])).item(), 4)  # vs uniform
        0.3278
    """
    lp = logits.double().log_softmax(-1)
    return (clean_lp.exp() * (clean_lp - lp)).sum(-1)


def answer_foil(logits: Float[Tensor, "n vocab"], answer: Int[Tensor, " n"]) -> Int[Tensor, " n"]:
    """The top-1 token of ``logits``, or its second where the top-1 is the answer.

    Example:
        >>> answer_foil(torch.tensor([[3.0, 1.0, 2.0], [0.0, 1.0, 2.0]]), torch.tensor([0, 0])).tolist()
        [2, 2]
    """
    top2 = logits.topk(2, dim=-1).indices
    return torch.where(top2[:, 0] == answer, top2[:, 1], top2[:, 0])


def logit_difference(
    logits: Float[Tensor, "n vocab"], answer: Int[Tensor, " n"], foil: Int[Tensor, " n"]
) -> Float[Tensor, " n"]:
    """``logit[answer] − logit[foil]`` (float64).

    Example:
        >>> logit_difference(torch.tensor([[3.0, 1.0]]), torch.tensor([0]), torch.tensor([1]))
        tensor([2.], dtype=torch.float64)
    """
    a = logits.gather(-1, answer[:, None]).squeeze(-1)
    b = logits.gather(-1, foil[:, None]).squeeze(-1)
    return a.double() - b.double()


def check_patching_request(prompts: object, min_kl: object, batch_size: int | None) -> Tensor:
    """The checks of :func:`head_patching`'s arguments before any work (also made before a
    sharded sweep starts a worker): :class:`Prompts` with corrupted tokens and no prompt
    labelled ``"all"``, ``min_kl >= 0``, a valid ``batch_size``; returns the corrupted tokens.

    Example:
        >>> check_patching_request("prompts", 1e-3, None)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: prompts must be Prompts, got str
    """
    if not isinstance(prompts, Prompts):
        raise IterationHeadsError(f"prompts must be Prompts, got {type(prompts).__name__}")
    corrupted = prompts.need_corrupted("head patching")
    if ALL_LABELS in prompts.labels:
        raise IterationHeadsError(
            f"a prompt is labelled {ALL_LABELS!r}, the name of the overall aggregate; rename it"
        )
    if isinstance(min_kl, bool) or not isinstance(min_kl, int | float) or not min_kl >= 0:
        raise IterationHeadsError(f"min_kl={min_kl!r}, expected a number >= 0")
    batch_rows(batch_size, 1)
    return corrupted


def _mean(values: Tensor) -> Tensor:
    if values.shape[-1] == 0:
        return torch.full(values.shape[:-1], math.nan, dtype=torch.float64)
    return values.mean(-1)


def _stderr(values: Tensor) -> Tensor:
    if values.shape[-1] == 0:  # a label whose prompts were all excluded
        return torch.full(values.shape[:-1], math.nan, dtype=torch.float64)
    return standard_error(values)
