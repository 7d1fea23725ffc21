"""What an experiment is: arms of runs (one spec per seed) and the paper's claims it tests, each
assessed from the runs' results; and the shared wording of the results (mean ± spread, how many
seeds a claim holds on).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from iteration_heads.errors import IterationHeadsError
from iteration_heads.runs.results import RunResult
from iteration_heads.runs.specs import (
    PAPER_HEADS_PER_LAYER,
    RunSpec,
    authors_setting,
    paper_setting,
)
from iteration_heads.tasks.task import check_int
from iteration_heads.training.recipe import RECIPE_HEADS_PER_LAYER, RECIPE_LR

Results = dict[str, list[RunResult]]
"""An experiment's results: arm label -> one result per seed."""

Assessment = tuple[str, str, str]
"""``(ours, holds, why)``: our figures, whether the claim holds, and why where it does not."""

ARMS = ("paper", "recipe", "authors")
"""The settings an experiment runs in: ``paper``, the paper's model and optimiser as the
authors ran them (:func:`~iteration_heads.runs.specs.paper_setting`); ``recipe``, the library's
recipe (:mod:`~iteration_heads.training.recipe`); and ``authors``, every ingredient of the
authors' code on top of the paper's setting (:func:`~iteration_heads.runs.specs.authors_setting`:
their block, initialisation, data and batch order)."""

DEFAULT_ARMS = ("paper", "recipe")
"""The arms ``reproduce`` runs unless told otherwise: docs/results.md judges every claim on the
paper arm and shows the recipe arm beside it."""


def check_arm(arm: object) -> str:
    """``arm`` if it is one of :data:`ARMS`, else a one-line error.

    Example:
        >>> check_arm("paper")
        'paper'
        >>> check_arm("author")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: arm='author', expected 'paper', 'recipe' or 'authors'
    """
    if not isinstance(arm, str) or arm not in ARMS:
        raise IterationHeadsError(f"arm={arm!r}, expected 'paper', 'recipe' or 'authors'")
    return arm


