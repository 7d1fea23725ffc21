"""The word pairs of Dutta et al.'s probing of ontological relations, labelled from the prompts'
stated facts (:func:`relation_pairs`, :func:`ontology_pairs`); the probes are in
:mod:`~iteration_heads.pathways.probing`.

An ordered pair ``(a ; b)`` of two words of one prompt is **related** for a fact ``a is b`` (the
stated order; with ``reversed=True`` the swapped pair ``(b ; a)`` is its own class
**reversed**, else it is left out: order matters), **negated** for a fact stated with "not"
(a class only where some fact is negated), **unrelated** where neither word reaches the other
along the facts (either sign); pairs linked only through other words are left out. A word is
read at its last mention among the facts (by the position given), where the model has read every
earlier fact about it.

Words are told apart by their token id at that position (one-token symbolic names), or by name
ids the caller gives (``relation_pairs(..., names=...)``): in natural language a name spans
several sub-word tokens and two names can share one (``brimpus`` and ``lempus`` may both end in
``pus``). :func:`prontoqa_pairs` does this for PrOntoQA text through any fast tokenizer and reads
each name at the **last** token of its span: in a causal model that is the first position where
the whole name has been read (its first token is all a model has seen of it there, and is
often shared too: ``Br`` of ``Brimpuses``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.record_checks import RecordVocabulary
from iteration_heads.tasks.ontology import OntologyProblems
from iteration_heads.tasks.prontoqa import NAME_KINDS, ProntoQAProblem, Word

Fact = tuple[int, int] | tuple[int, int, bool]


@dataclass(frozen=True)
class RelationPairs:
    """Labelled word pairs of prompts.

    Attributes:
        tokens: The prompts ``[n, pos]`` (the context the words are read in).
        example: The prompt of each pair; ``positions`` ``[pair, 2]`` where each word is read;
            ``words`` ``[pair, 2]`` the word ids (the token id there, or the name ids given):
            what the vocabulary split holds out.
        labels: Index in ``classes`` of each pair.
        names: The name of each word id where known (:func:`prontoqa_pairs`), else empty.
    """

    tokens: Int[Tensor, "n pos"]
    example: Int[Tensor, " pair"]
    positions: Int[Tensor, "pair 2"]
    words: Int[Tensor, "pair 2"]
    labels: Int[Tensor, " pair"]
    classes: tuple[str, ...]
    names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Pairs per class."""
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


def _check_names(names: Any, facts: Sequence[Sequence[Fact]]) -> list[list[tuple[int, int]]]:
    """The caller's name ids: one ``(subject, object)`` pair of non-negative ints per fact."""
    if isinstance(names, str | bytes) or not isinstance(names, Sequence):
        raise IterationHeadsError(f"names={names!r}, expected one list of name-id pairs a prompt")
    if len(names) != len(facts):
        raise IterationHeadsError(f"{len(names)} lists of names for {len(facts)} prompts")
    out = []
    for i, (row, prompt) in enumerate(zip(names, facts, strict=True)):
        if isinstance(row, str | bytes) or not isinstance(row, Sequence) or len(row) != len(prompt):
            raise IterationHeadsError(
                f"names[{i}]={row!r}, expected {len(prompt)} (subject, object) name-id pairs "
                "(one per fact)"
            )
        for j, pair in enumerate(row):
            ok = isinstance(pair, Sequence) and len(pair) == 2
            if not ok or not all(type(v) is int and v >= 0 for v in pair):
                raise IterationHeadsError(
                    f"names[{i}][{j}]={pair!r}, expected two non-negative integer name ids"
                )
        out.append([(int(a), int(b)) for a, b in row])
    return out


