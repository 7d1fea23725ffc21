"""Multi-hop reasoning over fictional ontologies (PrOntoQA-style), as token sequences of a small
vocabulary, with every chain-of-thought position tagged by its subtask and its source.

A problem states facts ``a is b .`` (shuffled, with distractors), asks ``Q x is p ?`` and
answers with a chain of thought that walks the chain from the entity ``x``::

    <s> c1 is c2 . x is c1 . c2 is p . Q x is p ? => x is c1 . c1 is c2 . x is c2 . c2 is p . x is p . True </s>

Each name is one token, so a prompt and its corruption (one name swapped for another of the same
kind) have the same length. The targets of the chain of thought are tagged (Dutta et al.'s
decomposition):

* **decision**: the subject of a sentence (which entity or concept comes next);
* **copy**: the object of ``c is d`` (or ``x is c``, the first), copied from a fact in context;
* **induction**: the object of ``x is d`` after ``x is c . c is d``, copied from the chain of
  thought itself;
* **answer**: ``True`` / ``False``; and ``format`` for ``is``, ``.`` and ``</s>``.

This module is the task's data (the first step of the multi-hop work); training on it and the
analyses come next.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.data import IGNORE
from iteration_heads.tasks.ontology_world import World
from iteration_heads.tasks.task import check_int, check_number

SPECIALS = ("<pad>", "<s>", "</s>", "is", ".", "Q", "?", "=>", "True", "False")
SUBTASKS = ("format", "decision", "copy", "induction", "answer")
"""Subtask codes: ``subtasks[i, p] = SUBTASKS.index(name)`` for a scored position, -1 elsewhere."""
PROBLEM_KINDS = ("fictional", "world", "contradicting")
"""Kinds of problem: over concepts outside the world (every fact stated), over the world (its
links stated only sometimes), over world concepts linked against the world (every fact stated)."""

Fact = tuple[str, str]


@dataclass(frozen=True)
class OntologyConfig:
    """How problems are drawn.

    Example:
        >>> OntologyConfig(hops=(1, 2)).max_hops
        2
    """

    hops: tuple[int, ...] = (1, 2, 3)  # concept-to-concept-or-property steps after "x is c1"
    distractors: int = 2  # at most this many distractor facts (0..distractors, uniformly)
    p_true: float = 0.5  # fraction of questions whose answer is True
    n_concepts: int = 12
    n_entities: int = 6
    n_properties: int = 6
    # The world, a prior held in the weights: the first world_concepts concepts are linked along
    # fixed chains of max_hops concepts (0: no world; see ontology_world.py).
    world_concepts: int = 0
    world_fraction: float = 0.0  # fraction of "mixed" problems drawn over the world
    p_stated: float = 0.5  # each world link of a world problem is stated with this probability
    p_contradict: float = 0.0  # fraction of world problems whose facts contradict the world
    world_seed: int = 0  # draws the world's chains

    def __post_init__(self) -> None:
        if isinstance(self.hops, int) or not self.hops:
            raise IterationHeadsError(
                f"hops={self.hops!r}, expected a non-empty tuple such as (1, 2)"
            )
        object.__setattr__(self, "hops", tuple(check_int("hops", h, minimum=1) for h in self.hops))
        check_int("distractors", self.distractors, minimum=0)
        check_number("p_true", self.p_true, minimum=0, maximum=1)
        check_int("n_entities", self.n_entities, minimum=2)
        check_int("n_properties", self.n_properties, minimum=2)
        check_int("n_concepts", self.n_concepts, minimum=2)
        if self.max_hops > self.n_concepts:
            raise IterationHeadsError(
                f"hops up to {self.max_hops} need {self.max_hops} concepts on a chain; "
                f"n_concepts={self.n_concepts}"
            )
        check_int("world_concepts", self.world_concepts, minimum=0)
        check_int("world_seed", self.world_seed, minimum=0)
        for name in ("world_fraction", "p_stated", "p_contradict"):
            check_number(name, getattr(self, name), minimum=0, maximum=1)
        if self.world_concepts and (
            self.world_concepts < self.max_hops
            or self.n_concepts - self.world_concepts < self.max_hops
        ):
            raise IterationHeadsError(
                f"world_concepts={self.world_concepts} of n_concepts={self.n_concepts}: the world "
                f"and the other concepts each need at least max_hops={self.max_hops}"
            )
        if self.world_fraction and not self.world_concepts:
            raise IterationHeadsError(
                f"world_fraction={self.world_fraction} needs a world: set world_concepts"
            )

    @property
    def max_hops(self) -> int:
        """The longest chain."""
        return max(self.hops)

    def world(self) -> World | None:
        """The world ontology, or None without one.

        Example:
            >>> world = OntologyConfig(world_concepts=6, hops=(1, 2, 3)).world()
            >>> [len(chain) for chain in world.chains]  # 3 concepts and a property each
            [4, 4]
        """
        if not self.world_concepts:
            return None
        concepts = [f"c{i}" for i in range(self.world_concepts)]
        properties = [f"p{i}" for i in range(self.n_properties)]
        return World.build(concepts, properties, chain_length=self.max_hops, seed=self.world_seed)


@dataclass(frozen=True)
class OntologyVocab:
    """Token ids: the special tokens, then concepts ``c0..``, entities ``e0..``, properties
    ``p0..``.

    Example:
        >>> vocab = OntologyVocab.of(OntologyConfig(n_concepts=3, n_entities=2, n_properties=2))
        >>> vocab.size, vocab.id("c0"), vocab.kind("e1"), vocab.names[vocab.id("p1")]
        (17, 10, 'entity', 'p1')
    """

    names: tuple[str, ...]

    @classmethod
    def of(cls, config: OntologyConfig) -> OntologyVocab:
        """The vocabulary of problems drawn with ``config``."""
        concepts = [f"c{i}" for i in range(config.n_concepts)]
        entities = [f"e{i}" for i in range(config.n_entities)]
        properties = [f"p{i}" for i in range(config.n_properties)]
        return cls((*SPECIALS, *concepts, *entities, *properties))

    @property
    def size(self) -> int:
        """Number of tokens."""
        return len(self.names)

    @cached_property
    def ids(self) -> dict[str, int]:
        """The id of every token name."""
        return {name: i for i, name in enumerate(self.names)}

    @cached_property
    def kinds(self) -> dict[str, tuple[str, ...]]:
        """The names of each kind, in id order."""
        grouped: dict[str, list[str]] = {}
        for name in self.names:
            grouped.setdefault(self.kind(name), []).append(name)
        return {kind: tuple(names) for kind, names in grouped.items()}

    def id(self, name: str) -> int:
        """The id of a token name."""
        try:
            return self.ids[name]
        except KeyError:
            raise IterationHeadsError(f"unknown token {name!r}") from None

    def kind(self, name: str) -> str:
        """``"concept"``, ``"entity"``, ``"property"`` or ``"special"``."""
        return (
            {"c": "concept", "e": "entity", "p": "property"}.get(name[0], "special")
            if (name not in SPECIALS)
            else "special"
        )

    def of_kind(self, kind: str) -> list[str]:
        """Every name of one kind."""
        return list(self.kinds.get(kind, ()))


def walk_chain(facts: Sequence[Fact], entity: str) -> list[str]:
    """The chain ``[c1, c2, ..., property]`` that ``entity`` reaches by following the facts
    (each subject has one object), or a clear error: the entity is in no fact, a subject has two
    objects, or the facts loop.

    Example:
        >>> walk_chain([("c1", "c2"), ("e0", "c1"), ("c2", "p0")], "e0")
        ['c1', 'c2', 'p0']
        >>> walk_chain([("c1", "c2"), ("c2", "c1"), ("e0", "c1")], "e0")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: the facts loop: e0 -> c1 -> c2 -> c1
    """
    parent: dict[str, str] = {}
    for subject, obj in facts:
        if subject in parent and parent[subject] != obj:
            raise IterationHeadsError(
                f"{subject} is both {parent[subject]} and {obj}: each subject needs one object"
            )
        parent[subject] = obj
    if entity not in parent:
        raise IterationHeadsError(f"the entity {entity!r} is in no fact")
    chain, seen = [], [entity]
    node = entity
    while node in parent:
        node = parent[node]
        if node in seen:
            raise IterationHeadsError("the facts loop: " + " -> ".join([*seen, node]))
        seen.append(node)
        chain.append(node)
    return chain


def chain_of_thought(facts: Sequence[Fact], entity: str, query: str) -> list[tuple[str, str]]:
    """The chain of thought as ``(token, subtask)`` pairs, ending with the answer: is
    ``entity`` ``query`` (a property)?

    Example:
        >>> steps = chain_of_thought([("c1", "p0"), ("e0", "c1")], "e0", "p0")
        >>> " ".join(t for t, _ in steps)
        'e0 is c1 . c1 is p0 . e0 is p0 . True </s>'
        >>> [s for t, s in steps if s in ("copy", "induction")]
        ['copy', 'copy', 'induction']
    """
    chain = walk_chain(facts, entity)
    out = [(entity, "decision"), ("is", "format"), (chain[0], "copy"), (".", "format")]
    for before, after in itertools.pairwise(chain):
        out += [(before, "decision"), ("is", "format"), (after, "copy"), (".", "format")]
        out += [(entity, "decision"), ("is", "format"), (after, "induction"), (".", "format")]
    out += [("True" if chain[-1] == query else "False", "answer"), ("</s>", "format")]
    return out


@dataclass(frozen=True)
class OntologyProblems:
    """Problems as token ids, right-padded with ``<pad>``.

    Attributes:
        tokens: ``<s> facts Q x is p ? => chain of thought True/False </s>``.
        targets: The next token at every chain-of-thought position (after ``=>``), ``-100``
            elsewhere: what the masked CoT loss scores.
        hops: Hops of each problem.
        answers: True where the answer is True.
        subtasks: For each scored position, the index in :data:`SUBTASKS` of its target's
            subtask; -1 elsewhere.
        sources: For each scored position whose target is a name, the position of that name's
            most recent earlier occurrence (in the chain of thought for induction and later
            decisions, in the facts for copies, in the question for the first decision); -1
            elsewhere, and for the copy of a world link the prompt does not state (recalled
            from the weights).
        vocab: The vocabulary.
        kinds: Index in :data:`PROBLEM_KINDS` of each problem's kind.
        priors: For each copy and induction target ``b`` drawn from a link ``a is b`` whose
            ``a`` is a world concept, the world's parent of ``a`` (what a model that trusts
            its memory predicts; the target itself unless the problem contradicts the world);
            -1 elsewhere.
    """

    tokens: Int[Tensor, "n pos"]
    targets: Int[Tensor, "n pos"]
    hops: Int[Tensor, " n"]
    answers: Bool[Tensor, " n"]
    subtasks: Int[Tensor, "n pos"]
    sources: Int[Tensor, "n pos"]
    vocab: OntologyVocab
    kinds: Int[Tensor, " n"]
    priors: Int[Tensor, "n pos"]

    def __len__(self) -> int:
        return len(self.tokens)

    def decode(self, row: int) -> str:
        """One problem as text (padding dropped).

        Example:
            >>> problems = make_ontology_problems(OntologyConfig(hops=(1,), distractors=0), 1, seed=0)
            >>> problems.decode(0).split(" ? ")[1]
            '=> e1 is c1 . c1 is p4 . e1 is p4 . False </s>'
        """
        names = [self.vocab.names[t] for t in self.tokens[row].tolist()]
        return " ".join(n for n in names if n != "<pad>")

    def corrupt(self, row: int, position: int) -> Int[Tensor, " pos"]:
        """The tokens of problem ``row`` with the source of the target predicted at
        ``position`` replaced by another name of the same kind that the problem does not use
        (Dutta et al.'s counterfactual): the same length, the answer's origin removed.

        Example:
            >>> problems = make_ontology_problems(OntologyConfig(hops=(1,), distractors=0), 1, seed=0)
            >>> position = int((problems.subtasks[0] == SUBTASKS.index("copy")).nonzero()[0])
            >>> changed = (problems.corrupt(0, position) != problems.tokens[0]).nonzero().flatten()
            >>> changed.tolist() == [int(problems.sources[0, position])]
            True
        """
        source = int(self.sources[row, position])
        if source < 0:
            raise IterationHeadsError(
                f"position {position} of problem {row} predicts no name (subtask "
                f"{SUBTASKS[int(self.subtasks[row, position])] if self.subtasks[row, position] >= 0 else 'none'})"
            )
        name = self.vocab.names[int(self.tokens[row, source])]
        used = {self.vocab.names[t] for t in self.tokens[row].tolist()}
        spare = [n for n in self.vocab.of_kind(self.vocab.kind(name)) if n not in used]
        if not spare:
            raise IterationHeadsError(f"no unused {self.vocab.kind(name)} to replace {name!r} with")
        tokens = self.tokens[row].clone()
        tokens[source] = self.vocab.id(random.Random(row * 7919 + position).choice(spare))
        return tokens


def _draw(
    config: OntologyConfig, vocab: OntologyVocab, world: World | None, kind: str, rng: random.Random
) -> tuple:
    """One problem: (stated facts, every fact of its chain, entity, query, hops, answer)."""
    hops = rng.choice(config.hops)
    concepts = vocab.of_kind("concept")
    outside = concepts[config.world_concepts :]  # the fictional concepts
    rng.shuffle(outside)
    properties = vocab.of_kind("property")
    if world is None or kind == "fictional":
        chain = [*outside[:hops], rng.choice(properties)]
        free = outside[hops:]
    elif kind == "world":
        chain, free = world.chain(hops, rng), outside
    else:
        chain, free = world.contradiction(hops, properties, rng), outside
    entity = rng.choice(vocab.of_kind("entity"))
    links = list(itertools.pairwise(chain))
    facts = [(entity, chain[0])]
    facts += [link for link in links if kind != "world" or rng.random() < config.p_stated]
    for _ in range(rng.randint(0, config.distractors)):  # off the chain: never reached from x
        if len(free) < 1:
            break
        subject = free.pop()
        facts.append((subject, rng.choice([*free, *properties] if free else properties)))
    rng.shuffle(facts)
    answer = rng.random() < config.p_true
    query = chain[-1] if answer else rng.choice([p for p in properties if p != chain[-1]])
    return facts, [*facts, *links], entity, query, hops, answer


def _kinds(config: OntologyConfig, kind: str, n: int, rng: random.Random) -> list[str]:
    """The kind of each of ``n`` problems: ``kind``, or drawn by the config's fractions."""
    if kind not in ("mixed", *PROBLEM_KINDS):
        raise IterationHeadsError(f"kind={kind!r}, expected 'mixed' or one of {PROBLEM_KINDS}")
    if kind != "fictional" and not config.world_concepts and kind != "mixed":
        raise IterationHeadsError(f"kind={kind!r} needs a world: set world_concepts")
    if kind != "mixed":
        return [kind] * n
    out = []
    for _ in range(n):
        if rng.random() >= config.world_fraction:
            out.append("fictional")
        else:
            out.append("contradicting" if rng.random() < config.p_contradict else "world")
    return out


def make_ontology_problems(
    config: OntologyConfig, n: int, *, seed: int = 0, kind: str = "mixed"
) -> OntologyProblems:
    """``n`` problems drawn with ``config`` (seeded), encoded and tagged.

    ``kind`` is ``"mixed"`` (the config's ``world_fraction`` and ``p_contradict`` decide) or
    one of :data:`PROBLEM_KINDS` for every problem.

    Example:
        >>> problems = make_ontology_problems(OntologyConfig(hops=(2,)), 4, seed=1)
        >>> problems.hops.tolist(), problems.tokens.shape[0]
        ([2, 2, 2, 2], 4)
    """
    check_int("seed", seed, minimum=0)
    n = check_int("n", n, minimum=1)
    vocab = OntologyVocab.of(config)
    world = config.world()
    rng = random.Random(seed)
    kinds = _kinds(config, kind, n, rng)
    rows, meta = [], []
    for problem_kind in kinds:
        facts, every_fact, entity, query, hops, answer = _draw(
            config, vocab, world, problem_kind, rng
        )
        prompt = ["<s>"] + [w for s, o in facts for w in (s, "is", o, ".")]
        prompt += ["Q", entity, "is", query, "?", "=>"]
        steps = chain_of_thought(every_fact, entity, query)
        rows.append((prompt, steps, [entity, *walk_chain(every_fact, entity)]))
        meta.append((hops, answer, PROBLEM_KINDS.index(problem_kind)))
    width = max(len(p) + len(s) for p, s, _ in rows)
    tokens = [[0] * width for _ in range(n)]  # <pad> is 0
    targets = [[IGNORE] * width for _ in range(n)]
    subtasks = [[-1] * width for _ in range(n)]
    sources = [[-1] * width for _ in range(n)]
    priors = [[-1] * width for _ in range(n)]
    parents = {} if world is None else world.parent
    for i, (prompt, steps, path) in enumerate(rows):
        names = prompt + [t for t, _ in steps]
        tokens[i][: len(names)] = [vocab.id(t) for t in names]
        where: dict[str, list[int]] = {}  # the positions of each name, in order
        for p, name in enumerate(names):
            where.setdefault(name, []).append(p)
        for j, (token, subtask) in enumerate(steps):
            at = len(prompt) + j  # the position of this token; it is predicted at at - 1
            targets[i][at - 1] = vocab.id(token)
            subtasks[i][at - 1] = SUBTASKS.index(subtask)
            if subtask in ("copy", "induction") and path[path.index(token) - 1] in parents:
                priors[i][at - 1] = vocab.id(parents[path[path.index(token) - 1]])
            if subtask in ("decision", "copy", "induction"):
                earlier = [p for p in where[token] if p < at]
                if subtask == "copy":  # from the fact "subject is token ." of the prompt
                    earlier = [
                        p
                        for p in earlier
                        if p < len(prompt) and names[p + 1] == "." and names[p - 2] == names[at - 2]
                    ]
                sources[i][at - 1] = earlier[-1] if earlier else -1
    hops_t = torch.tensor([h for h, _, _ in meta])
    answers = torch.tensor([a for _, a, _ in meta])
    kinds_t = torch.tensor([k for _, _, k in meta])
    tokens_t, targets_t, subtasks_t, sources_t, priors_t = (
        torch.tensor(rows_, dtype=torch.long).reshape(n, width)
        for rows_ in (tokens, targets, subtasks, sources, priors)
    )
    return OntologyProblems(
        tokens_t, targets_t, hops_t, answers, subtasks_t, sources_t, vocab, kinds_t, priors_t
    )
