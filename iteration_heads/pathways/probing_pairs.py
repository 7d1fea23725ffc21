"""The word pairs of Dutta et al.'s probing of ontological relations, labelled from the prompts'
stated facts (:func:`relation_pairs`, :func:`ontology_pairs`); the probes are in
:mod:`~iteration_heads.pathways.probing`.

An ordered pair ``(a ; b)`` of two words of one prompt is **related** for a fact ``a is b`` (the
stated order; with ``reversed=True`` the swapped pair ``(b ; a)`` is its own class
**reversed**, else it is left out: order matters), **negated** for a fact stated with "not"
(a class only where some fact is negated), **unrelated** where neither word reaches the other
along the facts (either sign); pairs linked only through other words are left out. A word is
read at its last mention among the facts (by the position given: for words of several tokens,
give the first sub-token's), where the model has read every earlier fact about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.ontology import OntologyProblems

Fact = tuple[int, int] | tuple[int, int, bool]


@dataclass(frozen=True)
class RelationPairs:
    """Labelled word pairs of prompts.

    Attributes:
        tokens: The prompts ``[n, pos]`` (the context the words are read in).
        example: The prompt of each pair; ``positions`` ``[pair, 2]`` where each word is read;
            ``words`` ``[pair, 2]`` the token id there (what the vocabulary split holds out).
        labels: Index in ``classes`` of each pair.
    """

    tokens: Int[Tensor, "n pos"]
    example: Int[Tensor, " pair"]
    positions: Int[Tensor, "pair 2"]
    words: Int[Tensor, "pair 2"]
    labels: Int[Tensor, " pair"]
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Pairs per class."""
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


def relation_pairs(
    tokens: Int[Tensor, "n pos"], facts: Sequence[Sequence[Fact]], *, reversed: bool = False
) -> RelationPairs:
    """Every labelled ordered word pair of each prompt, from its facts ``(subject position,
    object position)`` or ``(subject position, object position, negated)``.

    Example:
        >>> tokens = torch.tensor([[0, 5, 1, 6, 2, 6, 1, 7, 2, 8, 1, 9]])  # 5 is 6 . 6 is 7 . 8 is 9
        >>> pairs = relation_pairs(tokens, [[(1, 3), (5, 7), (9, 11)]])
        >>> pairs.classes, pairs.counts()["related"], pairs.words[pairs.labels == 0].tolist()
        (('related', 'unrelated'), 3, [[5, 6], [6, 7], [8, 9]])
    """
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.is_floating_point():
        raise IterationHeadsError(
            f"tokens of shape {tuple(getattr(tokens, 'shape', ()))}, expected an integer tensor "
            "[n, pos]"
        )
    if len(facts) != len(tokens):
        raise IterationHeadsError(f"{len(facts)} lists of facts for {len(tokens)} prompts")
    negated = any(len(f) == 3 and f[2] for prompt in facts for f in prompt)
    classes = ("related", *(("reversed",) if reversed else ()), *(("negated",) if negated else ()))
    classes += ("unrelated",)
    rows: list[tuple[int, int, int, int, int, int]] = []
    width = tokens.shape[1]
    for i, prompt in enumerate(facts):
        edges: dict[tuple[int, int], str] = {}
        where: dict[int, int] = {}  # word -> its last mention
        for fact in prompt:
            if len(fact) not in (2, 3) or not all(0 <= int(p) < width for p in fact[:2]):
                raise IterationHeadsError(
                    f"fact {tuple(fact)!r} of prompt {i}: expected (subject position, object "
                    f"position[, negated]) with positions in 0..{width - 1}"
                )
            a, b = (int(tokens[i, int(p)]) for p in fact[:2])
            edges[a, b] = "negated" if len(fact) == 3 and fact[2] else "related"
            for word, p in ((a, int(fact[0])), (b, int(fact[1]))):
                where[word] = max(where.get(word, p), p)
        reach = {w: {b for (a, b) in edges if a == w} for w in where}
        for _ in where:  # transitive closure (prompts are small)
            reach = {w: r.union(*(reach[x] for x in r)) for w, r in reach.items()}
        for a in where:
            for b in where:
                if a == b:
                    continue
                if (a, b) in edges:
                    label = edges[a, b]
                elif (b, a) in edges and edges[b, a] == "related":
                    label = "reversed" if reversed else ""
                elif b in reach[a] or a in reach[b]:
                    label = ""
                else:
                    label = "unrelated"
                if label:
                    rows.append((i, where[a], where[b], a, b, classes.index(label)))
    if not rows:
        raise IterationHeadsError("no word pairs: the facts name no two words")
    table = torch.tensor(rows, dtype=torch.long)
    return RelationPairs(tokens, table[:, 0], table[:, 1:3], table[:, 3:5], table[:, 5], classes)


def ontology_pairs(problems: OntologyProblems, *, reversed: bool = False) -> RelationPairs:
    """:func:`relation_pairs` of ontology problems: the facts ``a is b .`` before ``Q``, read
    in the prompt up to ``=>`` (this symbolic task states no negation).

    Example:
        >>> from iteration_heads.tasks import OntologyConfig, make_ontology_problems
        >>> pairs = ontology_pairs(make_ontology_problems(OntologyConfig(hops=(2,)), 8, seed=0))
        >>> pairs.classes, pairs.tokens.shape[0]
        (('related', 'unrelated'), 8)
    """
    if not isinstance(problems, OntologyProblems):
        raise IterationHeadsError(
            f"problems must be OntologyProblems (make_ontology_problems), got "
            f"{type(problems).__name__}"
        )
    question = problems.vocab.id("Q")
    facts, ends = [], []
    for row in problems.tokens.tolist():
        q = row.index(question)
        facts.append([(p, p + 2) for p in range(1, q, 4)])
        ends.append(row.index(problems.vocab.id("=>")) + 1)
    return relation_pairs(problems.tokens[:, : max(ends)], facts, reversed=reversed)
