"""The input of every pathway analysis: prompts whose next-token prediction at one position is
studied, with a same-length corruption, the answer token and a segment label per position.

Any TransformerLens model and any task fit: :func:`ontology_prompts` builds them from multi-hop
problems (one prompt per chain-of-thought step of the chosen subtasks) and
:func:`iteration_prompts` from the paper's iterative tasks (one prompt per chain-of-thought step,
the input token that step reads corrupted), so the same analyses run on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.data import Split
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.tasks.ontology import SUBTASKS, OntologyProblems
from iteration_heads.tasks.task import check_int

ONTOLOGY_SEGMENTS = ("facts", "question", "chain of thought")
"""Segments of an ontology prompt: ``segments[i, p]`` indexes this tuple, -1 for ``<s>``,
``=>`` and padding."""

ITERATION_SEGMENTS = ("input", "chain of thought")
"""Segments of an iterative-task prompt (the task token and EoI are -1)."""


@dataclass(frozen=True)
class Prompts:
    """Prompts studied at one position each.

    Attributes:
        clean: Token ids ``[n, pos]``.
        corrupted: The same prompts with the answer's source replaced by another token of the
            same kind (same length); None where an analysis needs no corruption.
        position: The position whose next-token prediction is studied, per prompt.
        answer: The correct next token at ``position``.
        segments: Index into ``segment_names`` of every position, -1 for none.
        segment_names: What the segments are.
        labels: A label per prompt (the subtask), to group results by.

    Example:
        >>> p = Prompts(torch.tensor([[1, 2, 3]]), None, torch.tensor([2]), torch.tensor([4]),
        ...             torch.tensor([[-1, 0, 1]]), ("a", "b"), ("copy",))
        >>> len(p), p.group("copy").position.tolist()
        (1, [2])
    """

    clean: Int[Tensor, "n pos"]
    corrupted: Int[Tensor, "n pos"] | None
    position: Int[Tensor, " n"]
    answer: Int[Tensor, " n"]
    segments: Int[Tensor, "n pos"]
    segment_names: tuple[str, ...]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if (
            not isinstance(self.clean, Tensor)
            or self.clean.ndim != 2
            or self.clean.is_floating_point()
        ):
            raise IterationHeadsError(
                f"clean tokens of shape {tuple(getattr(self.clean, 'shape', ()))}, expected "
                "an integer tensor [n, pos]"
            )
        n, width = self.clean.shape
        if n == 0:
            raise IterationHeadsError("no prompts: expected at least one")
        if self.corrupted is not None and self.corrupted.shape != self.clean.shape:
            raise IterationHeadsError(
                f"corrupted tokens of shape {tuple(self.corrupted.shape)}, expected the clean "
                f"shape {tuple(self.clean.shape)}"
            )
        for name in ("position", "answer"):
            if getattr(self, name).shape != (n,):
                raise IterationHeadsError(
                    f"{name} of shape {tuple(getattr(self, name).shape)}, expected ({n},)"
                )
        bad = ((self.position < 0) | (self.position >= width)).nonzero().flatten()
        if len(bad):
            raise IterationHeadsError(
                f"position {int(self.position[bad[0]])} of prompt {int(bad[0])} is outside "
                f"the {width} positions"
            )
        if self.segments.shape != self.clean.shape:
            raise IterationHeadsError(
                f"segments of shape {tuple(self.segments.shape)}, expected {tuple(self.clean.shape)}"
            )
        if len(self.labels) != n:
            raise IterationHeadsError(f"{len(self.labels)} labels for {n} prompts")

    def __len__(self) -> int:
        return self.clean.shape[0]

    def select(self, index: Tensor | Sequence[int]) -> Prompts:
        """The prompts at ``index`` (indices or a boolean mask).

        Example:
            >>> p = Prompts(torch.zeros(2, 3, dtype=torch.long), None, torch.tensor([1, 2]),
            ...             torch.tensor([0, 0]), torch.zeros(2, 3, dtype=torch.long), ("s",),
            ...             ("a", "b"))
            >>> p.select([1]).labels
            ('b',)
        """
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        rows = index.tolist()
        return Prompts(
            self.clean[index],
            None if self.corrupted is None else self.corrupted[index],
            self.position[index],
            self.answer[index],
            self.segments[index],
            self.segment_names,
            tuple(self.labels[i] for i in rows),
        )

    def group(self, label: str) -> Prompts:
        """The prompts with one label, or an error naming the labels present."""
        rows = [i for i, x in enumerate(self.labels) if x == label]
        if not rows:
            raise IterationHeadsError(
                f"no prompt labelled {label!r}; labels present: {sorted(set(self.labels))}"
            )
        return self.select(rows)

    def need_corrupted(self, what: str) -> Int[Tensor, "n pos"]:
        """The corrupted tokens, or a clear error saying ``what`` needs them."""
        if self.corrupted is None:
            raise IterationHeadsError(f"{what} needs corrupted prompts; these have none")
        return self.corrupted


def ontology_prompts(
    problems: OntologyProblems, subtasks: Sequence[str] = ("decision", "copy", "induction")
) -> Prompts:
    """One prompt per chain-of-thought step of ``problems`` whose subtask is in ``subtasks``
    and whose answer has a source in the prompt, corrupted at that source (same kind of name).

    Example:
        >>> from iteration_heads.tasks.ontology import OntologyConfig, make_ontology_problems
        >>> problems = make_ontology_problems(OntologyConfig(hops=(2,), distractors=0), 2)
        >>> prompts = ontology_prompts(problems, ("induction",))
        >>> len(prompts), prompts.labels[0], prompts.segment_names[prompts.segments[0, 1]]
        (4, 'induction', 'facts')
    """
    rows, positions = ontology_steps(problems, subtasks)
    vocab = problems.vocab
    q, arrow = vocab.id("Q"), vocab.id("=>")
    clean = problems.tokens[rows]
    index = torch.arange(clean.shape[1])
    q_at = (clean == q).float().argmax(1, keepdim=True)
    arrow_at = (clean == arrow).float().argmax(1, keepdim=True)
    segments = torch.full_like(clean, -1)
    segments[(index > 0) & (index < q_at)] = 0
    segments[(index >= q_at) & (index < arrow_at)] = 1
    segments[(index > arrow_at) & (clean != 0)] = 2
    return Prompts(
        clean,
        torch.stack([problems.corrupt(r, p) for r, p in zip(rows, positions, strict=True)]),
        torch.tensor(positions),
        problems.targets[rows, positions],
        segments,
        ONTOLOGY_SEGMENTS,
        tuple(SUBTASKS[int(problems.subtasks[r, p])] for r, p in zip(rows, positions, strict=True)),
    )


def ontology_steps(
    problems: OntologyProblems, subtasks: Sequence[str] = ("decision", "copy", "induction")
) -> tuple[list[int], list[int]]:
    """The (problem, position) of every step :func:`ontology_prompts` makes a prompt of, in
    its order: to look up per-step data such as ``problems.priors[rows, positions]``.

    Example:
        >>> from iteration_heads.tasks.ontology import OntologyConfig, make_ontology_problems
        >>> problems = make_ontology_problems(OntologyConfig(hops=(1,), distractors=0), 1)
        >>> rows, positions = ontology_steps(problems, ("copy",))
        >>> rows, len(positions)
        ([0, 0], 2)
    """
    if isinstance(subtasks, str) or not all(s in SUBTASKS for s in subtasks):
        raise IterationHeadsError(f"subtasks={subtasks!r}, expected names from {SUBTASKS}")
    codes = [SUBTASKS.index(s) for s in subtasks]
    chosen = torch.isin(problems.subtasks, torch.tensor(codes)) & (problems.sources >= 0)
    if not bool(chosen.any()):
        raise IterationHeadsError(f"no chain-of-thought step of subtasks {list(subtasks)}")
    rows, positions = chosen.nonzero().T.tolist()
    return rows, positions


def iteration_prompts(split: Split, layout: TokenLayout, *, seed: int = 0) -> Prompts:
    """One prompt per chain-of-thought step ``s_t`` (``t = 1..L``) of a CoT split of the
    paper's tasks: studied at the position that predicts ``s_t``, corrupted by replacing the
    input ``x_t`` (what the iteration head reads there) with another symbol.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset
        >>> data = make_dataset(DataConfig(task="copy", max_len=3, n_train=2, n_test=2))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> len(prompts), sorted(set(prompts.labels))
        (12, ['step 1', 'step 2', 'step 3'])
    """
    check_int("seed", seed, minimum=0)
    if not split.cot:
        raise IterationHeadsError("iteration prompts need a chain-of-thought split (cot=True)")
    generator = torch.Generator().manual_seed(seed)
    rows, steps = [], []
    for row, length in enumerate(split.lengths.tolist()):
        for t in range(1, length + 1):
            rows.append(row)
            steps.append(t)
    clean = split.tokens[rows]
    lengths = split.lengths[rows]
    step = torch.tensor(steps)
    position = lengths + step  # predicts s_t (at index L + 1 + t)
    corrupted = clean.clone()
    arange = torch.arange(len(rows))
    shift = torch.randint(1, layout.n_symbols, (len(rows),), generator=generator)
    corrupted[arange, step] = (clean[arange, step] + shift) % layout.n_symbols
    index = torch.arange(clean.shape[1])[None, :]
    segments = torch.full_like(clean, -1)
    segments[(index >= 1) & (index <= lengths[:, None])] = 0
    segments[(index > lengths[:, None] + 1) & (index <= 2 * lengths[:, None] + 1)] = 1
    return Prompts(
        clean,
        corrupted,
        position,
        split.targets[rows, position.tolist()],
        segments,
        ITERATION_SEGMENTS,
        tuple(f"step {t}" for t in steps),
    )
