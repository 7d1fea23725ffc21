"""The paper's experiments, by name, in the order of docs/results.md.

Example:
    >>> [e.name for e in EXPERIMENTS.values()][:3]
    ['emergence', 'paper-size', 'no-cot']
"""

from __future__ import annotations

from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.claims import Experiment
from iteration_heads.experiments.controls import NO_COT, ONE_LAYER, SMALL_WIDTH
from iteration_heads.experiments.emergence import EMERGENCE, PAPER_SIZE, POSITIONAL
from iteration_heads.experiments.parity import FAIR_PARITY, PARITY_SCRATCH, TRANSFER
from iteration_heads.experiments.scaling import SCALING, THREE_BY_TWO

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        EMERGENCE,
        PAPER_SIZE,
        NO_COT,
        ONE_LAYER,
        SMALL_WIDTH,
        PARITY_SCRATCH,
        TRANSFER,
        FAIR_PARITY,
        SCALING,
        THREE_BY_TWO,
        POSITIONAL,
    )
}
"""Every experiment, in the order of docs/results.md."""


def get_experiment(name: str) -> Experiment:
    """An experiment by name.

    Example:
        >>> get_experiment("transfer").name
        'transfer'
    """
    if name not in EXPERIMENTS:
        raise IterationHeadsError(f"unknown experiment {name!r}; choose from {list(EXPERIMENTS)}")
    return EXPERIMENTS[name]
