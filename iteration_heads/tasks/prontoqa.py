"""PrOntoQA-style problems in English (Saparov & He; Dutta et al.'s setting): facts about made-up
concepts, a true-or-false question and a chain of thought, every studied word tagged.

Two surface forms (``ProntoQAConfig.surface``):

* ``"simple"`` (Dutta et al.'s, the default): no quantifier, no article::

      Sterpuses are earthy. Impuses are sterpuses. Wren is impus.

* ``"every"`` (the original PrOntoQA's): ``Every impus is a sterpus. Every sterpus is earthy.
  Wren is an impus.``

Two prompt formats (``ProntoQAConfig.format``): ``"alpaca"``::

    ### Input:
    Sterpuses are earthy. Impuses are sterpuses. Wren is impus. True or false: Wren is earthy. Let us think step by step.
    ### Response:
    Wren is impus. Impuses are sterpuses. Wren is sterpus. Sterpuses are earthy. Wren is earthy. True

and ``"qa"``: ``Q: <facts> True or false: Wren is earthy.`` newline ``A: <chain of thought> True``.
Solved few-shot examples (``shots``, drawn with names disjoint from the question's where the
lists allow) come first, separated by blank lines.

The chain of thought walks from the entity: ``x is c1.`` then, for each link ``c -> d``,
``Cs are ds. x is d.`` (``hops`` links, the last one to a property), then the label. A False
question asks about another property than the one the chain reaches (no negation); the chain
still derives the reached property, then says False.

Every name of the chain and the label is a :class:`Step`: its character span, its subtask
(``decision``: a sentence's subject; ``copy``: an object read from a fact; ``induction``: the
object of ``x is d`` after ``x is c. Cs are ds.``; ``answer``: True/False), Dutta et al.'s index
(0..9, 10 for the label, for 2-hop problems), and its source: the most recent earlier occurrence
of that name in the question's chain of thought, else in its facts and question (Dutta et al.'s
corruption site; for the label, the queried property).
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.task import check_int, check_number

CONCEPTS = (
    "wumpus", "yumpus", "zumpus", "dumpus", "rompus", "numpus", "tumpus", "vumpus", "impus",
    "jompus", "gorpus", "shumpus", "lempus", "sterpus", "grimpus", "lorpus", "brimpus",
)  # fmt: skip
ENTITIES = ("Fae", "Rex", "Sally", "Max", "Alex", "Sam", "Polly", "Stella", "Wren")
PROPERTY_FAMILIES = {
    "colour": ("red", "blue", "brown", "green", "orange", "grey"),
    "size": ("small", "large"),
    "material": ("wooden", "metallic"),
    "mood": ("happy", "sad", "angry", "feisty"),
    "taste": ("sweet", "bitter", "sour", "spicy", "salty"),
    "smell": ("earthy", "floral", "fruity", "muddy"),
    "temperature": ("hot", "cold", "warm"),
    "temperament": ("kind", "mean", "shy", "aggressive"),
    "sound": ("loud", "quiet"),
    "speed": ("fast", "slow"),
    "weather": ("sunny", "rainy", "windy", "snowy"),
}
PROPERTIES = tuple(p for family in PROPERTY_FAMILIES.values() for p in family)
SURFACES = ("simple", "every")
FORMATS = ("alpaca", "qa")
NAME_KINDS = ("concept", "entity", "property")
PRONTOQA_SEGMENTS = ("examples", "facts", "question", "chain of thought")
"""Segments of a problem's text (``examples`` only with shots)."""


def plural(name: str) -> str:
    """The plural of a concept name: ``impus`` -> ``impuses``, ``cat`` -> ``cats``.

    Example:
        >>> plural("wumpus"), plural("dog")
        ('wumpuses', 'dogs')
    """
    return name + ("es" if name.endswith(("s", "x", "z", "ch", "sh")) else "s")


def render(name: str, kind: str, *, plural_form: bool = False, capital: bool = False) -> str:
    """How a name is written in one slot (plural for concepts, capitalised at a sentence start).

    Example:
        >>> render("impus", "concept", plural_form=True, capital=True)
        'Impuses'
    """
    text = plural(name) if plural_form and kind == "concept" else name
    return text[:1].upper() + text[1:] if capital else text


@dataclass(frozen=True)
class Word:
    """One occurrence of a name in a text: ``name`` (as listed), ``kind``, the characters
    ``span`` it covers, and its form (``plural``, ``capital``)."""

    name: str
    kind: str
    span: tuple[int, int]
    plural: bool = False
    capital: bool = False

    @property
    def surface(self) -> str:
        """The name as written."""
        return render(self.name, self.kind, plural_form=self.plural, capital=self.capital)


