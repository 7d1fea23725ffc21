"""Scores of every head (and of each layer's summed heads) against the two attention steps of
the circuit, and the decision rule with its constants (see :mod:`~iteration_heads.detection.detector`
for the rules in words).

Target weights are read at the probes' own positions (any vocabulary and layout); in the
library's layout they are the weights training logs
(:func:`~iteration_heads.training.metrics.target_weights`; the tests check that both agree).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads.detection.probes import Probes
from iteration_heads.training.metrics import PEAK_THRESHOLD, score_heads

MIN_PEAKINESS = 0.5
"""A head plays a role when at least half its queries put > 0.5 on the target (docs/paper.md §6;
trained models reach ~0.6 for EoI and ~1.0 for iteration, docs/paper.md §7)."""

BASELINE_MARGIN = 0.25
"""...and when its peakiness and mean target weight beat the uniform causal pattern by this much.
A single head's uniform peakiness is 0 past the first query; the margin matters for layer sums,
where ``n_heads/(q+1)`` exceeds 0.5 at early queries."""

MIN_STATE_SENSITIVITY = 0.5
"""The model iterates when swapping the current state changes at least this fraction of its
predictions (the polynomial fixture: 1.00; the copy fixture: 0.00)."""

MIN_PARTIAL_SUPPORT = 2
"""A partial pattern needs the rule to hold at this many lengths, or steps ``t``: one alone is
weak evidence (random models with peaky attention pass at a single length now and then, and a
previous-token head passes the EoI rule at the first CoT query)."""

ALIGNMENTS: tuple[tuple[int, int], ...] = ((1, -2), (1, -1), (1, 1), (1, 2), (2, -1), (2, 0))
"""Alternative iteration targets tried for partial patterns: ``x_{a·t+b}`` instead of ``x_t``."""

KINDS = ("eoi", "iteration")
"""The two attention steps of the circuit."""
METRICS = ("mean", "peakiness", "invariance")
"""The paper's summaries of a target weight."""


def uniform_pattern(batch: int, width: int) -> Float[Tensor, "batch 1 q k"]:
    """The uniform causal pattern: weight ``1/(q+1)`` on every key ``<= q`` (the chance level).

    Example:
        >>> uniform_pattern(1, 3)[0, 0]
        tensor([[1.0000, 0.0000, 0.0000],
                [0.5000, 0.5000, 0.0000],
                [0.3333, 0.3333, 0.3333]])
    """
    causal = torch.tril(torch.ones(width, width))
    return (causal / causal.sum(1, keepdim=True)).expand(batch, 1, width, width)


# ---------------------------------------------------------------- target weights


def _steps(positions: Tensor, valid: Tensor, width: int) -> Tensor:
    """Positions ``[batch, width]`` padded to ``width`` steps, 0 where a step does not exist."""
    padded = F.pad(positions, (0, width - positions.shape[1]))
    return torch.where(valid, padded, 0)