@dataclass(frozen=True)
class Claim:
    """One row of docs/results.md: the claim, what the paper (or the authors' code) reports, and
    a function of the experiment's results giving ``(ours, holds?, why)``.

    Example:
        >>> claim = Claim("it learns", "0.99", lambda results: ("1.00", "yes", ""))
        >>> claim.assess({})
        ('1.00', 'yes', '')
    """

    text: str
    paper: str
    assess: Callable[[Results], Assessment]


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its arms (label -> one spec per seed) and the claims it tests.

    ``build(seeds, epochs)`` makes the arms with the library's recipe; ``epochs`` overrides the
    training budget (see each experiment's description). ``specs(..., arm="paper")`` turns every
    run into the paper's model and optimiser with ``paper_heads`` heads per layer
    (:func:`~iteration_heads.runs.specs.paper_setting`), ``arm="authors"`` into the authors'
    setting (:func:`~iteration_heads.runs.specs.authors_setting`). ``figure`` is ``"curves"`` or
    ``"grid"``.

    Example:
        >>> from iteration_heads.runs.specs import polynomial_spec
        >>> e = Experiment("demo", "one run per seed",
        ...                lambda seeds, epochs: {"arm": [polynomial_spec(s) for s in seeds]}, ())
        >>> [s.train.seed for s in e.specs(seeds=[3, 4])["arm"]]
        [3, 4]
        >>> [(s.model.n_heads, s.train.lr) for s in e.specs([3], arm="paper")["arm"]]
        [(1, 0.0003)]
    """

    name: str
    description: str
    build: Callable[[tuple[int, ...], int | None], dict[str, list[RunSpec]]]
    claims: tuple[Claim, ...]
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    figure: str = "curves"
    paper_heads: int = PAPER_HEADS_PER_LAYER

    def __post_init__(self) -> None:
        if not isinstance(self.seeds, tuple | list) or not self.seeds:
            raise IterationHeadsError(f"seeds={self.seeds!r}, expected a non-empty tuple of ints")
        for i, seed in enumerate(self.seeds):
            check_int(f"seeds[{i}]", seed, minimum=0)
        check_int("paper_heads", self.paper_heads, minimum=1)

    def specs(
        self, seeds: Sequence[int] | None = None, epochs: int | None = None, arm: str = "recipe"
    ) -> dict[str, list[RunSpec]]:
        """The runs of every arm, for the given seeds (default: the experiment's), in the
        setting ``arm`` (:data:`ARMS`)."""
        plan = self.build(tuple(seeds) if seeds else self.seeds, epochs)
        if check_arm(arm) == "recipe":
            return plan
        setting = paper_setting if arm == "paper" else authors_setting
        return {
            label: [setting(s, n_heads=self.paper_heads) for s in specs]
            for label, specs in plan.items()
        }


def mean_spread(values: Sequence[float], digits: int = 2) -> str:
    """``mean ± standard deviation (min–max)`` over seeds; just the value for one seed.

    Example:
        >>> mean_spread([1.0, 0.83, 0.56])
        '0.80 ± 0.22 (0.56–1.00)'
        >>> mean_spread([0.5])
        '0.50'
    """
    check_int("digits", digits, minimum=0)
    values = [float(v) for v in values]
    if any(math.isnan(v) for v in values):
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    return (
        f"{mean:.{digits}f} ± {sd:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"
    )


def holds(n: int, total: int) -> str:
    """Whether a claim that holds on ``n`` of ``total`` seeds holds: yes, no or partly.

    Example:
        >>> holds(3, 3), holds(0, 3), holds(1, 3)
        ('yes', 'no', 'partly (1/3 seeds)')
    """
    return "yes" if n == total else "no" if n == 0 else f"partly ({n}/{total} seeds)"


def count(results: list[RunResult], predicate: Callable[[RunResult], bool]) -> int:
    """How many runs satisfy ``predicate``.

    Example:
        >>> count([RunResult(0, {"test": {"accuracy": 1.0}})], lambda r: r.solved)
        1
    """
    return sum(1 for r in results if predicate(r))


def first_epochs(results: list[RunResult], key: str = "first_epoch_accuracy") -> str:
    """The first epochs where a target was reached, per seed (``—`` where never).

    Example:
        >>> first_epochs([RunResult(0, {"first_epoch_accuracy": 60}), RunResult(1, {})])
        '60, —'
    """
    return ", ".join(
        "—" if r.first_epoch(key) is None else str(r.first_epoch(key)) for r in results
    )


def setting_name(results: list[RunResult]) -> str:
    """Which setting trained these runs, read from their specs: ``"the library's recipe"`` or
    ``"the paper's setting"`` (the recipe's learning rate or not; runs without a spec count as
    the recipe's, as every run written before the paper arm).

    Example:
        >>> from iteration_heads.runs.specs import paper_setting, polynomial_spec
        >>> spec = paper_setting(polynomial_spec(0)).to_dict()
        >>> setting_name([RunResult(0, {}, spec=spec)]), setting_name([RunResult(0, {})])
        ("the paper's setting", "the library's recipe")
    """
    rates = {r.spec.get("train", {}).get("lr", RECIPE_LR) for r in results if r.spec}
    return "the library's recipe" if rates <= {RECIPE_LR} else "the paper's setting"


def heads_per_layer(results: list[RunResult]) -> int:
    """The heads per layer of these runs' model (the recipe's where the runs have no spec).

    Example:
        >>> heads_per_layer([RunResult(0, {}, spec={"model": {"n_heads": 1}})])
        1
    """
    heads = {r.spec.get("model", {}).get("n_heads", RECIPE_HEADS_PER_LAYER) for r in results}
    return max(heads, default=RECIPE_HEADS_PER_LAYER)


def only_arm(results: Results) -> list[RunResult]:
    """The results of an experiment that has a single arm.

    Example:
        >>> only_arm({"arm": []})
        []
    """
    return next(iter(results.values()))