@dataclass(frozen=True)
class Step:
    """A studied word of the chain of thought (a name or the label).

    Attributes:
        index: Its rank among the chain's studied words (0 = the first word).
        word: The occurrence (``kind`` ``"label"`` for True/False).
        subtask: ``decision``, ``copy``, ``induction`` or ``answer``.
        dutta: Dutta et al.'s subtask index (0..9, 10 for the label) in 2-hop problems, else None.
        hop: 0 for ``x is c1.``, k for the sentences of the k-th link and for the label.
        source: Where the word was last seen (chain of thought first, then facts and question);
            for the label, the queried property. None if nowhere.
    """

    index: int
    word: Word
    subtask: str
    dutta: int | None
    hop: int
    source: Word | None


@dataclass(frozen=True)
class ProntoQAConfig:
    """How problems are drawn and written (names are lists of single words; defaults are
    Dutta et al.'s made-up concepts and entities and 38 adjectives in 11 families).

    Example:
        >>> ProntoQAConfig(hops=(1, 2), shots=2).max_hops
        2
        >>> ProntoQAConfig(shots=7)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: shots=7, expected an integer in [0, 6]
    """

    hops: tuple[int, ...] = (2,)  # links after "x is c1" (the last to a property), 1..5
    shots: int = 0  # solved examples before the question, 0..6
    distractors: int = 0  # facts off the chain ("Yumpuses are sterpuses."), exactly this many
    p_true: float = 0.5  # fraction of True questions
    surface: str = "simple"  # "simple" (Dutta et al.) or "every" (PrOntoQA)
    format: str = "alpaca"  # "alpaca" (### Input: / ### Response:) or "qa" (Q: / A:)
    shuffle_facts: bool = True  # False: facts in chain order
    concepts: tuple[str, ...] = CONCEPTS
    entities: tuple[str, ...] = ENTITIES
    properties: tuple[str, ...] = PROPERTIES

    def __post_init__(self) -> None:
        if isinstance(self.hops, int) or not isinstance(self.hops, tuple) or not self.hops:
            raise IterationHeadsError(f"hops={self.hops!r}, expected a non-empty tuple like (2,)")
        for h in self.hops:
            check_int("hops", h, minimum=1, maximum=5)
        check_int("shots", self.shots, minimum=0, maximum=6)
        check_int("distractors", self.distractors, minimum=0, maximum=10)
        check_number("p_true", self.p_true, minimum=0, maximum=1)
        for field, options in (("surface", SURFACES), ("format", FORMATS)):
            if getattr(self, field) not in options:
                raise IterationHeadsError(
                    f"{field}={getattr(self, field)!r}, expected one of {options}"
                )
        if not isinstance(self.shuffle_facts, bool):
            raise IterationHeadsError(f"shuffle_facts={self.shuffle_facts!r}, expected a bool")
        # one spare concept and property: a corruption needs a name the problem does not use
        need = {"concepts": self.max_hops + self.distractors + 1, "entities": 2, "properties": 3}
        seen: set[str] = set()
        for field, least in need.items():
            names = getattr(self, field)
            if not isinstance(names, tuple) or not all(
                isinstance(n, str) and re.fullmatch(r"[A-Za-z]+", n) for n in names
            ):
                raise IterationHeadsError(
                    f"{field}={names!r}, expected a tuple of single words (letters only)"
                )
            if len(set(names)) < least:
                raise IterationHeadsError(
                    f"{field}: {len(set(names))} distinct names, expected at least {least} "
                    f"(hops up to {self.max_hops}, distractors={self.distractors})"
                )
            clash = seen & set(names) or set(names) & {"True", "False"}
            if clash:
                raise IterationHeadsError(f"{field}: {sorted(clash)} already used elsewhere")
            seen |= set(names)

    @property
    def max_hops(self) -> int:
        """The longest chain."""
        return max(self.hops)


