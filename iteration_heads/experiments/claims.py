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
from iteration_heads.runs.specs import RunSpec
from iteration_heads.tasks.task import check_int

Results = dict[str, list[RunResult]]
"""An experiment's results: arm label -> one result per seed."""

Assessment = tuple[str, str, str]
"""``(ours, holds, why)``: our figures, whether the claim holds, and why where it does not."""


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

    ``build(seeds, epochs)`` makes the arms; ``epochs`` overrides the training budget (see each
    experiment's description). ``figure`` is ``"curves"`` or ``"grid"``.

    Example:
        >>> from iteration_heads.runs.specs import polynomial_spec
        >>> e = Experiment("demo", "one run per seed",
        ...                lambda seeds, epochs: {"arm": [polynomial_spec(s) for s in seeds]}, ())
        >>> [s.train.seed for s in e.specs(seeds=[3, 4])["arm"]]
        [3, 4]
    """

    name: str
    description: str
    build: Callable[[tuple[int, ...], int | None], dict[str, list[RunSpec]]]
    claims: tuple[Claim, ...]
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    figure: str = "curves"

    def __post_init__(self) -> None:
        if not isinstance(self.seeds, tuple | list) or not self.seeds:
            raise IterationHeadsError(f"seeds={self.seeds!r}, expected a non-empty tuple of ints")
        for i, seed in enumerate(self.seeds):
            check_int(f"seeds[{i}]", seed, minimum=0)

    def specs(
        self, seeds: Sequence[int] | None = None, epochs: int | None = None
    ) -> dict[str, list[RunSpec]]:
        """The runs of every arm, for the given seeds (default: the experiment's)."""
        return self.build(tuple(seeds) if seeds else self.seeds, epochs)


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


def only_arm(results: Results) -> list[RunResult]:
    """The results of an experiment that has a single arm.

    Example:
        >>> only_arm({"arm": []})
        []
    """
    return next(iter(results.values()))
