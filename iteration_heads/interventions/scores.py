"""Scoring a chain of thought under an intervention: per-sequence scores on the scored positions,
the metrics patching optimises, and :class:`Effect`, a batch scored with and without an
intervention.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import device_of, evaluating
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import BATCH_SIZE, Batch
from iteration_heads.passes import scored_logits
from iteration_heads.tasks.data import IGNORE
from iteration_heads.tasks.task import check_int
from iteration_heads.training.metrics import SUMMARY_MIN_LEN

MetricFn = Callable[[Tensor, Tensor], Tensor]
Metric = Literal["logit_diff", "logprob", "accuracy"] | MetricFn


@dataclass(frozen=True)
class Scores:
    """Per-sequence scores of a teacher-forced run on the scored (CoT) positions.

    Attributes:
        accuracy: 1 when every scored token is predicted right (sequence accuracy), else 0.
        token_accuracy: Fraction of scored tokens predicted right.
        loss: Mean cross-entropy over the scored tokens.
        logit_diff: Mean over scored tokens of the correct token's logit minus the best other
            logit (> 0 exactly when the prediction is right).
        lengths: Input length of every sequence, when known.
    """

    accuracy: Float[Tensor, " batch"]
    token_accuracy: Float[Tensor, " batch"]
    loss: Float[Tensor, " batch"]
    logit_diff: Float[Tensor, " batch"]
    lengths: Int[Tensor, " batch"] | None = None

    METRICS = ("accuracy", "token_accuracy", "loss", "logit_diff")

    @classmethod
    def of(
        cls,
        logits: Float[Tensor, "batch pos vocab"],
        targets: Int[Tensor, "batch pos"],
        lengths: Tensor | None = None,
    ) -> Scores:
        """Score ``logits`` against ``targets`` (``-100`` = not scored).

        Example:
            >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
            >>> Scores.of(logits, torch.tensor([[0, 0]])).token_accuracy.tolist()
            [0.5]
        """
        scored = targets != IGNORE
        rows = scored.nonzero()[:, 0]
        return cls.of_positions(logits[scored], targets[scored], rows, len(targets), lengths)

    @classmethod
    def of_positions(
        cls,
        logits: Float[Tensor, "scored vocab"],
        targets: Int[Tensor, " scored"],
        rows: Int[Tensor, " scored"],
        n_rows: int,
        lengths: Tensor | None = None,
    ) -> Scores:
        """Score the logits of the scored positions only: position ``i`` belongs to sequence
        ``rows[i]`` of ``n_rows`` (the same scores as :meth:`of` on the whole logits).

        Example:
            >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]])
            >>> scores = Scores.of_positions(logits, torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]), 2)
            >>> scores.accuracy.tolist(), scores.logit_diff.tolist()
            ([0.0, 1.0], [0.5, 2.0])
        """
        count = torch.zeros(n_rows, device=logits.device).index_add_(
            0, rows, torch.ones_like(rows, dtype=torch.float)
        )
        if not bool((count > 0).all()):
            raise IterationHeadsError("a sequence has no scored target (targets all -100)")
        logits = logits.float()
        right_logit = logits.gather(-1, targets[:, None])[:, 0]
        others = logits.scatter(-1, targets[:, None], float("-inf")).amax(-1)
        wrong = (logits.argmax(-1) != targets).float()
        loss = F.cross_entropy(logits, targets, reduction="none")

        def per_row(values: Tensor) -> Tensor:
            return torch.zeros(n_rows, device=logits.device).index_add_(0, rows, values)

        n_wrong = per_row(wrong)
        return cls(
            accuracy=(n_wrong == 0).float().cpu(),
            token_accuracy=((count - n_wrong) / count).cpu(),
            loss=(per_row(loss) / count).cpu(),
            logit_diff=(per_row(right_logit - others) / count).cpu(),
            lengths=None if lengths is None else lengths.cpu(),
        )

    @classmethod
    def cat(cls, parts: list[Scores]) -> Scores:
        """One :class:`Scores` of several runs, in order."""
        lengths = [p.lengths for p in parts if p.lengths is not None]
        return cls(
            accuracy=torch.cat([p.accuracy for p in parts]),
            token_accuracy=torch.cat([p.token_accuracy for p in parts]),
            loss=torch.cat([p.loss for p in parts]),
            logit_diff=torch.cat([p.logit_diff for p in parts]),
            lengths=torch.cat(lengths) if len(lengths) == len(parts) else None,
        )

    def mean(self, metric: str, min_len: int = SUMMARY_MIN_LEN) -> float:
        """``metric`` averaged per length over lengths ``>= min_len`` (as training logs it);
        a plain mean when lengths are unknown."""
        values = getattr(self, metric)
        if self.lengths is None:
            return float(values.mean())
        present = sorted(set(self.lengths.tolist()))
        keep = [n for n in present if n >= min_len] or present
        return float(torch.stack([values[self.lengths == n].mean() for n in keep]).mean())

    def summary(self, min_len: int = SUMMARY_MIN_LEN) -> dict[str, float]:
        """Every metric, averaged as :meth:`mean` does."""
        return {m: self.mean(m, min_len) for m in self.METRICS}


def run_scored(
    model: Any,
    batch: Batch,
    make_hooks: Callable[[slice], list[tuple[str, Callable]]] | None = None,
    *,
    batch_size: int = BATCH_SIZE,
) -> Scores:
    """Run ``batch`` in chunks (eval mode, no gradients), with ``make_hooks(rows)`` attached for
    each chunk, and score it. Hooks are removed after each chunk, also on error."""
    check_int("batch_size", batch_size, minimum=1)
    if batch_size < 1:
        raise IterationHeadsError(f"batch_size={batch_size}, expected >= 1")
    device, parts = device_of(model), []
    with evaluating(model):
        for start in range(0, len(batch), batch_size):
            rows = slice(start, start + batch_size)
            chunk = batch.rows(rows)
            hooks = make_hooks(rows) if make_hooks else []
            targets = chunk.targets.to(device)
            scored = targets != IGNORE
            logits = scored_logits(model, chunk.tokens.to(device), scored, hooks=hooks)
            where = scored.nonzero()[:, 0]
            parts.append(
                Scores.of_positions(logits, targets[scored], where, len(chunk), chunk.lengths)
            )
    return Scores.cat(parts)


@dataclass(frozen=True, repr=False)
class Effect(Result):
    """Scores of a batch without (``clean``) and with (``intervened``) an intervention."""

    description: str
    clean: Scores
    intervened: Scores

    def summary(self, min_len: int = SUMMARY_MIN_LEN) -> dict[str, dict[str, float]]:
        """Clean, intervened and their difference (intervened − clean), per metric."""
        clean, new = self.clean.summary(min_len), self.intervened.summary(min_len)
        return {
            "clean": clean,
            "intervened": new,
            "change": {m: new[m] - clean[m] for m in clean},
        }

    @property
    def accuracy(self) -> float:
        """Sequence accuracy with the intervention (lengths ``>= 4`` averaged per length)."""
        return self.intervened.mean("accuracy")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {"description": self.description, **self.summary()}

    def format(self) -> str:
        """One line: every metric, clean -> intervened."""
        s = self.summary()
        cells = ", ".join(
            f"{m} {s['clean'][m]:.3f} -> {s['intervened'][m]:.3f}" for m in Scores.METRICS
        )
        return f"Effect({self.description}: {cells})"


def metric_fn(metric: Metric) -> MetricFn:
    """A per-sequence metric ``fn(logits, targets) -> [batch]`` on the scored positions.

    ``"logit_diff"``: mean over scored positions of the target's logit minus the best other
    logit; ``"logprob"``: mean log-probability of the target; ``"accuracy"``: 1 when every
    scored target is the argmax. A callable is returned as is.

    Example:
        >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
        >>> metric_fn("logit_diff")(logits, torch.tensor([[0, -100]])).tolist()
        [2.0]
    """
    if callable(metric):
        return metric
    names = {"logit_diff": "logit_diff", "logprob": "loss", "accuracy": "accuracy"}
    if metric not in names:
        raise IterationHeadsError(
            f"unknown metric {metric!r}; expected one of {list(names)} or a callable "
            "(logits, targets) -> [batch]"
        )

    def fn(logits: Tensor, targets: Tensor) -> Tensor:
        value = getattr(Scores.of(logits, targets), names[metric]).to(logits.device)
        return -value if metric == "logprob" else value

    return fn


def metric_of(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    targets: Int[Tensor, "batch pos"],
    fn: MetricFn,
    size: int = BATCH_SIZE,
) -> Float[Tensor, " batch"]:
    """The per-sequence metric ``fn(logits, targets)`` of a plain run, ``size`` rows at a time.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> metric_of(model, split.tokens, split.targets, metric_fn("accuracy")).shape
        torch.Size([32])
    """
    device, parts = device_of(model), []
    with evaluating(model):
        for t, y in zip(tokens.split(size), targets.split(size), strict=True):
            parts.append(fn(model(t.to(device)), y.to(device)).float().cpu())
    return torch.cat(parts)


def standard_error(values: Tensor, dim: int = -1) -> Tensor:
    """Standard error of the mean along ``dim`` (0 for a single value).

    Example:
        >>> standard_error(torch.tensor([1.0, 3.0])).item()
        1.0
    """
    n = values.shape[dim]
    if n < 2:
        return torch.zeros_like(values.select(dim, 0))
    return values.std(dim) / math.sqrt(n)