@dataclass(frozen=True)
class ProntoQAProblem:
    """One problem: its ``text`` (shots, question, chain of thought, label), its studied
    ``steps``, its ``segments`` (name, character span), the names it uses (``words``: every
    name occurrence of the question's part), what was drawn and the ``config`` it was drawn
    with.

    Example:
        >>> problem = make_prontoqa(ProntoQAConfig(), 1, seed=0)[0]
        >>> problem.text[problem.segments[-1][1][0]:]
        'Alex is brimpus. Brimpuses are yumpuses. Alex is yumpus. Yumpuses are large. Alex is large. False'
        >>> [(s.word.surface, s.subtask, s.dutta) for s in problem.steps][:3]
        [('Alex', 'decision', 0), ('brimpus', 'copy', 1), ('Brimpuses', 'decision', 2)]
    """

    text: str
    steps: tuple[Step, ...]
    segments: tuple[tuple[str, tuple[int, int]], ...]
    words: tuple[Word, ...]
    hops: int
    answer: bool
    entity: str
    chain: tuple[str, ...]
    query: str
    shots: int
    seed: int
    config: ProntoQAConfig

    @property
    def prompt(self) -> str:
        """The text up to the chain of thought (what a model is asked)."""
        return self.text[: self.segments[-1][1][0]]

    @property
    def completion(self) -> str:
        """The chain of thought and the label (what a model should answer)."""
        return self.text[self.segments[-1][1][0] :]

    def used(self, kind: str) -> list[str]:
        """The names of ``kind`` the question's part uses, in order of first use."""
        return list(dict.fromkeys(w.name for w in self.words if w.kind == kind))

    def names(self, kind: str) -> tuple[str, ...]:
        """Every name of ``kind`` (``concept``, ``entity``, ``property``) of the config."""
        lists = {"concept": "concepts", "entity": "entities", "property": "properties"}
        return tuple(getattr(self.config, lists[kind]))


class _Writer:
    """Accumulates text and the name occurrences in it."""

    def __init__(self, surface: str) -> None:
        self.surface, self.text = surface, ""
        self.words: list[Word] = []

    def raw(self, text: str) -> None:
        self.text += text

    def name(
        self, name: str, kind: str, *, plural_form: bool = False, capital: bool = False
    ) -> Word:
        start = len(self.text)
        self.raw(render(name, kind, plural_form=plural_form, capital=capital))
        word = Word(name, kind, (start, len(self.text)), plural_form, capital)
        self.words.append(word)
        return word

    def sentence(self, subject: str, subject_kind: str, obj: str, obj_kind: str) -> tuple:
        """``subject is obj.`` in the surface form; the subject and object occurrences."""
        simple = self.surface == "simple"
        if subject_kind == "entity":
            first = self.name(subject, "entity")
            self.raw(" is ")
        elif simple:
            first = self.name(subject, "concept", plural_form=True, capital=True)
            self.raw(" are ")
        else:
            self.raw("Every ")
            first = self.name(subject, "concept")
            self.raw(" is ")
        if obj_kind == "concept" and not simple:
            self.raw("an " if obj[0] in "aeiou" else "a ")
        second = self.name(obj, obj_kind, plural_form=simple and subject_kind == "concept")
        self.raw(".")
        return first, second


def _draw(config: ProntoQAConfig, rng: random.Random, pools: dict[str, list[str]]) -> tuple:
    """One problem's content: (hops, entity, chain, facts, query, answer)."""
    hops = rng.choice(config.hops)
    concepts = rng.sample(pools["concept"], hops + config.distractors)
    chain, spare = concepts[:hops], concepts[hops:]
    end = rng.choice(pools["property"])
    entity = rng.choice(pools["entity"])
    links = [(a, b, "concept") for a, b in itertools.pairwise(chain)]
    facts = [(entity, chain[0], "concept"), *links, (chain[-1], end, "property")]
    for subject in spare:  # off the chain: never reached from the entity
        obj = rng.choice([*chain, *pools["property"]])
        facts.append((subject, obj, "concept" if obj in chain else "property"))
    if config.shuffle_facts:
        rng.shuffle(facts)
    answer = rng.random() < config.p_true
    query = end if answer else rng.choice([p for p in pools["property"] if p != end])
    return hops, entity, (*chain, end), facts, query, answer


def _write(w: _Writer, config: ProntoQAConfig, drawn: tuple) -> tuple:
    """Writes one solved problem; returns (facts span, question span, query word,
    chain-of-thought span, tagged chain words)."""
    hops, entity, chain, facts, query, answer = drawn
    w.raw("### Input:\n" if config.format == "alpaca" else "Q: ")
    start = len(w.text)
    for i, (subject, obj, obj_kind) in enumerate(facts):
        w.raw(" " if i else "")
        w.sentence(subject, "entity" if subject == entity else "concept", obj, obj_kind)
    facts_span = (start, len(w.text))
    w.raw(" ")
    start = len(w.text)
    w.raw("True or false: ")
    w.name(entity, "entity")
    w.raw(" is ")
    query_word = w.name(query, "property")
    w.raw(".")
    question_span = (start, len(w.text))
    alpaca = config.format == "alpaca"
    w.raw(" Let us think step by step.\n### Response:\n" if alpaca else "\nA: ")
    start = len(w.text)
    first, second = w.sentence(entity, "entity", chain[0], "concept")
    tagged = [(first, "decision", 0), (second, "copy", 0)]
    for k, (before, after) in enumerate(itertools.pairwise(chain), start=1):
        kind = "property" if k == len(chain) - 1 else "concept"
        w.raw(" ")
        pair = w.sentence(before, "concept", after, kind)
        tagged += [(pair[0], "decision", k), (pair[1], "copy", k)]
        w.raw(" ")
        pair = w.sentence(entity, "entity", after, kind)
        tagged += [(pair[0], "decision", k), (pair[1], "induction", k)]
    w.raw(" ")
    label = "True" if answer else "False"
    tagged.append((Word(label, "label", (len(w.text), len(w.text) + len(label))), "answer", hops))
    w.raw(label)
    return facts_span, question_span, query_word, (start, len(w.text)), tagged


