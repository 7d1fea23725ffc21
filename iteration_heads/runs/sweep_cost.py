"""What a sweep will cost, from throughput measured on this machine before it runs: for every
distinct shape of run (model, data, batch size, threads), a few optimiser steps, one
evaluation and one detection are timed through the library's own code; each cell's cost is its
budget (epochs, or ``max_steps``) times those figures, and the sweep's wall time packs the
cells onto the executor's slots.

It is an upper bound for runs that stop at target, and a figure for this machine: a cluster's
nodes have their own speed.

Example:
    >>> from iteration_heads.runs.specs import copy_spec
    >>> cost = estimate_cost([copy_spec(0), copy_spec(1)], slots=2)
    >>> len(cost.seconds), cost.shapes
    (2, 1)
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.transformer import build_model
from iteration_heads.runs.specs import RunSpec
from iteration_heads.tasks.data import make_dataset
from iteration_heads.tasks.task import check_int
from iteration_heads.training.evaluation import evaluation_records
from iteration_heads.training.loop import steps_per_epoch, train

PROBE_STEPS = 3
"""Optimiser steps timed per shape (after one step that is not timed)."""


@dataclass(frozen=True)
class CostEstimate:
    """Estimated seconds of every cell (by run key), their sum, and the wall time with
    ``slots`` runs at once; ``shapes`` distinct shapes were measured in ``probe_seconds``."""

    seconds: dict[str, float]
    slots: int
    shapes: int
    probe_seconds: float

    @property
    def total(self) -> float:
        """Seconds of run time, all cells together."""
        return sum(self.seconds.values())

    @property
    def wall(self) -> float:
        """Seconds until the last cell ends with ``slots`` at once (longest cells first)."""
        ends = [0.0] * max(min(self.slots, len(self.seconds)), 1)
        for cost in sorted(self.seconds.values(), reverse=True):
            heapq.heappush(ends, heapq.heappop(ends) + cost)
        return max(ends)

    def summary(self) -> str:
        """One line: run time, wall time with the slots, and what was measured."""
        return (
            f"estimated cost: {format_seconds(self.total)} of run time, "
            f"{format_seconds(self.wall)} wall with {self.slots} at a time (an upper bound for "
            f"runs that stop at target; {self.shapes} shapes measured here in "
            f"{format_seconds(self.probe_seconds)})"
        )


def format_seconds(seconds: float) -> str:
    """Seconds as ``42 s``, ``3.5 min`` or ``2.1 h``.

    Example:
        >>> format_seconds(42), format_seconds(210), format_seconds(7560)
        ('42 s', '3.5 min', '2.1 h')
    """
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class ShapeCost:
    """Measured seconds of one optimiser step, one evaluation and the final detection."""

    step: float
    evaluation: float
    detection: float


def measure_shape(spec: RunSpec) -> ShapeCost:
    """Time :data:`PROBE_STEPS` optimiser steps, one evaluation and one detection of a run
    shaped like ``spec``, at its thread count (restored afterwards).

    Example:
        >>> from iteration_heads.runs.specs import copy_spec
        >>> cost = measure_shape(copy_spec())
        >>> 0 < cost.step < 5 and 0 < cost.evaluation < 30
        True
    """
    from iteration_heads.detection.detector import detect

    threads = torch.get_num_threads()
    torch.set_num_threads(spec.train.threads or threads)
    try:
        lengths = spec.data.max_len - spec.data.min_len + 1
        per_length = math.ceil((PROBE_STEPS + 1) * spec.train.batch_size / lengths)
        probe = make_dataset(replace(spec.data, n_train=per_length, n_test=1), spec.model.layout)
        model = build_model(spec.model)
        config = replace(spec.train, epochs=1, eval_every=1, max_steps=None, threads=None,
                         stop_at_target=False)  # fmt: skip
        history = train(model, probe, config, progress=False)
        steps = steps_per_epoch(probe.train, config.batch_size, config.batch_order)
        step = history[-1]["train_seconds"] / max(steps, 1)
        full = make_dataset(spec.data, spec.model.layout)
        tick = time.perf_counter()
        evaluation_records(model, full)
        evaluation = time.perf_counter() - tick
        tick = time.perf_counter()
        detect(model, n_probes=512)
        return ShapeCost(step, evaluation, time.perf_counter() - tick)
    finally:
        torch.set_num_threads(threads)


def shape_key(spec: RunSpec) -> str:
    """What decides a run's speed: its configs without seeds and budgets.

    Example:
        >>> from iteration_heads.runs.specs import polynomial_spec
        >>> shape_key(polynomial_spec(0)) == shape_key(polynomial_spec(1, epochs=9))
        True
    """
    train = replace(spec.train, seed=0, epochs=1, max_steps=None, stop_at_target=False)
    return repr((replace(spec.data, seed=0), replace(spec.model, seed=0), train))


def estimate_cost(cells: Sequence[RunSpec], *, slots: int = 1) -> CostEstimate:
    """The estimated cost of training ``cells`` (module docstring), ``slots`` at a time."""
    slots = check_int("slots", slots, minimum=1)
    tick = time.perf_counter()
    measured: dict[str, ShapeCost] = {}
    seconds = {}
    for cell in cells:
        if cell.source is not None:
            raise IterationHeadsError(f"cannot estimate {cell.name()}: it fine-tunes a run")
        shape = shape_key(cell)
        if shape not in measured:
            measured[shape] = measure_shape(cell)
        cost = measured[shape]
        data = make_dataset(cell.data, cell.model.layout)
        per_epoch = steps_per_epoch(data.train, cell.train.batch_size, cell.train.batch_order)
        epochs = cell.train.last_epoch(per_epoch)
        evaluations = epochs // cell.train.eval_every + 1 + (epochs % cell.train.eval_every > 0)
        seconds[cell.key()] = (
            epochs * per_epoch * cost.step + evaluations * cost.evaluation + cost.detection
        )
    return CostEstimate(seconds, slots, len(measured), time.perf_counter() - tick)


def check_cells_fit(cells: list[RunSpec]) -> None:
    """A one-line error naming the first cell that cannot fit this machine's memory
    (:func:`~iteration_heads.training.budget.check_memory`), checked before any trains.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, TrainConfig
        >>> big = RunSpec(DataConfig(max_len=10**5), ModelConfig(max_len=10**5), TrainConfig())
        >>> check_cells_fit([big])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: sweep cell polynomial-cot-d128-L100000-...: max_len=100000, ...
    """
    from iteration_heads.memory import available_memory
    from iteration_heads.training.budget import check_memory

    have, seen = available_memory(), set()
    for cell in cells:
        shape = (cell.data, cell.model, replace(cell.train, seed=0))
        if repr(shape) in seen:  # the seeds of one configuration need the same
            continue
        seen.add(repr(shape))
        try:
            check_memory(cell.data, cell.model, cell.train,
                         available=have if cell.train.device == "cpu" else None)  # fmt: skip
        except IterationHeadsError as err:
            raise IterationHeadsError(f"sweep cell {cell.name()}: {err}") from None
