"""Which prompts a model solves: greedy next-token accuracy at each studied position under
teacher forcing, regrouped into whole sequences, and the solved prompts kept.

Dutta et al. run their analyses only on the questions Llama-2 answers: :func:`solved_prompts`
keeps the prompts (``by="step"``) or the whole sequences (``by="sequence"``, every studied step
of a sequence right) a model gets right, with the fraction kept per label (subtask).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import device_of, evaluating
from iteration_heads.errors import IterationHeadsError
from iteration_heads.memory import batch_rows, rows_per_pass
from iteration_heads.pathways.prompts import Prompts

SOLVED_BATCH = 64
"""Prompts per forward pass of :func:`step_accuracy`."""

SolvedBy = Literal["step", "sequence"]


def _check_prompts(prompts: Any) -> Prompts:
    if not isinstance(prompts, Prompts):
        raise IterationHeadsError(f"prompts must be Prompts, got {type(prompts).__name__}")
    return prompts


def solved_rows(model: Any, width: int) -> int:
    """Prompts per pass of :func:`step_accuracy` at ``width``: at most :data:`SOLVED_BATCH`,
    within the memory budget of a plain pass with logits at every position
    (:func:`~iteration_heads.memory.rows_per_pass`).

    Example:
        >>> from iteration_heads import zoo
        >>> solved_rows(zoo.load("polynomial_paper"), 12)
        64
    """
    return rows_per_pass(model, width, logits="all", cap=SOLVED_BATCH)


def step_accuracy(
    model: Any, prompts: Prompts, *, batch_size: int | None = None
) -> Bool[Tensor, " n"]:
    """Per prompt: is the model's greedy (argmax) next token at ``prompts.position`` the
    answer? Teacher forcing: each prompt already holds the true prefix, so a step is judged on
    its own, whatever the model would have written before it.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=4, n_train=2, n_test=2))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> bool(step_accuracy(zoo.load("polynomial_paper"), prompts).all())
        True
    """
    prompts = _check_prompts(prompts)
    size = batch_rows(batch_size, solved_rows(model, int(prompts.clean.shape[1])))
    vocab = int(model.cfg.d_vocab)
    if int(prompts.clean.max()) >= vocab or int(prompts.clean.min()) < 0:
        raise IterationHeadsError(
            f"prompt tokens span {int(prompts.clean.min())}..{int(prompts.clean.max())}, outside "
            f"the model's vocabulary of {vocab} tokens"
        )
    device = device_of(model)
    right = []
    with evaluating(model):
        for start in range(0, len(prompts), size):
            position = prompts.position[start : start + size]
            tokens = prompts.clean[start : start + size, : int(position.max()) + 1]
            logits = model(tokens.to(device))
            rows = torch.arange(len(position))
            top = logits[rows, position.to(logits.device)].argmax(-1).cpu()
            right.append(top == prompts.answer[start : start + size])
    return torch.cat(right)


@dataclass(frozen=True, repr=False)
class SequenceAccuracy(Result):
    """Step accuracy per label and exact match of whole sequences (every studied step right).

    Attributes:
        correct: Per prompt, whether the model's greedy next token is the answer.
        example: Per prompt, the sequence it was cut from.
        labels: Per prompt, its label (subtask).
    """

    correct: Bool[Tensor, " n"]
    example: Int[Tensor, " n"]
    labels: tuple[str, ...]

    @property
    def sequences(self) -> dict[int, bool]:
        """Sequence -> whether every studied step of it is right."""
        out: dict[int, bool] = {}
        for seq, ok in zip(self.example.tolist(), self.correct.tolist(), strict=True):
            out[seq] = out.get(seq, True) and bool(ok)
        return out

    @property
    def exact_match(self) -> float:
        """Share of sequences with every studied step right."""
        solved = list(self.sequences.values())
        return sum(solved) / len(solved)

    def step_accuracy(self) -> dict[str, float]:
        """Label -> share of its steps right (``"all"`` first)."""
        out = {"all": float(self.correct.float().mean())}
        for label in dict.fromkeys(self.labels):
            rows = torch.tensor([x == label for x in self.labels])
            out[label] = float(self.correct[rows].float().mean())
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "n_prompts": len(self.labels),
            "n_sequences": len(self.sequences),
            "step_accuracy": self.step_accuracy(),
            "exact_match": self.exact_match,
        }

    def format(self) -> str:
        """Step accuracy per label, then exact match."""
        steps = ", ".join(f"{k} {v:.3f}" for k, v in self.step_accuracy().items())
        solved = self.sequences
        return (
            f"step accuracy over {len(self.labels)} prompts: {steps}\n"
            f"exact match: {sum(solved.values())} of {len(solved)} sequences "
            f"({self.exact_match:.3f})"
        )


def sequence_accuracy(
    model: Any, prompts: Prompts, *, batch_size: int | None = None
) -> SequenceAccuracy:
    """:func:`step_accuracy` regrouped by ``prompts.example`` (the sequence each step was cut
    from): accuracy per label and exact match of whole sequences.

    Raises:
        IterationHeadsError: prompts without ``example``.

    Example:
        >>> import dataclasses
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=4, n_train=2, n_test=3))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> rows = [int(r) for r, n in enumerate(data.test.lengths) for _ in range(n)]
        >>> prompts = dataclasses.replace(prompts, example=torch.tensor(rows))
        >>> sequence_accuracy(zoo.load("polynomial_paper"), prompts).exact_match
        1.0
    """
    prompts = _check_prompts(prompts)
    if prompts.example is None:
        raise IterationHeadsError(
            "sequence accuracy needs prompts with `example` (the sequence each step was cut "
            "from); these have none: judge steps on their own (by='step')"
        )
    correct = step_accuracy(model, prompts, batch_size=batch_size)
    return SequenceAccuracy(correct, prompts.example.clone(), tuple(prompts.labels))


def solved_prompts(
    model: Any, prompts: Prompts, *, by: SolvedBy = "step", batch_size: int | None = None
) -> tuple[Prompts, dict[str, float]]:
    """The prompts the model solves, and the fraction kept per label (``"all"`` first):
    ``by="step"`` keeps each prompt whose studied step is right, ``by="sequence"`` keeps the
    whole sequences (``prompts.example``) whose every studied step is right.

    Raises:
        IterationHeadsError: an unknown ``by``, ``by="sequence"`` without ``example``, or a
            model that solves none of the prompts.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=4, n_train=2, n_test=2))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> kept, fractions = solved_prompts(zoo.load("polynomial_paper"), prompts)
        >>> len(kept) == len(prompts), fractions["all"]
        (True, 1.0)
    """
    prompts = _check_prompts(prompts)
    if by not in ("step", "sequence"):
        raise IterationHeadsError(f"by={by!r}, expected 'step' or 'sequence'")
    if by == "sequence":
        found = sequence_accuracy(model, prompts, batch_size=batch_size)
        solved = found.sequences
        keep = torch.tensor([solved[s] for s in found.example.tolist()], dtype=torch.bool)
    else:
        keep = step_accuracy(model, prompts, batch_size=batch_size)
    if not bool(keep.any()):
        what = "steps" if by == "step" else "sequences (every studied step right)"
        raise IterationHeadsError(
            f"the model solves none of the {len(prompts)} prompts (by {by}: {what}); nothing "
            "is left to analyse: check that the prompts are written as the model expects"
        )
    fractions = {"all": float(keep.float().mean())}
    for label in dict.fromkeys(prompts.labels):
        rows = torch.tensor([x == label for x in prompts.labels])
        fractions[label] = float(keep[rows].float().mean())
    return prompts.select(keep), fractions