def _source(word: Word, words: list[Word], cot_start: int) -> Word | None:
    """The most recent earlier occurrence of ``word``'s name: in the chain of thought, else in
    the facts and question (Dutta et al.'s corruption site)."""
    earlier = [
        w
        for w in words
        if w.name == word.name and w.capital == word.capital and w.span[0] < word.span[0]
    ]
    in_chain = [w for w in earlier if w.span[0] >= cot_start]
    found = in_chain or earlier
    return found[-1] if found else None


def _pools(config: ProntoQAConfig, *avoid: set[str]) -> dict[str, list[str]]:
    """Names to draw a problem from: those in none of the ``avoid`` sets where enough remain,
    else those not in the first sets, else all."""
    need = {"concept": config.max_hops + config.distractors, "entity": 1, "property": 2}
    lists = {"concept": config.concepts, "entity": config.entities, "property": config.properties}
    pools = {}
    for kind, names in lists.items():
        for k in range(len(avoid), -1, -1):
            free = [n for n in dict.fromkeys(names) if not any(n in a for a in avoid[:k])]
            if len(free) >= need[kind]:
                break
        pools[kind] = free
    return pools


def _names(drawn: tuple) -> set[str]:
    """Every name a drawn problem uses."""
    _, entity, chain, facts, query, _ = drawn
    return {entity, *chain, query, *(s for s, _, _ in facts), *(o for _, o, _ in facts)}


def make_problem(config: ProntoQAConfig, seed: int) -> ProntoQAProblem:
    """One problem, determined by ``config`` and ``seed``.

    Example:
        >>> p = make_problem(ProntoQAConfig(hops=(1,), format="qa", surface="every"), seed=3)
        >>> p.text
        'Q: Every numpus is quiet. Max is a numpus. True or false: Max is quiet.\\nA: Max is a numpus. Every numpus is quiet. Max is quiet. True'
    """
    check_int("seed", seed, minimum=0)
    rng = random.Random(f"prontoqa:{seed}")
    main = _draw(config, rng, _pools(config))
    parts: list[tuple] = []
    seen: set[str] = set()  # shots avoid the question's names, then each other's
    for _ in range(config.shots):
        parts.append(_draw(config, rng, _pools(config, _names(main), seen)))
        seen |= _names(parts[-1])
    w = _Writer(config.surface)
    for shot in parts:
        _write(w, config, shot)
        w.raw("\n\n")
    examples_end = len(w.text) - 2
    first = len(w.words)
    facts_span, question_span, query_word, cot_span, tagged = _write(w, config, main)
    words = w.words[first:]
    hops = main[0]
    steps = tuple(
        Step(
            i,
            word,
            tag,
            i if hops == 2 else None,
            hop,
            query_word if tag == "answer" else _source(word, words, cot_span[0]),
        )
        for i, (word, tag, hop) in enumerate(tagged)
    )
    segments = [("facts", facts_span), ("question", question_span), ("chain of thought", cot_span)]
    if config.shots:
        segments.insert(0, ("examples", (0, examples_end)))
    return ProntoQAProblem(
        w.text,
        steps,
        tuple(segments),
        tuple(words),
        hops,
        main[5],
        main[1],
        main[2],
        main[4],
        config.shots,
        seed,
        config,
    )


def make_prontoqa(config: ProntoQAConfig, n: int, *, seed: int = 0) -> list[ProntoQAProblem]:
    """``n`` problems (problem ``i`` is ``make_problem(config, seed * 1_000_003 + i)``): the
    same ``seed`` gives the same problems. ``[p.text for p in ...]`` is training text.

    Example:
        >>> problems = make_prontoqa(ProntoQAConfig(hops=(1, 3), shots=2), 3, seed=5)
        >>> [p.hops for p in problems], problems[0].text.count("### Response:")
        ([1, 3, 1], 3)
    """
    n = check_int("n", n, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    return [make_problem(config, seed * 1_000_003 + i) for i in range(n)]
