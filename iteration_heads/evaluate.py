"""Per-length accuracy and the paper's attention metrics (PAPER.md §1, §6).

For input length ``L`` (EoI at index ``L+1``):

* **EoI score** of a head: its attention from the queries ``L+2 .. 2L+1`` (tokens ``s_1..s_L``)
  onto the EoI key ``L+1``.
* **Iteration score**: attention from query ``L+t`` onto key ``t`` (``x_t``), ``t = 1..L``.

Each is summarised per length by its mean target weight, its **peakiness** (fraction of
(sequence, query) pairs whose target weight exceeds 0.5; what the paper's figures show) and its
**invariance** (1 − mean over queries of the standard deviation over sequences).
Everything is vectorised over lengths: no Python loop per length or per sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads.data import IGNORE, Split
from iteration_heads.errors import IterationHeadsError
from iteration_heads.forward import Weights, forward
from iteration_heads.model import model_config

PEAK_THRESHOLD = 0.5
"""A target weight above this counts as a peak (PAPER.md §6)."""

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


@dataclass(frozen=True)
class Evaluation:
    """Per-length results of one split; tensors are indexed by position in ``lengths``."""

    lengths: list[int]
    loss: Float[Tensor, " length"]
    sequence_accuracy: Float[Tensor, " length"]
    token_accuracy: Float[Tensor, " length"]
    eoi: HeadScores | None  # None without chain of thought
    iteration: HeadScores | None

    def _average(self, values: Tensor, min_len: int) -> Tensor:
        keep = [i for i, L in enumerate(self.lengths) if min_len <= L] or list(
            range(len(self.lengths))
        )
        return values[keep].mean(0)

    def accuracy(self, min_len: int = SUMMARY_MIN_LEN) -> float:
        """Sequence accuracy averaged over lengths ``>= min_len`` (all lengths if none)."""
        return float(self._average(self.sequence_accuracy, min_len))

    def peakiness(self, kind: str, min_len: int = SUMMARY_MIN_LEN) -> list[float]:
        """Per layer, the best head's ``kind`` ("eoi" or "iteration") peakiness over lengths."""
        scores = self.eoi if kind == "eoi" else self.iteration
        if scores is None:
            return []
        return self._average(scores.peakiness, min_len).amax(-1).tolist()

    def summary(self, min_len: int = SUMMARY_MIN_LEN) -> dict[str, Any]:
        """The headline figures: accuracy and per-layer best peakiness, averaged over lengths."""
        return {
            "accuracy": self.accuracy(min_len),
            "eoi_peakiness": self.peakiness("eoi", min_len),
            "iteration_peakiness": self.peakiness("iteration", min_len),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of every per-length figure."""
        return {
            "lengths": self.lengths,
            "loss": self.loss.tolist(),
            "sequence_accuracy": self.sequence_accuracy.tolist(),
            "token_accuracy": self.token_accuracy.tolist(),
            "eoi": self.eoi.to_dict() if self.eoi else None,
            "iteration": self.iteration.to_dict() if self.iteration else None,
            "summary": self.summary(),
        }


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, *, batch_size: int = 1024) -> Evaluation:
    """Teacher-forced accuracy, loss and attention metrics of every head, per length.

    Sequence accuracy is exact match over the scored span (equal to greedy decoding's exact
    match); token accuracy is the fraction of scored tokens right.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> data = make_dataset(DataConfig(max_len=6, n_train=64, n_test=64))
        >>> result = evaluate(build_model(ModelConfig(d_model=32, max_len=6)), data.test)
        >>> result.lengths, round(result.accuracy(), 2)
        ([1, 2, 3, 4, 5, 6], 0.0)
    """
    config = model_config(model)
    if split.tokens.shape[1] > config.n_ctx:
        raise IterationHeadsError(
            f"sequences of width {split.tokens.shape[1]} exceed the model's n_ctx={config.n_ctx}"
        )
    config.layout.check_tokens(split.tokens)
    weights = Weights.of(model, config)
    device = weights["embed.weight"].device
    lengths = sorted(set(split.lengths.tolist()))
    # Sorting by length lets every chunk be trimmed to its own width (less padding to compute).
    order = torch.argsort(split.lengths, stable=True)
    sorted_lengths = split.lengths[order]
    losses, correct, tok_right, tok_total = [], [], [], []
    eoi_w, it_w, valid_w = [], [], []
    for index in order.split(batch_size):
        width = int(split.seq_lens[index].max())
        tokens = split.tokens[index, :width].to(device)
        targets = split.targets[index, :width].to(device)
        logits, patterns = forward(weights, tokens, return_patterns=split.cot)
        scored = targets != IGNORE
        loss = F.cross_entropy(
            logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none"
        )
        right = (logits.argmax(-1) == targets) & scored
        losses.append(loss.sum(1) / scored.sum(1))
        correct.append((right | ~scored).all(1))
        tok_right.append(right.sum(1))
        tok_total.append(scored.sum(1))
        if split.cot:
            per_layer = [target_weights(p, split.lengths[index]) for p in patterns]
            eoi_w.append(torch.stack([e for e, _, _ in per_layer], 2))
            it_w.append(torch.stack([i for _, i, _ in per_layer], 2))
            valid_w.append(per_layer[0][2])
    group = torch.searchsorted(torch.tensor(lengths), sorted_lengths)
    count = torch.bincount(group, minlength=len(lengths)).float()

    def per_length(values: list[Tensor]) -> Tensor:
        total = torch.zeros(len(lengths)).index_add(0, group, torch.cat(values).float().cpu())
        return total / count

    token_acc = per_length(tok_right) / per_length(tok_total)
    eoi = iteration = None
    if split.cot:
        max_t = max(int(v.shape[1]) for v in valid_w)

        def pad(xs: list[Tensor]) -> Tensor:
            return torch.cat([F.pad(x, (0, 0, 0, 0, 0, max_t - x.shape[1])) for x in xs]).cpu()

        valid = torch.cat([F.pad(v, (0, max_t - v.shape[1])) for v in valid_w]).cpu()
        eoi = score_heads(pad(eoi_w), valid, sorted_lengths, lengths)
        iteration = score_heads(pad(it_w), valid, sorted_lengths, lengths)
    return Evaluation(lengths, per_length(losses), per_length(correct), token_acc, eoi, iteration)
