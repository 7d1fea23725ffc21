"""Per-length accuracy, loss and the paper's attention metrics of a library model on a split
(docs/paper.md §1, §6); training logs one :class:`Evaluation` per evaluation epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import without_gradients
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.fast_forward import Weights, forward
from iteration_heads.model.transformer import model_config
from iteration_heads.tasks.data import IGNORE, Dataset, Split
from iteration_heads.tasks.ontology_data import OntologyDataset, head_problems
from iteration_heads.tasks.task import check_int
from iteration_heads.training.metrics import (
    SUMMARY_MIN_LEN,
    HeadScores,
    score_heads,
    target_weights,
)
from iteration_heads.training.ontology_evaluation import evaluate_ontology


@dataclass(frozen=True, repr=False)
class Evaluation(Result):
    """Per-length results of one split; tensors are indexed by position in ``lengths``.

    Prints as a table (one row per length: accuracy and every head's EoI / iteration
    peakiness); :meth:`to_dict` is the record training writes to ``history.jsonl``.

    Example:
        >>> from iteration_heads import load, make_dataset
        >>> from iteration_heads.model import data_config
        >>> model = load("polynomial_paper")
        >>> result = evaluate(model, make_dataset(data_config(model)).test)
        >>> print(result.format().splitlines()[-1])  # doctest: +ELLIPSIS
        accuracy (L>=4) 1.000; best peakiness per layer (...): EoI [0.6..., ...], iteration [..., 1.0]
    """

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

    def to_dict(self, *, per_head: bool = False) -> dict[str, Any]:
        """JSON-ready dictionary of every per-length figure: a ``history.jsonl`` record's
        ``test`` and ``train`` entries (metrics as ``[length, layer, head]`` arrays), or with
        ``per_head`` one entry per head (:meth:`per_head`, as ``iteration-heads eval --json``)."""
        record: dict[str, Any] = {
            "lengths": self.lengths,
            "loss": self.loss.tolist(),
            "sequence_accuracy": self.sequence_accuracy.tolist(),
            "token_accuracy": self.token_accuracy.tolist(),
        }
        if per_head:
            record["heads"] = self.per_head()
        else:
            record["eoi"] = self.eoi.to_dict() if self.eoi else None
            record["iteration"] = self.iteration.to_dict() if self.iteration else None
        return record | {"summary": self.summary()}

    def per_head(self) -> list[dict[str, Any]]:
        """One entry per head: ``layer``, ``head``, and per length its EoI and iteration
        ``mean``, ``peakiness`` and ``invariance`` (empty without chain of thought)."""
        if self.eoi is None or self.iteration is None:
            return []
        n_layers, n_heads = self.eoi.mean.shape[1:]
        heads = []
        for layer in range(n_layers):
            for head in range(n_heads):
                entry: dict[str, Any] = {"layer": layer, "head": head}
                for name, scores in (("eoi", self.eoi), ("iteration", self.iteration)):
                    entry[name] = {
                        k: getattr(scores, k)[:, layer, head].tolist()
                        for k in ("mean", "peakiness", "invariance")
                    }
                heads.append(entry)
        return heads

    def format(self, title: str = "") -> str:
        """A table: one row per length, accuracy and each head's EoI / iteration peakiness."""
        columns = ["L", "seq acc", "tok acc"]
        names = [(e["layer"], e["head"]) for e in self.per_head()]
        columns += [f"L{layer}H{head} eoi/iter" for layer, head in names]
        rows = []
        for i, length in enumerate(self.lengths):
            row = [str(length), f"{self.sequence_accuracy[i]:.3f}", f"{self.token_accuracy[i]:.3f}"]
            if self.eoi is not None and self.iteration is not None:
                row += [
                    f"{self.eoi.peakiness[i, layer, head]:.2f} / "
                    f"{self.iteration.peakiness[i, layer, head]:.2f}"
                    for layer, head in names
                ]
            rows.append(row)
        widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(columns)]
        lines = [title] if title else []
        lines.append("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        summary = self.summary()
        lines.append(
            f"accuracy (L>=4) {summary['accuracy']:.3f}; best peakiness per layer (peakiness = "
            f"fraction of queries with target weight > 0.5): EoI "
            f"{[round(v, 2) for v in summary['eoi_peakiness']]}, iteration "
            f"{[round(v, 2) for v in summary['iteration_peakiness']]}"
        )
        return "\n".join(lines)


@without_gradients()
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
    check_int("batch_size", batch_size, minimum=1)
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


ONTOLOGY_TRAIN_EVAL = 2000
"""Training problems evaluated at each evaluation of an ontology run (the first ones)."""


def evaluation_records(
    model: torch.nn.Module, data: Dataset | OntologyDataset
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The test and train records of one evaluation. An ontology run's test record is its
    held-out fictional split, with every other test split under ``"splits"``.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> data = make_dataset(DataConfig(task="copy", max_len=4, n_train=8, n_test=8))
        >>> test, _ = evaluation_records(build_model(ModelConfig(d_model=32, max_len=4)), data)
        >>> sorted(test["summary"])[:2]
        ['accuracy', 'eoi_peakiness']
    """
    if isinstance(data, Dataset):
        return evaluate(model, data.test).to_dict(), evaluate(model, data.train).to_dict()
    tests = {kind: evaluate_ontology(model, p) for kind, p in data.tests.items()}
    test = tests.pop("fictional").to_dict()
    test["splits"] = {kind: result.summary() for kind, result in tests.items()}
    train_eval = evaluate_ontology(model, head_problems(data.train_problems, ONTOLOGY_TRAIN_EVAL))
    return test, train_eval.to_dict()