def probe_targets(pattern: Float[Tensor, "batch lh q k"], probes: Probes, max_len: int) -> dict:
    """Target weights ``[probe, t, layer·head]`` of one chunk, padded to ``max_len`` steps.

    EoI: from each state ``s_t`` onto the EoI marker; iteration: from the query that predicts
    ``s_t`` onto ``x_t`` (the probes' positions, any layout). Keys: ``eoi``, ``iteration``;
    ``eoi_rows`` / ``iteration_rows``, the attention row sums at the same queries (the head
    detector's denominator); ``valid`` ``[probe, t]``; and for each ``(a, b)`` of
    :data:`ALIGNMENTS`, the weight onto ``x_{a·t+b}`` and where it exists. In the library's layout
    these are the weights :func:`~iteration_heads.training.metrics.target_weights` reads.

    Example:
        >>> probes = Probes(torch.zeros(1, 7, dtype=torch.long), 2)  # <task> x1 x2 EoI s1 s2 EoS
        >>> pattern = torch.zeros(1, 1, 7, 7)
        >>> pattern[0, 0, 3, 1] = pattern[0, 0, 4, 2] = 1.0  # EoI -> x_1, s_1 -> x_2
        >>> probe_targets(pattern, probes, 2)["iteration"][0, :, 0].tolist()
        [1.0, 1.0]
    """
    batch = pattern.shape[0]
    device = pattern.device
    lengths = probes.lengths.to(device)
    step = torch.arange(1, max_len + 1, device=device)[None, :]
    valid = step <= lengths[:, None]
    inputs = _steps(probes.input_positions.to(device), valid, max_len)
    queries = _steps(probes.query_positions.to(device), valid, max_len)
    states = _steps(probes.state_positions.to(device), valid, max_len)
    eoi = probes.eoi.to(device)[:, None].expand(-1, max_len)
    per_head = pattern.permute(0, 2, 3, 1)  # batch query key head
    row_sums = pattern.sum(-1).transpose(1, 2)  # batch query head
    probe = torch.arange(batch, device=device)[:, None]
    mask = valid[..., None]
    out = {
        "eoi": per_head[probe, states, eoi] * mask,
        "iteration": per_head[probe, queries, inputs] * mask,
        "eoi_rows": row_sums[probe, states] * mask,
        "iteration_rows": row_sums[probe, queries] * mask,
        "valid": valid,
    }
    for a, b in ALIGNMENTS:
        key = a * step + b
        ok = valid & (key >= 1) & (key <= lengths[:, None])
        target = inputs.gather(1, torch.where(ok, key - 1, 0))
        out[f"aligned {a} {b}"] = per_head[probe, queries, target] * ok[..., None]
        out[f"aligned_valid {a} {b}"] = ok
    return out


# ---------------------------------------------------------------- scores


@dataclass(frozen=True)
class KindScores:
    """One kind of score of a set of heads (or layer sums): tensors ``[..., layer, head]``."""

    lengths: list[int]  # every probe length, the order of the per_length rows
    per_length: dict[str, Tensor]  # mean / peakiness / invariance: [length, layer, head]
    summary: dict[str, Tensor]  # the same averaged over the summary lengths: [layer, head]
    tl_score: Tensor  # [layer, head]
    step_peakiness: Tensor  # [t, layer, head], over the summary lengths
    step_mean: Tensor
    aligned_peakiness: dict[tuple[int, int], Tensor]  # [layer, head]
    aligned_mean: dict[tuple[int, int], Tensor]


def score_kind(
    weights: Float[Tensor, "probe t layer head"],
    rows: Float[Tensor, "probe t layer head"],
    valid: Bool[Tensor, "probe t"],
    lengths: Int[Tensor, " probe"],
    keep: list[int],
    aligned: dict[tuple[int, int], tuple[Tensor, Tensor]],
) -> KindScores:
    """The paper's metrics per length, their summary over ``keep``, the head-detector score,
    and per-step and aligned peakiness (the last two over the summary lengths only).

    Example:
        >>> w = torch.tensor([[0.9, 0.8], [0.7, 0.0]])[..., None, None]  # 2 probes, L = 2, 1
        >>> valid = torch.tensor([[True, True], [True, False]])
        >>> s = score_kind(w, torch.ones_like(w), valid, torch.tensor([2, 1]), [1, 2], {})
        >>> s.summary["peakiness"].item(), s.step_peakiness[:, 0, 0].tolist()
        (1.0, [1.0, 1.0])
    """
    length_values = sorted(set(lengths.tolist()))
    scores = score_heads(weights, valid, lengths, length_values)
    per_length = {m: getattr(scores, m) for m in METRICS}
    kept = [i for i, n in enumerate(length_values) if n in keep]
    summary = {m: v[kept].mean(0) for m, v in per_length.items()}
    chosen = torch.isin(lengths, torch.tensor(keep))
    w, r, ok = weights[chosen], rows[chosen], valid[chosen][..., None, None]
    # head detector, "mul": per probe sum(pattern·detection) / sum(pattern) on the CoT rows
    tl_score = ((w * ok).sum(1) / (r * ok).sum(1)).mean(0)
    count = ok.sum(0).clamp(min=1)
    step_peakiness = ((w > PEAK_THRESHOLD) & ok).sum(0) / count
    step_mean = (w * ok).sum(0) / count
    aligned_peakiness, aligned_mean = {}, {}
    for key, (values, where) in aligned.items():
        x, there = values[chosen], where[chosen][..., None, None]
        n = there.sum((0, 1)).clamp(min=1)
        aligned_peakiness[key] = ((x > PEAK_THRESHOLD) & there).sum((0, 1)) / n
        aligned_mean[key] = (x * there).sum((0, 1)) / n
    return KindScores(
        length_values,
        per_length,
        summary,
        tl_score,
        step_peakiness,
        step_mean,
        aligned_peakiness,
        aligned_mean,
    )


