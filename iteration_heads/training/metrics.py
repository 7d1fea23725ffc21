"""The paper's attention metrics and the targets a run must reach (docs/paper.md §6).

For input length ``L`` (EoI at index ``L+1``):

* **EoI score** of a head: its attention from the queries ``L+2 .. 2L+1`` (tokens ``s_1..s_L``)
  onto the EoI key ``L+1``.
* **Iteration score**: attention from query ``L+t`` onto key ``t`` (``x_t``), ``t = 1..L``.

Each is summarised per length by its mean target weight, its **peakiness** (fraction of
(sequence, query) pairs whose target weight exceeds 0.5; what the paper's figures show) and its
**invariance** (1 − mean over queries of the standard deviation over sequences). Training logs
them (:mod:`iteration_heads.training.evaluation`) and detection scores every head of any model with
them (:mod:`iteration_heads.detection`). Everything is vectorised over lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.task import check_int

PEAK_THRESHOLD = 0.5
"""A target weight above this counts as a peak (docs/paper.md §6)."""

SUMMARY_MIN_LEN = 4
"""Figures average over lengths ``4 .. max_len`` (short lengths overlap train and test)."""


def target_weights(
    pattern: Float[Tensor, "batch head query key"], lengths: Int[Tensor, " batch"]
) -> tuple[Float[Tensor, "batch t head"], Float[Tensor, "batch t head"], Bool[Tensor, "batch t"]]:
    """EoI and iteration target weights of every head, for ``t = 1 .. max(lengths)``.

    Returns ``(eoi, iteration, valid)``: ``eoi[b, t-1]`` is the weight from query ``L+1+t`` onto
    key ``L+1``, ``iteration[b, t-1]`` the weight from query ``L+t`` onto key ``t``; ``valid``
    marks ``t <= L`` (entries beyond a sequence's length are zero).

    Example:
        >>> pattern = torch.zeros(1, 1, 7, 7)
        >>> pattern[0, 0, 3:6, 3] = 1.0  # L = 2: every CoT query attends to EoI at index 3
        >>> eoi, it, valid = target_weights(pattern, torch.tensor([2]))
        >>> eoi[0, :, 0].tolist(), it[0, :, 0].tolist(), valid.tolist()
        ([1.0, 1.0], [0.0, 0.0], [[True, True]])
    """
    batch, _, n_query, _ = pattern.shape
    lengths = lengths.to(pattern.device)
    width = int(lengths.max())
    if int((2 * lengths + 1).max()) >= n_query:
        raise IterationHeadsError(
            f"attention pattern covers {n_query} positions, but a sequence of length "
            f"{int(lengths.max())} needs {2 * int(lengths.max()) + 2}"
        )
    t = torch.arange(1, width + 1, device=pattern.device)
    valid = t[None, :] <= lengths[:, None]
    eoi_key = (lengths + 1)[:, None].expand(-1, width)
    eoi_query = torch.where(valid, eoi_key + t, eoi_key)
    iter_query = torch.where(valid, lengths[:, None] + t, eoi_key)
    iter_key = torch.where(valid, t.expand(batch, -1), eoi_key)
    rows = torch.arange(batch, device=pattern.device)[:, None]
    per_head = pattern.permute(0, 2, 3, 1)  # batch query key head
    eoi = per_head[rows, eoi_query, eoi_key] * valid[..., None]
    iteration = per_head[rows, iter_query, iter_key] * valid[..., None]
    return eoi, iteration, valid


@dataclass(frozen=True)
class HeadScores:
    """One score (EoI or iteration) of every head, per length: ``[length, layer, head]``."""

    mean: Float[Tensor, "length layer head"]
    peakiness: Float[Tensor, "length layer head"]
    invariance: Float[Tensor, "length layer head"]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).tolist() for k in ("mean", "peakiness", "invariance")}


def score_heads(
    weights: Float[Tensor, "batch t layer head"],
    valid: Bool[Tensor, "batch t"],
    lengths: Int[Tensor, " batch"],
    length_values: list[int],
) -> HeadScores:
    """Mean, peakiness and invariance of target weights, grouped by length (vectorised).

    Example:
        >>> w = torch.tensor([[0.9, 0.2], [0.7, 0.0]])[..., None, None]  # 2 sequences, L = 2, 1
        >>> valid = torch.tensor([[True, True], [True, False]])
        >>> s = score_heads(w, valid, torch.tensor([2, 1]), [1, 2])
        >>> [round(v, 3) for v in s.mean[:, 0, 0].tolist()], s.peakiness[:, 0, 0].tolist()
        ([0.7, 0.55], [1.0, 0.5])
    """
    for i, value in enumerate(length_values):
        check_int(f"length_values[{i}]", value, minimum=0)
    index = torch.tensor(length_values, device=lengths.device)
    group = torch.searchsorted(index, lengths)
    if not bool((index[group.clamp(max=len(index) - 1)] == lengths).all()):
        raise IterationHeadsError(
            f"lengths {sorted(set(lengths.tolist()))} not all in {length_values}"
        )
    n_groups, width = len(length_values), weights.shape[1]
    mask = valid[..., None, None].to(weights.dtype)
    w = weights * mask
    peaks = (weights > PEAK_THRESHOLD).to(weights.dtype) * mask
    zeros = torch.zeros(n_groups, width, *weights.shape[2:], dtype=weights.dtype, device=w.device)
    s1 = zeros.index_add(0, group, w)  # sum over sequences, per (length, t)
    sp = zeros.index_add(0, group, peaks)
    n = zeros[..., 0, 0].index_add(0, group, mask[..., 0, 0])  # sequences per (length, t)
    n_queries = n.sum(1)  # per length: sequences × L
    mean = s1.sum(1) / n_queries[:, None, None]
    peak = sp.sum(1) / n_queries[:, None, None]
    n_safe = n.clamp(min=1)[..., None, None]
    # two passes (deviations from the per-(length, t) mean) keep the std exact near zero
    deviation = (weights - (s1 / n_safe)[group]) * mask
    std = (zeros.index_add(0, group, deviation * deviation) / n_safe).sqrt()
    t_valid = (n > 0).to(weights.dtype)
    inv = 1 - (std * t_valid[..., None, None]).sum(1) / t_valid.sum(1)[:, None, None]
    return HeadScores(mean, peak, inv)


ACCURACY_TARGET = 0.99
"""Test accuracy (averaged over L 4..max_len) that counts as solving the task."""

PEAKINESS_TARGET = 0.9
"""Iteration peakiness of the last layer that counts as an iteration head having formed."""


def reaches_accuracy(summary: dict[str, Any]) -> bool:
    """Whether a test summary (``Evaluation.summary()``) reaches :data:`ACCURACY_TARGET`.

    Example:
        >>> reaches_accuracy({"accuracy": 0.995}), reaches_accuracy({"accuracy": 0.9})
        (True, False)
    """
    return bool(summary["accuracy"] >= ACCURACY_TARGET)


def has_iteration_head(summary: dict[str, Any]) -> bool:
    """Whether a test summary's last layer reaches :data:`PEAKINESS_TARGET`.

    Example:
        >>> has_iteration_head({"iteration_peakiness": [0.2, 0.95]})
        True
    """
    peaks = summary.get("iteration_peakiness") or []  # a task without iteration has none
    return bool(peaks and peaks[-1] >= PEAKINESS_TARGET)
