"""Train and test data of the ontology task, in the shape the training loop takes.

Training problems are ``mixed`` (fictional, world and a few contradicting ones, by the config's
fractions); every test split is held out: a test problem whose prompt occurs among the training
problems is dropped. The test splits are ``fictional`` (new fictional ontologies: the held-out
accuracy), and with a world ``world`` (links recalled from the weights) and ``contradicting``
(in-context facts against the world: the false-ontology control).
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from iteration_heads._io import strict_from_dict
from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.data import Split
from iteration_heads.tasks.ontology import (
    PROBLEM_KINDS,
    SPECIALS,
    OntologyConfig,
    OntologyProblems,
    make_ontology_problems,
)
from iteration_heads.tasks.task import check_int


@dataclass(frozen=True)
class OntologyDataConfig:
    """How the ontology data is drawn.

    Example:
        >>> config = OntologyDataConfig(OntologyConfig(hops=(1, 2)), n_train=64, n_test=16)
        >>> OntologyDataConfig.from_dict(config.to_dict()) == config
        True
    """

    ontology: OntologyConfig = field(default_factory=OntologyConfig)
    n_train: int = 20_000  # training problems
    n_test: int = 500  # problems drawn per test split (fewer after removing repeats)
    seed: int = 0  # the training draw; test splits draw from seed + 1, seed + 2, ...

    def __post_init__(self) -> None:
        if not isinstance(self.ontology, OntologyConfig):
            raise IterationHeadsError(f"ontology={self.ontology!r}, expected an OntologyConfig")
        check_int("n_train", self.n_train, minimum=1)
        check_int("n_test", self.n_test, minimum=1)
        check_int("seed", self.seed, minimum=0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary; ``task`` and ``cot`` name the task for run metadata."""
        data = asdict(self)
        data["ontology"]["hops"] = list(self.ontology.hops)
        return {"task": "ontology", "cot": True, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OntologyDataConfig:
        """Rebuild a config saved with :meth:`to_dict`."""
        if not isinstance(data, dict):
            raise IterationHeadsError(f"ontology data config must be a JSON object, got {data!r}")
        fields = {k: v for k, v in data.items() if k not in ("task", "cot")}
        if isinstance(fields.get("ontology"), dict):
            ontology = dict(fields["ontology"])
            ontology["hops"] = tuple(ontology.get("hops", (1, 2, 3)))
            fields["ontology"] = strict_from_dict(OntologyConfig, ontology)
        return strict_from_dict(cls, fields)


def problems_split(problems: OntologyProblems) -> Split:
    """The problems as a training split: every padded position kept (the loss ignores
    positions without a target), ``lengths`` holding the hops.

    Example:
        >>> problems = make_ontology_problems(OntologyConfig(hops=(2,)), 3)
        >>> problems_split(problems).tokens.shape == problems.tokens.shape
        True
    """
    return Split(problems.tokens, problems.targets, problems.hops, cot=True, score_padding=True)


@dataclass(frozen=True)
class OntologyDataset:
    """Training problems and held-out test problems of the ontology task.

    Attributes:
        config: What drew them.
        train_problems: The training problems.
        tests: Held-out test problems by kind (``fictional`` always; ``world`` and
            ``contradicting`` with a world).
    """

    config: OntologyDataConfig
    train_problems: OntologyProblems
    tests: dict[str, OntologyProblems]

    @property
    def train(self) -> Split:
        """The training split."""
        return problems_split(self.train_problems)

    @property
    def test(self) -> Split:
        """The held-out fictional test split."""
        return problems_split(self.tests["fictional"])

    @property
    def d_vocab(self) -> int:
        """Tokens of the vocabulary."""
        return self.train_problems.vocab.size

    @property
    def width(self) -> int:
        """Positions of the longest problem, training or test."""
        return max(p.tokens.shape[1] for p in (self.train_problems, *self.tests.values()))


def held_out(problems: OntologyProblems, seen: Set[tuple[int, ...]]) -> OntologyProblems:
    """The problems whose prompt (everything before the chain of thought) is not in ``seen``.

    Example:
        >>> problems = make_ontology_problems(OntologyConfig(hops=(1,)), 8)
        >>> len(held_out(problems, set())), len(held_out(problems, prompts_of(problems.tokens[:5])))
        (8, 3)
    """
    keep = [i for i, prompt in enumerate(_prompts(problems.tokens)) if prompt not in seen]
    if not keep:
        raise IterationHeadsError("every test problem repeats a training problem; draw more")
    return select_problems(problems, torch.tensor(keep))


def head_problems(problems: OntologyProblems, n: int) -> OntologyProblems:
    """The first ``n`` problems (all of them if fewer).

    Example:
        >>> len(head_problems(make_ontology_problems(OntologyConfig(), 8), 3))
        3
    """
    return select_problems(problems, torch.arange(min(n, len(problems))))


def select_problems(problems: OntologyProblems, index: Int[Tensor, " k"]) -> OntologyProblems:
    """The problems at ``index``, trimmed to their widest.

    Example:
        >>> problems = make_ontology_problems(OntologyConfig(), 8)
        >>> select_problems(problems, torch.tensor([2, 5])).hops.tolist() == problems.hops[[2, 5]].tolist()
        True
    """
    width = int((problems.tokens[index] != 0).sum(1).max())
    return OntologyProblems(
        problems.tokens[index, :width],
        problems.targets[index, :width],
        problems.hops[index],
        problems.answers[index],
        problems.subtasks[index, :width],
        problems.sources[index, :width],
        problems.vocab,
        problems.kinds[index],
        problems.priors[index, :width],
    )


def prompts_of(tokens: Int[Tensor, "n pos"]) -> set[tuple[int, ...]]:
    """Every problem's prompt (up to ``=>``) as a tuple of token ids, what :func:`held_out`
    compares."""
    return set(_prompts(tokens))


def training_prompts(config: OntologyDataConfig) -> frozenset[tuple[int, ...]]:
    """The prompts of the training problems that ``config`` draws (:func:`prompts_of`): what
    a model trained on them has seen, and what :func:`held_out` drops. Drawn once per process
    and config (20,000 problems take seconds).

    Example:
        >>> config = OntologyDataConfig(OntologyConfig(hops=(1,)), n_train=8)
        >>> train = make_ontology_dataset(config).train_problems
        >>> training_prompts(config) == prompts_of(train.tokens)
        True
    """
    if not isinstance(config, OntologyDataConfig):
        raise IterationHeadsError(
            f"config must be an OntologyDataConfig, got {type(config).__name__}"
        )
    return _drawn_training_prompts(config)


@lru_cache(maxsize=4)
def _drawn_training_prompts(config: OntologyDataConfig) -> frozenset[tuple[int, ...]]:
    problems = make_ontology_problems(config.ontology, config.n_train, seed=config.seed)
    return frozenset(prompts_of(problems.tokens))


def _prompts(tokens: Int[Tensor, "n pos"]) -> list[tuple[int, ...]]:
    arrow = SPECIALS.index("=>")
    return [tuple(row[: row.index(arrow) + 1]) for row in tokens.tolist()]


def make_ontology_dataset(config: OntologyDataConfig) -> OntologyDataset:
    """Draw the training problems and the held-out test splits (seeded).

    Example:
        >>> data = make_ontology_dataset(OntologyDataConfig(
        ...     OntologyConfig(hops=(1, 2), world_concepts=4, world_fraction=0.5, n_concepts=8),
        ...     n_train=64, n_test=16))
        >>> sorted(data.tests), data.d_vocab
        (['contradicting', 'fictional', 'world'], 30)
    """
    if not isinstance(config, OntologyDataConfig):
        raise IterationHeadsError(
            f"config must be an OntologyDataConfig, got {type(config).__name__}"
        )
    train = make_ontology_problems(config.ontology, config.n_train, seed=config.seed)
    seen = prompts_of(train.tokens)
    kinds = PROBLEM_KINDS if config.ontology.world_concepts else PROBLEM_KINDS[:1]
    tests = {
        kind: held_out(
            make_ontology_problems(
                config.ontology, config.n_test, seed=config.seed + 1 + i, kind=kind
            ),
            seen,
        )
        for i, kind in enumerate(kinds)
    }
    return OntologyDataset(config, train, tests)