def relation_pairs(
    tokens: Int[Tensor, "n pos"],
    facts: Sequence[Sequence[Fact]],
    *,
    reversed: bool = False,
    names: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> RelationPairs:
    """Every labelled ordered word pair of each prompt, from its facts ``(subject position,
    object position)`` or ``(subject position, object position, negated)``.

    A word is its token id at the fact's position, or with ``names`` (per prompt, per fact,
    the ``(subject, object)`` name ids) the caller's id: words of several tokens, or names
    that share a token, stay distinct. Give the position of the token to read each word at
    (for words of several tokens, the last one: see the module's docstring).

    Example:
        >>> tokens = torch.tensor([[0, 5, 1, 6, 2, 6, 1, 7, 2, 8, 1, 9]])  # 5 is 6 . 6 is 7 . 8 is 9
        >>> pairs = relation_pairs(tokens, [[(1, 3), (5, 7), (9, 11)]])
        >>> pairs.classes, pairs.counts()["related"], pairs.words[pairs.labels == 0].tolist()
        (('related', 'unrelated'), 3, [[5, 6], [6, 7], [8, 9]])
        >>> named = relation_pairs(tokens, [[(1, 3), (5, 7), (9, 11)]], names=[[(0, 1), (1, 2), (3, 4)]])
        >>> named.words[named.labels == 0].tolist()
        [[0, 1], [1, 2], [3, 4]]
    """
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.is_floating_point():
        raise IterationHeadsError(
            f"tokens of shape {tuple(getattr(tokens, 'shape', ()))}, expected an integer tensor "
            "[n, pos]"
        )
    if len(facts) != len(tokens):
        raise IterationHeadsError(f"{len(facts)} lists of facts for {len(tokens)} prompts")
    named = None if names is None else _check_names(names, facts)
    negated = any(len(f) == 3 and f[2] for prompt in facts for f in prompt)
    classes = ("related", *(("reversed",) if reversed else ()), *(("negated",) if negated else ()))
    classes += ("unrelated",)
    rows: list[tuple[int, int, int, int, int, int]] = []
    width = tokens.shape[1]
    for i, prompt in enumerate(facts):
        edges: dict[tuple[int, int], str] = {}
        where: dict[int, int] = {}  # word -> its last mention
        for j, fact in enumerate(prompt):
            if len(fact) not in (2, 3) or not all(0 <= int(p) < width for p in fact[:2]):
                raise IterationHeadsError(
                    f"fact {tuple(fact)!r} of prompt {i}: expected (subject position, object "
                    f"position[, negated]) with positions in 0..{width - 1}"
                )
            if named is None:
                a, b = (int(tokens[i, int(p)]) for p in fact[:2])
            else:
                a, b = named[i][j]
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


def _facts_of(problem: ProntoQAProblem, k: int) -> list[tuple[Word, Word, bool]]:
    """``(subject, object, negated)`` of each sentence of the problem's facts segment."""
    spans = dict(problem.segments)
    if "facts" not in spans:
        raise IterationHeadsError(f"problem {k} has no facts segment (segments {list(spans)})")
    lo, hi = spans["facts"]
    text = problem.text
    sentences: dict[int, list[Word]] = {}
    for word in problem.words:
        if lo <= word.span[0] < hi:
            sentences.setdefault(text[lo : word.span[0]].count("."), []).append(word)
    out = []
    for sentence in sentences.values():
        if len(sentence) != 2 or sentence[0].kind not in NAME_KINDS:
            raise IterationHeadsError(
                f"problem {k}: a fact naming {[w.surface for w in sentence]}, expected a "
                "subject and an object per sentence"
            )
        between = text[sentence[0].span[1] : sentence[1].span[0]]
        out.append((sentence[0], sentence[1], bool(re.search(r"\bnot\b", between))))
    if not out:
        raise IterationHeadsError(f"problem {k} states no fact")
    return out


def prontoqa_pairs(
    problems: Sequence[ProntoQAProblem],
    tokenizer: Any,
    *,
    reversed: bool = False,
    prepend_bos: bool | None = None,
) -> RelationPairs:
    """:func:`relation_pairs` of natural-language PrOntoQA problems through a fast HuggingFace
    tokenizer: the facts ``Brimpuses are yumpuses.`` (``... are not ...``: negated) of each
    problem's facts segment, read in its prompt (the text up to the chain of thought, BOS in
    front as :func:`~iteration_heads.pathways.records.prompts_from_records` puts it,
    right-padded). A word is its name (``brimpus`` and ``Brimpuses`` are one word; the ids
    index ``pairs.names``, so the vocabulary split holds names out), read at the last token of
    its last occurrence among the facts.

    Example:
        >>> from iteration_heads.tasks.prontoqa import ProntoQAConfig, make_prontoqa
        >>> from iteration_heads.pathways.text_ontology import word_tokenizer
        >>> problems = make_prontoqa(ProntoQAConfig(hops=(1,), format="qa"), 1, seed=3)
        >>> problems[0].prompt
        'Q: Fae is vumpus. Vumpuses are salty. True or false: Fae is salty.\\nA: '
        >>> pairs = prontoqa_pairs(problems, word_tokenizer(problems))
        >>> [(pairs.names[a], pairs.names[b], pairs.classes[c]) for (a, b), c in
        ...  zip(pairs.words.tolist(), pairs.labels.tolist())]
        [('Fae', 'vumpus', 'related'), ('vumpus', 'salty', 'related')]
        >>> pairs.positions.tolist()  # BOS Q : Fae is vumpus . Vumpuses are salty: the last mention
        [[3, 7], [7, 9]]
    """
    if isinstance(problems, ProntoQAProblem):
        problems = [problems]
    if (
        not isinstance(problems, Sequence)
        or not problems
        or not all(isinstance(p, ProntoQAProblem) for p in problems)
    ):
        raise IterationHeadsError(
            f"problems of type {type(problems).__name__}, expected a non-empty list of "
            "ProntoQAProblem (make_prontoqa)"
        )
    if not isinstance(reversed, bool):
        raise IterationHeadsError(f"reversed={reversed!r}, expected True or False")
    if tokenizer is None:
        raise IterationHeadsError("tokenizer=None, expected a fast HuggingFace tokenizer")
    vocabulary = RecordVocabulary(tokenizer, prepend_bos)
    ids: dict[str, int] = {}
    rows, facts, names = [], [], []
    for k, problem in enumerate(problems):
        for name in [n for kind in NAME_KINDS for n in problem.names(kind)]:
            ids.setdefault(name, len(ids))  # the config's names, in its order
        tokens, offsets = vocabulary.encode(problem.prompt)
        bos = vocabulary.bos
        prompt_facts, prompt_names = [], []
        for fact in _facts_of(problem, k):
            where = []
            for word in fact[:2]:
                lo, hi = word.span
                covering = [t for t, (a, b) in enumerate(offsets) if a < hi and b > lo]
                if not covering:
                    raise IterationHeadsError(
                        f"problem {k}: no token covers {word.surface!r} at characters "
                        f"{word.span}; expected the tokenizer to encode every name"
                    )
                where.append(len(bos) + covering[-1])
            prompt_facts.append((where[0], where[1], fact[2]))
            subject, obj = (ids.setdefault(w.name, len(ids)) for w in fact[:2])
            prompt_names.append((subject, obj))
        rows.append(bos + tokens)
        facts.append(prompt_facts)
        names.append(prompt_names)
    width = max(len(r) for r in rows)
    padded = torch.tensor([r + [vocabulary.pad] * (width - len(r)) for r in rows])
    pairs = relation_pairs(padded, facts, reversed=reversed, names=names)
    return replace(pairs, names=tuple(ids))