def passes_rule(
    peakiness: Tensor, base_peakiness: Tensor, mean: Tensor, base_mean: Tensor
) -> Tensor:
    """The detection rule: peaky enough (:data:`MIN_PEAKINESS`), and clearly above the uniform
    baseline in peakiness and in mean weight (:data:`BASELINE_MARGIN`).

    Example:
        >>> one = torch.tensor
        >>> passes_rule(one(0.9), one(0.0), one(0.8), one(0.1)).item()
        True
        >>> passes_rule(one(0.9), one(0.7), one(0.8), one(0.6)).item()  # no better than uniform
        False
    """
    return (
        (peakiness >= MIN_PEAKINESS)
        & (peakiness - base_peakiness >= BASELINE_MARGIN)
        & (mean - base_mean >= BASELINE_MARGIN)
    )


@dataclass(frozen=True)
class RulePasses:
    """Where the rule holds, for one kind of score of a set of heads (or layer sums): overall,
    per length, per step ``t`` and for each alternative alignment."""

    overall: Tensor  # [layer, head]
    lengths: Tensor  # [length, layer, head]
    steps: Tensor  # [t, layer, head]
    aligned: dict[tuple[int, int], Tensor]  # [layer, head]

    @classmethod
    def of(cls, s: KindScores, base: KindScores) -> RulePasses:
        """The rule applied to ``s`` against the uniform baseline ``base``."""
        return cls(
            passes_rule(*_pair(s.summary, base.summary)),
            passes_rule(*_pair(s.per_length, base.per_length)),
            passes_rule(s.step_peakiness, base.step_peakiness, s.step_mean, base.step_mean),
            {
                k: passes_rule(
                    s.aligned_peakiness[k],
                    base.aligned_peakiness[k],
                    s.aligned_mean[k],
                    base.aligned_mean[k],
                )
                for k in s.aligned_peakiness
            },
        )


def _pair(s: dict[str, Tensor], base: dict[str, Tensor]) -> tuple[Tensor, ...]:
    return s["peakiness"], base["peakiness"], s["mean"], base["mean"]


