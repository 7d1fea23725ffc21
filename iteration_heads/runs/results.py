"""What a finished run gives an experiment: :class:`RunResult`, read from its cache directory.

The claims of the reproduction read runs through its properties (accuracy, per-layer peakiness,
whether the targets were reached, accuracy at an epoch) instead of nested dictionaries, and
compare against the training targets
(:data:`~iteration_heads.training.metrics.ACCURACY_TARGET`,
:data:`~iteration_heads.training.metrics.PEAKINESS_TARGET`) rather than literals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from iteration_heads._io import read_json
from iteration_heads._results import Result
from iteration_heads.errors import IterationHeadsError
from iteration_heads.training.metrics import ACCURACY_TARGET, PEAKINESS_TARGET
from iteration_heads.training.run_dir import history_summary, read_history

DETECT_FILE = "detect.json"
"""The detection report of a cached run's final model (written when the run finishes)..."""
WALL_FILE = "wall.json"
"""...and its wall-clock seconds, written last: it marks the run finished."""


def format_list(values: Sequence[float]) -> str:
    """Per-layer figures, two decimals.

    Example:
        >>> format_list([0.2046, 1.0])
        '[0.20, 1.00]'
    """
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


@dataclass(frozen=True, repr=False)
class RunResult(Result):
    """The figures of one finished run.

    Attributes:
        seed: The run's training seed.
        summary: :func:`~iteration_heads.training.history_summary` of its history: ``epochs``,
            final ``test`` and ``train`` summaries, first epochs where targets were reached.
        detect: Its final model's detection (verdict, circuit found, heads, layer table).
        name, directory, spec: The run's readable name, cache directory and full configuration.
        per_length: Final test sequence accuracy per input length.
        wall_seconds: Wall-clock training time.
        curve: Per evaluation: epoch, train loss, test accuracy and per-layer peakiness.

    Example:
        >>> r = RunResult(seed=0, summary={"epochs": 60, "test": {"accuracy": 1.0,
        ...     "eoi_peakiness": [0.6, 0.0], "iteration_peakiness": [0.1, 0.98]}})
        >>> r.solved, r.has_head, r.eoi_peakiness, r.iteration_peakiness
        (True, True, 0.6, 0.98)
    """

    seed: int
    summary: dict[str, Any]
    detect: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    directory: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    per_length: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    curve: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(
        cls, directory: str | Path, *, name: str, seed: int, spec: dict[str, Any]
    ) -> RunResult:
        """The result of the finished run cached in ``directory``."""
        directory = Path(directory)
        if not (directory / WALL_FILE).is_file():
            raise IterationHeadsError(f"run {str(directory)!r} is not finished (no {WALL_FILE})")
        history = read_history(directory)
        last = history[-1]["test"]
        return cls(
            seed=seed,
            summary=history_summary(history),
            detect=read_json(directory / DETECT_FILE),
            name=name,
            directory=str(directory),
            spec=spec,
            per_length={
                "lengths": last["lengths"],
                "sequence_accuracy": last["sequence_accuracy"],
            },
            wall_seconds=read_json(directory / WALL_FILE)["seconds"],
            curve=[
                {
                    "epoch": r["epoch"],
                    "train_loss": r["train_loss"],
                    "accuracy": r["test"]["summary"]["accuracy"],
                    "eoi_peakiness": r["test"]["summary"]["eoi_peakiness"],
                    "iteration_peakiness": r["test"]["summary"]["iteration_peakiness"],
                }
                for r in history
            ],
        )

    @property
    def test(self) -> dict[str, Any]:
        """The final test summary: ``accuracy``, per-layer ``eoi_peakiness`` and
        ``iteration_peakiness``."""
        return dict(self.summary["test"])

    @property
    def epochs(self) -> int:
        """Epochs trained."""
        return int(self.summary["epochs"])

    @property
    def accuracy(self) -> float:
        """Final test accuracy (lengths 4..Lmax)."""
        return float(self.test["accuracy"])

    @property
    def iteration_peakiness(self) -> float:
        """Iteration peakiness of the last layer (the paper's layer 2); NaN without CoT."""
        values = self.test["iteration_peakiness"]
        return float(values[-1]) if values else math.nan

    @property
    def eoi_peakiness(self) -> float:
        """EoI peakiness of the first layer; NaN without CoT."""
        values = self.test["eoi_peakiness"]
        return float(values[0]) if values else math.nan

    @property
    def solved(self) -> bool:
        """Whether the final accuracy reaches the accuracy target."""
        return self.accuracy >= ACCURACY_TARGET

    @property
    def has_head(self) -> bool:
        """Whether the last layer's final iteration peakiness reaches the head target."""
        return self.iteration_peakiness >= PEAKINESS_TARGET

    @property
    def has_circuit(self) -> bool:
        """Whether detection found the iteration circuit in the final model."""
        return bool(self.detect.get("has_iteration_circuit"))

    def first_epoch(self, key: str = "first_epoch_accuracy") -> int | None:
        """The first evaluated epoch where a target was reached: ``first_epoch_accuracy``,
        ``first_epoch_iteration_head`` or ``first_epoch_both`` (None: never)."""
        value = self.summary.get(key)
        return None if value is None else int(value)

    def accuracy_at(self, epoch: int) -> float:
        """Test accuracy at an evaluated ``epoch`` (NaN if it was not evaluated)."""
        return next((float(p["accuracy"]) for p in self.curve if p["epoch"] == epoch), math.nan)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the per-run entries of the experiments' JSON files)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def format(self) -> str:
        """One line: name, accuracy, per-layer peakiness, epochs, time."""
        return (
            f"{self.name or f'seed {self.seed}'}: accuracy {self.accuracy:.3f}, iteration "
            f"peakiness {format_list(self.test['iteration_peakiness'])}, {self.epochs} epochs, "
            f"{self.wall_seconds:.0f} s"
        )
