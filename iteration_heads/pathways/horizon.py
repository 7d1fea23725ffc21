"""The horizon experiment (Dutta et al., §2.9): one fact of an ontology question is corrupted;
for each layer ``L`` and each prefix of ``k`` gold chain-of-thought sentences, the rest of the
chain of thought is regenerated greedily while every head's output at layer ``L`` (``hook_z``)
is taken, at every step and position, from the corrupted prompt run with the same generated
tokens (:mod:`~iteration_heads.pathways.generation`). Where the patch changes the regenerated
chain, layer ``L`` still reads the fact from the context; once the fact has been copied into the
chain of thought (large ``k``), it should not.

* :func:`corrupt_fact`: the corruption, a same-length substitution of one fact's object;
* :func:`horizon_patching`: the experiment with its controls (nothing patched, every layer
  patched, the corrupted prompt on its own), per corruption, layer and prefix.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads._results import Result, plain
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.checkpoint import model_metadata
from iteration_heads.pathways.generation import layer_mask, patched_generation
from iteration_heads.tasks.ontology import OntologyProblems
from iteration_heads.tasks.task import check_int

FACTS = {"first": "the entity's fact 'x is c1' (c1 -> an unused concept)",
         "last": "the chain's last fact 'c is p' (p -> an unused property)"}  # fmt: skip
"""The facts :func:`corrupt_fact` can corrupt, and what replaces their object."""
CONTROLS = ("all", "none", "corrupted")
"""Rows of :class:`HorizonPatching` after the layers: every layer patched, nothing patched (the
clean regeneration), and the corrupted prompt regenerated unpatched."""
SENTENCE = 4
"""Tokens per chain-of-thought sentence (``a is b .``)."""


@dataclass(frozen=True, repr=False)
class HorizonPatching(Result):
    """Per corruption, patched row (``"L0"``, ... then :data:`CONTROLS`) and prefix (gold
    chain-of-thought sentences given before regeneration):

    Attributes:
        matched: Share of problems whose regenerated suffix equals the clean model's own greedy
            suffix (the gold one: only solved problems are kept), Dutta et al.'s metric.
        followed: Share whose suffix equals the corrupted prompt's own greedy suffix.
        kept: Mean share of the clean suffix regenerated before the first differing token.
        n_problems: Solved problems studied, of ``n_drawn`` given; ``seed`` drew the substitutes.
    """

    corruptions: tuple[str, ...]
    rows: tuple[str, ...]
    prefixes: tuple[int, ...]
    matched: Float[Tensor, "corruption row prefix"]
    followed: Float[Tensor, "corruption row prefix"]
    kept: Float[Tensor, "corruption row prefix"]
    n_problems: int
    n_drawn: int
    seed: int

    @property
    def layers(self) -> list[int]:
        """The patched layers (the rows before the controls)."""
        return [int(r[1:]) for r in self.rows if r.startswith("L")]

    def to_frame(self) -> pd.DataFrame:
        """One row per (corruption, patched row, prefix) with the three measures."""
        records = [
            {"corruption": c, "patched": r, "prefix": k}
            | {m: float(getattr(self, m)[i, j, p]) for m in ("matched", "followed", "kept")}
            for i, c in enumerate(self.corruptions)
            for j, r in enumerate(self.rows)
            for p, k in enumerate(self.prefixes)
        ]
        return pd.DataFrame(records)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        names = ("corruptions", "rows", "prefixes", "matched", "followed", "kept", "n_problems")
        return plain({n: getattr(self, n) for n in (*names, "n_drawn", "seed")})

    def format(self) -> str:
        """Per corruption, matched / followed per row and prefix."""
        parts = [
            f"horizon patching on {self.n_problems} solved problems (of {self.n_drawn}); "
            "matched = suffix equals the clean model's / followed = equals the corrupted "
            "prompt's own, per prefix k (chain-of-thought sentences given)"
        ]
        for i, corruption in enumerate(self.corruptions):
            fact = FACTS.get(corruption.split("@")[0], corruption)
            lines = [f"corruption {corruption!r}: {fact}"]
            lines.append("patched    " + "".join(f"k={k:<11}" for k in self.prefixes))
            for j, row in enumerate(self.rows):
                cells = "".join(
                    f"{float(self.matched[i, j, p]):.2f}/{float(self.followed[i, j, p]):.2f}    "
                    for p in range(len(self.prefixes))
                )
                lines.append(f"{row:<11}{cells}".rstrip())
            parts.append("\n".join(lines))
        return "\n\n".join(parts)


def corrupt_fact(
    problems: OntologyProblems, fact: str = "last", *, seed: int = 0, avoid: Sequence[str] = ()
) -> Int[Tensor, "n pos"]:
    """``problems.tokens`` with the object of one fact of each question's chain replaced by a
    name of the same kind that the problem does not use, nor ``avoid`` (seeded): ``fact``
    ``"last"`` (the property the chain reaches: the answer's evidence changes) or ``"first"``
    (the concept of the entity's fact ``x is c1``: the chain breaks at its first link). A
    substitution: the lengths and every other position are unchanged. ``"last@1"`` draws
    other substitutes. :func:`horizon_patching` avoids the concepts of a model's memorised
    world, which it would recall a chain for.

    Example:
        >>> from iteration_heads.tasks import OntologyConfig, make_ontology_problems
        >>> problems = make_ontology_problems(OntologyConfig(hops=(1,), distractors=0), 1)
        >>> problems.decode(0).split(" Q")[0]
        '<s> c1 is p4 . e1 is c1 .'
        >>> for fact in ("last", "first"):
        ...     print(" ".join(problems.vocab.names[t] for t in corrupt_fact(problems, fact)[0, :9]))
        <s> c1 is p1 . e1 is c1 .
        <s> c1 is p4 . e1 is c6 .
    """
    name = _fact_name(fact)
    check_int("seed", seed, minimum=0)
    _check_problems(problems)
    vocab, out = problems.vocab, problems.tokens.clone()
    for row in range(len(problems)):
        names = [vocab.names[t] for t in problems.tokens[row].tolist()]
        q = names.index("Q")
        objects = {names[p]: p + 2 for p in range(1, q, SENTENCE)}  # subject -> object position
        at = objects[names[q + 1]]  # the entity's fact
        while name == "last" and names[at] in objects:  # walk to the property
            at = objects[names[at]]
        kind = vocab.kind(names[at])
        spare = [n for n in vocab.of_kind(kind) if n not in set(names) | set(avoid)]
        if not spare:
            raise IterationHeadsError(f"problem {row} uses every {kind}: none to substitute")
        rng = random.Random(f"{seed}/{fact}/{row}")
        out[row, at] = vocab.id(rng.choice(spare))
    return out


def horizon_patching(
    model: Any,
    problems: OntologyProblems,
    *,
    corruptions: Sequence[str] = ("last", "first"),
    prefixes: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int | None = None,
) -> HorizonPatching:
    """Dutta et al.'s horizon experiment on an ontology model (module docstring).

    Of ``problems``, those whose chain of thought the model regenerates exactly are kept. For
    each corruption (:func:`corrupt_fact`; the concepts of the model's memorised world are
    never substitutes), prefix ``k`` (gold sentences given; None: ``0 .. sentences - 1`` of the
    shortest chain) and layer (None: every one), the rest is regenerated greedily with the
    layer's heads fed the corrupted run; the controls patch every layer, nothing, or run the
    corrupted prompt alone. ``batch_size``: rows per pass (None: sized to the memory budget).

    Example:
        >>> from iteration_heads import zoo
        >>> from iteration_heads.experiments.ontology_study import model_ontology
        >>> from iteration_heads.tasks import make_ontology_problems
        >>> model = zoo.load("ontology")
        >>> problems = make_ontology_problems(model_ontology(model), 4, seed=3, kind="fictional")
        >>> result = horizon_patching(model, problems, prefixes=[0, 2])
        >>> result.rows, result.n_problems
        (('L0', 'L1', 'L2', 'L3', 'all', 'none', 'corrupted'), 4)
        >>> result.matched[0, result.rows.index("none")].tolist()  # the clean regeneration
        [1.0, 1.0]
        >>> result.followed[0, result.rows.index("all")].tolist()  # every layer: the corrupted run
        [1.0, 1.0]
    """
    _check_problems(problems)
    _check_model(model, problems)
    n_layers = int(model.cfg.n_layers)
    chosen = layer_mask(range(n_layers) if layers is None else layers, n_layers, 1)[0]
    check_int("seed", seed, minimum=0)
    if isinstance(corruptions, str) or not corruptions:
        raise IterationHeadsError(f"corruptions={corruptions!r}, expected a non-empty list such "
                                  f"as ['last', 'first'] (facts: {sorted(FACTS)})")  # fmt: skip
    for corruption in corruptions:
        _fact_name(corruption)
    eos = problems.vocab.id("</s>")
    shortest = int((2 * problems.hops + 1).min())  # sentences of the shortest chain of thought
    prefixes = list(range(shortest)) if prefixes is None else list(prefixes)
    for k in prefixes:
        check_int("prefixes", k, minimum=0, maximum=shortest)
    if not prefixes or len(set(prefixes)) < len(prefixes):
        raise IterationHeadsError(f"prefixes={prefixes!r}, expected distinct sentence counts "
                                  f"in 0..{shortest} (the shortest chain of thought)")  # fmt: skip
    arrow = (problems.tokens == problems.vocab.id("=>")).float().argmax(1)
    options: dict[str, Any] = {"stop": eos, "batch_size": batch_size}
    clean = patched_generation(model, problems.tokens, arrow + 1, **options)
    solved = _same(clean, _suffix(problems.tokens, arrow + 1, eos))
    if not bool(solved.any()):
        raise IterationHeadsError(f"the model regenerates none of the {len(problems)} chains of "
                                  "thought: expected an ontology model that solves them")  # fmt: skip
    tokens, arrow = problems.tokens[solved], arrow[solved]
    ontology = (model_metadata(model).get("data") or {}).get("ontology") or {}
    world = [f"c{i}" for i in range(int(ontology.get("world_concepts", 0)))]
    names = [f"L{layer}" for layer in chosen.nonzero().flatten().tolist()] + list(CONTROLS)
    masks = torch.eye(n_layers, dtype=torch.bool)[chosen]
    masks = torch.cat([masks, torch.ones(1, n_layers, dtype=torch.bool),
                       torch.zeros(2, n_layers, dtype=torch.bool)])  # fmt: skip
    n, v, p = len(tokens), len(names), len(prefixes)
    shape = (len(corruptions), v, p)
    matched, followed, kept = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape)
    for i, corruption in enumerate(corruptions):
        corrupted = corrupt_fact(problems, corruption, seed=seed, avoid=world)[solved]
        # rows by prefix, problem, variant: a problem's variants share a pass (their twins are
        # mostly one sequence, run once)
        of_q, row, of_v = (g.flatten() for g in torch.meshgrid(
            torch.arange(p), torch.arange(n), torch.arange(v), indexing="ij"))  # fmt: skip
        start = arrow[row] + 1 + SENTENCE * torch.tensor(prefixes)[of_q]
        alone = (of_v == names.index("corrupted"))[:, None]
        out = patched_generation(
            model, torch.where(alone, corrupted[row], tokens[row]), start,
            corrupted=corrupted[row], layers=masks[of_v], **options,
        ).reshape(p, n, v, -1).transpose(1, 2)  # fmt: skip
        for q, prefix in enumerate(prefixes):
            reference = _suffix(tokens, arrow + 1 + SENTENCE * prefix, eos)
            own = out[q, names.index("corrupted")]
            for j in range(v):
                matched[i, j, q] = _same(out[q, j], reference).float().mean()
                followed[i, j, q] = _same(out[q, j], own).float().mean()
                kept[i, j, q] = _kept(out[q, j], reference).mean()
    return HorizonPatching(tuple(corruptions), tuple(names), tuple(prefixes), matched, followed,
                           kept, n, len(problems), seed)  # fmt: skip


def _suffix(tokens: Tensor, start: Tensor, eos: int) -> Int[Tensor, "n new"]:
    """Each row's tokens from ``start`` up to and including the first ``eos``, ``-1`` after."""
    width = tokens.shape[1]
    index = start[:, None] + torch.arange(width)[None]
    out = torch.where(index < width, tokens.gather(1, index.clamp(max=width - 1)), -1)
    after = ((out == eos).long().cumsum(1) - (out == eos).long()) > 0
    return out.masked_fill(after, -1)


def _pad(a: Tensor, width: int) -> Tensor:
    return torch.nn.functional.pad(a, (0, width - a.shape[1]), value=-1)


def _same(a: Tensor, b: Tensor) -> Bool[Tensor, " n"]:
    """Per row: the two token rows (``-1`` padded) are equal."""
    width = max(a.shape[1], b.shape[1])
    return (_pad(a, width) == _pad(b, width)).all(1)


def _kept(out: Tensor, reference: Tensor) -> Float[Tensor, " n"]:
    """Per row: the share of ``reference`` reproduced before the first differing token."""
    width = max(out.shape[1], reference.shape[1])
    equal = (_pad(out, width) == _pad(reference, width)).long().cumprod(1)[:, : reference.shape[1]]
    return (equal * (reference >= 0)).sum(1).float() / (reference >= 0).sum(1)


def _fact_name(fact: Any) -> str:
    """The fact of a corruption name (``"last@1"`` -> ``"last"``), or a one-line error."""
    name, _, draw = str(fact).partition("@")
    if not isinstance(fact, str) or name not in FACTS or (draw and not draw.isdigit()):
        raise IterationHeadsError(f"fact={fact!r}, expected one of {sorted(FACTS)}, optionally "
                                  "followed by @<draw> (e.g. 'last@1')")  # fmt: skip
    return name


def _check_problems(problems: Any) -> None:
    if not isinstance(problems, OntologyProblems):
        raise IterationHeadsError(
            f"problems must be OntologyProblems (make_ontology_problems), got "
            f"{type(problems).__name__}"
        )
    if len(problems) == 0:
        raise IterationHeadsError("no problems: expected at least one")


def _check_model(model: Any, problems: OntologyProblems) -> None:
    task = model_metadata(model).get("task")
    vocab = int(getattr(getattr(model, "cfg", None), "d_vocab", -1))
    if task not in (None, "ontology") or vocab != problems.vocab.size:
        raise IterationHeadsError(
            f"a model of task {task!r} with {vocab} tokens; expected an ontology model of the "
            f"problems' {problems.vocab.size} tokens (zoo.load('ontology') or train_ontology)"
        )
    if problems.tokens.shape[1] > int(model.cfg.n_ctx):
        raise IterationHeadsError(f"problems of {problems.tokens.shape[1]} positions, expected "
                                  f"at most the model's n_ctx={int(model.cfg.n_ctx)}")  # fmt: skip