@dataclass(frozen=True)
class Scoring:
    """Scores and rule outcomes of the heads and of the layer sums, for both kinds."""

    heads: dict[str, KindScores]
    head_base: dict[str, KindScores]
    layers: dict[str, KindScores]
    layer_base: dict[str, KindScores]
    head_pass: dict[str, RulePasses]
    layer_pass: dict[str, RulePasses]
    keep: list[int]
    steps: list[int]  # steps t present among the summary lengths
    n_layers: int
    n_heads: int

    @classmethod
    def of(
        cls,
        measured: dict[str, Tensor],
        uniform: dict[str, Tensor],
        probes: Probes,
        keep: list[int],
        n_layers: int,
    ) -> Scoring:
        """Score the target weights ``measured`` (:func:`probe_targets` of every chunk, heads of
        all layers stacked) and the uniform baseline's, over the summary lengths ``keep``."""
        n_heads = measured["eoi"].shape[-1] // n_layers
        valid, lengths = measured["valid"], probes.lengths

        def split(x: Tensor, layers: int) -> Tensor:  # [probe, t, layer·head] -> [.., layer, head]
            return x.reshape(*x.shape[:2], layers, -1)

        def aligned(kind: str, source: dict[str, Tensor], layers: int, scale: int | None) -> dict:
            """Alternative targets, for iteration only; ``scale`` None sums a layer's heads."""
            out: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
            if kind != "iteration":
                return out
            for a, b in ALIGNMENTS:
                w = split(source[f"aligned {a} {b}"], layers)
                w = w.sum(-1, keepdim=True) if scale is None else w * scale
                out[(a, b)] = (w, source[f"aligned_valid {a} {b}"])
            return out

        heads, head_base, layers, layer_base = {}, {}, {}, {}
        for kind in KINDS:
            w, r = split(measured[kind], n_layers), split(measured[f"{kind}_rows"], n_layers)
            u, ur = split(uniform[kind], 1), split(uniform[f"{kind}_rows"], 1)
            heads[kind] = score_kind(
                w, r, valid, lengths, keep, aligned(kind, measured, n_layers, 1)
            )
            head_base[kind] = score_kind(
                u, ur, uniform["valid"], lengths, keep, aligned(kind, uniform, 1, 1)
            )
            summed, summed_rows = w.sum(-1, keepdim=True), r.sum(-1, keepdim=True)
            layers[kind] = score_kind(
                summed, summed_rows, valid, lengths, keep, aligned(kind, measured, n_layers, None)
            )
            layer_base[kind] = score_kind(
                u * n_heads,
                ur * n_heads,
                uniform["valid"],
                lengths,
                keep,
                aligned(kind, uniform, 1, n_heads),
            )
        chosen = torch.isin(lengths, torch.tensor(keep))
        present = valid[chosen].any(0).tolist()
        return cls(
            heads,
            head_base,
            layers,
            layer_base,
            {k: RulePasses.of(heads[k], head_base[k]) for k in KINDS},
            {k: RulePasses.of(layers[k], layer_base[k]) for k in KINDS},
            keep,
            [t + 1 for t, there in enumerate(present) if there],
            n_layers,
            n_heads,
        )


def state_sensitivity(
    probes: Probes, swapped: Tensor, clean: Tensor, predicted: Tensor, keep: list[int]
) -> float | None:
    """Fraction of the queries before ``s_t`` (``t >= 2``) whose current state ``s_{t-1}`` was
    swapped and whose prediction changed; None when no state could be swapped.

    Example:
        >>> probes = Probes(torch.tensor([[9, 1, 2, 7, 1, 3, 8]]), 2)  # <task> x1 x2 EoI s1 s2 EoS
        >>> swapped = torch.tensor([[9, 1, 2, 7, 4, 3, 8]])  # s_1 replaced
        >>> clean, predicted = torch.zeros(1, 7), torch.zeros(1, 7)
        >>> predicted[0, 4] = 1  # the prediction at s_1 (of s_2) changed
        >>> state_sensitivity(probes, swapped, clean, predicted, [2])
        1.0
    """
    if probes.max_len < 2:
        return None
    step = torch.arange(2, probes.max_len + 1)[None, :]
    chosen = torch.isin(probes.lengths, torch.tensor(keep))[:, None]
    there = (step <= probes.lengths[:, None]) & chosen
    queries = torch.where(there, probes.query_positions[:, 1:], 0)
    current = torch.where(there, probes.state_positions[:, :-1], 0)
    changed = (probes.tokens.gather(1, current) != swapped.gather(1, current)) & there
    if not bool(changed.any()):
        return None
    moved = clean.gather(1, queries) != predicted.gather(1, queries)
    return float(moved[changed].float().mean())
