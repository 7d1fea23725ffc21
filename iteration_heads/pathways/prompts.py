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
from typing import Any

import torch
from jaxtyping import Bool, Int
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
        foils: Per prompt, the tokens the answer competes with (tokens of the same kind: the
            other label, other names), padded with -1; answer-writer scores are centred on
            their mean logit when given. None: centred on the whole vocabulary.
        example: Per prompt, the sequence (problem) it was cut from, to group steps back into
            sequences; None where prompts are independent.
        info: Per prompt, JSON-ready details (hop, Dutta's subtask index, how a name was
            tokenised, ...); None where there are none.
        lengths: Per prompt, how many of its positions are its own (the rest is padding, left
            out of mean-ablation means); None: every position is.

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
    foils: Int[Tensor, "n k"] | None = None
    example: Int[Tensor, " n"] | None = None
    info: tuple[dict[str, Any], ...] | None = None
    lengths: Int[Tensor, " n"] | None = None

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
        if self.foils is not None and (
            not isinstance(self.foils, Tensor)
            or self.foils.ndim != 2
            or self.foils.shape[0] != n
            or self.foils.shape[1] == 0
            or self.foils.is_floating_point()
        ):
            raise IterationHeadsError(
                f"foils of shape {tuple(getattr(self.foils, 'shape', ()))}, expected an integer "
                f"tensor [{n}, k] with k >= 1 (-1 pads)"
            )
        if self.foils is not None:
            lonely = ~(self.foils >= 0).any(1)
            clash = (self.foils == self.answer[:, None]).any(1)
            for what, rows in (("no foil", lonely), ("its answer among its foils", clash)):
                if bool(rows.any()):
                    row = int(rows.nonzero()[0])
                    raise IterationHeadsError(
                        f"prompt {row} has {what}; expected at least one foil token other than "
                        "the answer"
                    )
        if self.example is not None and (
            not isinstance(self.example, Tensor)
            or self.example.shape != (n,)
            or self.example.is_floating_point()
        ):
            raise IterationHeadsError(
                f"example of shape {tuple(getattr(self.example, 'shape', ()))}, expected an "
                f"integer tensor ({n},)"
            )
        if self.info is not None and len(self.info) != n:
            raise IterationHeadsError(f"{len(self.info)} info records for {n} prompts")
        if self.lengths is not None:
            if (
                not isinstance(self.lengths, Tensor)
                or self.lengths.shape != (n,)
                or self.lengths.is_floating_point()
            ):
                raise IterationHeadsError(
                    f"lengths of shape {tuple(getattr(self.lengths, 'shape', ()))}, expected an "
                    f"integer tensor ({n},)"
                )
            bad = ((self.lengths <= self.position) | (self.lengths > width)).nonzero().flatten()
            if len(bad):
                i = int(bad[0])
                raise IterationHeadsError(
                    f"length {int(self.lengths[i])} of prompt {i}, expected "
                    f"{int(self.position[i]) + 1}..{width} (its studied position is its own)"
                )

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
        index = torch.as_tensor(index) if isinstance(index, Tensor) else torch.tensor(index)
        if index.numel() == 0:
            raise IterationHeadsError("no prompts selected: expected at least one index")
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
            None if self.foils is None else self.foils[index],
            None if self.example is None else self.example[index],
            None if self.info is None else tuple(self.info[i] for i in rows),
            None if self.lengths is None else self.lengths[index],
        )

    def own_positions(self) -> Bool[Tensor, "n pos"]:
        """True at the positions that are the prompts' own, False at padding (every position
        when ``lengths`` is None): the ``reference_mask`` of mean ablation over these prompts.

        Example:
            >>> p = Prompts(torch.zeros(2, 3, dtype=torch.long), None, torch.tensor([0, 1]),
            ...             torch.tensor([0, 0]), torch.zeros(2, 3, dtype=torch.long), ("s",),
            ...             ("a", "b"), lengths=torch.tensor([2, 3]))
            >>> p.own_positions().tolist()
            [[True, True, False], [True, True, True]]
        """
        index = torch.arange(self.clean.shape[1])[None, :]
        if self.lengths is None:
            return torch.ones_like(self.clean, dtype=torch.bool)
        return index < self.lengths[:, None]

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

    ``foils`` are the answer's rivals: every other name of its kind (concept, entity or
    property) in the vocabulary, or the other of ``True``/``False``; ``example`` is the problem
    (row of ``problems``) each prompt was cut from.

    Example:
        >>> from iteration_heads.tasks.ontology import OntologyConfig, make_ontology_problems
        >>> problems = make_ontology_problems(OntologyConfig(hops=(2,), distractors=0), 2)
        >>> prompts = ontology_prompts(problems, ("induction",))
        >>> len(prompts), prompts.labels[0], prompts.segment_names[prompts.segments[0, 1]]
        (4, 'induction', 'facts')
        >>> prompts.example.tolist(), problems.vocab.kind(problems.vocab.names[prompts.foils[0, 0]])
        ([0, 0, 1, 1], 'concept')
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
    answer = problems.targets[rows, positions]
    return Prompts(
        clean,
        torch.stack([problems.corrupt(r, p) for r, p in zip(rows, positions, strict=True)]),
        torch.tensor(positions),
        answer,
        segments,
        ONTOLOGY_SEGMENTS,
        tuple(SUBTASKS[int(problems.subtasks[r, p])] for r, p in zip(rows, positions, strict=True)),
        foils=_ontology_foils(problems, answer),
        example=torch.tensor(rows),
        lengths=(clean != vocab.id("<pad>")).long().cumsum(1).argmax(1) + 1,  # up to the last
    )


def _ontology_foils(problems: OntologyProblems, answer: Tensor) -> Tensor:
    """Per answer, the other tokens of its kind (-1 pads): names of the same kind, or the
    other of ``True``/``False``."""
    vocab = problems.vocab
    pair = {"True": ["False"], "False": ["True"]}
    rivals = []
    for token in answer.tolist():
        name = vocab.names[token]
        kind = vocab.kind(name)
        same = pair.get(name) or ([] if kind == "special" else vocab.of_kind(kind))
        rivals.append([vocab.id(n) for n in same if n != name])
    if not all(rivals):
        bad = vocab.names[int(answer[[bool(r) for r in rivals].index(False)])]
        raise IterationHeadsError(f"answer {bad!r} has no other token of its kind to compete with")
    width = max(len(r) for r in rivals)
    return torch.tensor([r + [-1] * (width - len(r)) for r in rivals])


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
    input ``x_t`` (what the iteration head reads there) with another symbol. ``foils``: the
    other symbols; ``example``: the row of ``split`` each prompt was cut from.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset
        >>> data = make_dataset(DataConfig(task="copy", max_len=3, n_train=2, n_test=2))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> len(prompts), sorted(set(prompts.labels))
        (12, ['step 1', 'step 2', 'step 3'])
        >>> prompts.example[:4].tolist(), prompts.foils.shape == (12, data.layout.n_symbols - 1)
        ([0, 1, 2, 2], True)
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
    answer = split.targets[rows, position.tolist()]
    symbols = torch.arange(layout.n_symbols)
    foils = symbols[None].repeat(len(rows), 1)[symbols[None] != answer[:, None]]
    return Prompts(
        clean,
        corrupted,
        position,
        answer,
        segments,
        ITERATION_SEGMENTS,
        tuple(f"step {t}" for t in steps),
        foils=foils.reshape(len(rows), layout.n_symbols - 1),
        example=torch.tensor(rows),
        lengths=torch.tensor([TokenLayout.seq_len(int(n)) for n in lengths]),  # EoS pads
    )
