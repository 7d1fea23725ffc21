"""Audit across training: detection on every checkpoint of a run, and when the iteration heads
formed — the paper's peakiness-over-training figure for a model trained in anyone's code.

A run folder holds checkpoints as subfolders: HuggingFace Trainer's ``checkpoint-<step>``
(``trainer_state.json`` gives the epoch) or this library's model folders (their metadata gives
the epoch). Every checkpoint is probed with the same probes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from iteration_heads._io import CONFIG_FILE, METADATA_FILE, read_json
from iteration_heads._results import Result
from iteration_heads.auditing.sources import TaskWriting, open_subject
from iteration_heads.detection.detector import detect
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import as_batch
from iteration_heads.interventions.scores import run_scored
from iteration_heads.tasks.task import check_int

STEP = re.compile(r"checkpoint-(\d+)$")


@dataclass(frozen=True, repr=False)
class TrainingAudit(Result):
    """Detection on every checkpoint of a run.

    Attributes:
        table: One row per checkpoint, in training order: ``checkpoint``, ``step``, ``epoch``,
            ``accuracy`` (sequence accuracy on the probes), ``iteration_peakiness`` and
            ``eoi_peakiness`` (per layer, best head), ``iteration_heads`` (the heads found, or
            ""), ``state_sensitivity``, ``has_iteration_heads``, ``has_iteration_circuit``.
        folder: The run folder.
    """

    table: pd.DataFrame
    folder: str

    @property
    def formed_at(self) -> dict[str, Any] | None:
        """The first checkpoint from which iteration heads are found on every later one (its
        ``checkpoint``, ``step`` and ``epoch``); None if they never formed for good."""
        found = list(self.table["has_iteration_heads"])
        for i in range(len(found)):
            if all(found[i:]):
                row = self.table.iloc[i]
                return {"checkpoint": row["checkpoint"], "step": row["step"], "epoch": row["epoch"]}
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "folder": self.folder,
            "formed_at": self.formed_at,
            "checkpoints": self.table.to_dict("records"),
        }

    def format(self) -> str:
        """When the heads formed, then the table."""
        formed = self.formed_at
        head = (
            "iteration heads never formed for good"
            if formed is None
            else f"iteration heads formed at {formed['checkpoint']} (step {formed['step']}, "
            f"epoch {formed['epoch']}) and stayed"
        )
        shown = self.table.drop(columns=["has_iteration_circuit"])
        return head + "\n" + shown.to_string(index=False, float_format="{:.2f}".format)


def checkpoint_folders(
    folder: str | os.PathLike[str],
) -> list[tuple[Path, int | None, float | None]]:
    """The checkpoints of a run folder, in training order: ``(path, step, epoch)``.

    Example:
        >>> [(p.name, s, e) for p, s, e in checkpoint_folders(
        ...     "tests/fixtures/gpt2_text_polynomial/checkpoints")][:2]
        [('checkpoint-320', 320, 10.0), ('checkpoint-640', 640, 20.0)]
    """
    root = Path(folder)
    if not root.is_dir():
        raise IterationHeadsError(f"run folder {str(root)!r} does not exist")
    found = []
    for path in root.iterdir():
        if not (path / CONFIG_FILE).is_file():
            continue
        match = STEP.search(path.name)
        step = int(match.group(1)) if match else None
        epoch = None
        if (path / "trainer_state.json").is_file():
            state = read_json(path / "trainer_state.json")
            if not isinstance(state, dict):
                raise IterationHeadsError(
                    f"{str(path / 'trainer_state.json')!r} holds no JSON object"
                )
            step = state.get("global_step", step)
            epoch = state.get("epoch")
            bad = step is not None and (isinstance(step, bool) or not isinstance(step, int))
            if bad or (epoch is not None and not isinstance(epoch, int | float)):
                raise IterationHeadsError(
                    f"{str(path / 'trainer_state.json')!r}: global_step {step!r} and epoch "
                    f"{epoch!r}: expected an integer and a number"
                )
        elif (path / METADATA_FILE).is_file():
            metadata = read_json(path / METADATA_FILE)
            summary = metadata.get("summary") if isinstance(metadata, dict) else None
            epoch = summary.get("epochs") if isinstance(summary, dict) else None
            if isinstance(epoch, bool) or not isinstance(epoch, int | float | None):
                epoch = None
        if step is None and epoch is None:
            continue
        found.append((path, step, None if epoch is None else float(epoch)))
    if not found:
        raise IterationHeadsError(
            f"{str(root)!r} holds no checkpoint: expected subfolders checkpoint-<step> "
            "(HuggingFace) or library model folders with a trained epoch in their metadata"
        )
    return sorted(found, key=lambda f: (f[1] if f[1] is not None else -1, f[2] or 0.0))


def audit_checkpoints(
    folder: str | os.PathLike[str],
    writing: TaskWriting | None = None,
    *,
    n_probes: int = 256,
    max_len: int | None = None,
) -> TrainingAudit:
    """Detect iteration heads on every checkpoint of a run folder (same probes for all).

    Example:
        >>> writing = TaskWriting(template="<s> {inputs} {eoi} {states} </s>")
        >>> result = audit_checkpoints("tests/fixtures/gpt2_text_polynomial/checkpoints", writing,
        ...                            n_probes=128)
        >>> result.formed_at["checkpoint"], list(result.table["has_iteration_heads"])
        ('checkpoint-1280', [False, False, False, True, True])
    """
    check_int("n_probes", n_probes, minimum=1)
    if max_len is not None:
        check_int("max_len", max_len, minimum=1)
    rows = []
    probes = None  # built once, from the first checkpoint: every checkpoint gets the same
    for path, step, epoch in checkpoint_folders(folder):
        subject = open_subject(path, writing, max_len=max_len, n_probes=n_probes, probes=probes)
        probes = subject.probes
        report = detect(subject.model, subject.probes)
        accuracy = run_scored(subject.model, as_batch(subject.model, subject.probes)).mean(
            "accuracy"
        )
        peaks = report.heads.groupby("layer")[["iteration_peakiness", "eoi_peakiness"]].max()
        rows.append(
            {
                "checkpoint": path.name,
                "step": step,
                "epoch": epoch,
                "accuracy": accuracy,
                "iteration_peakiness": [round(float(v), 3) for v in peaks["iteration_peakiness"]],
                "eoi_peakiness": [round(float(v), 3) for v in peaks["eoi_peakiness"]],
                "iteration_heads": "" if report.iteration is None else report.iteration.describe(),
                "state_sensitivity": report.state_sensitivity,
                "has_iteration_heads": report.has_iteration_heads,
                "has_iteration_circuit": report.has_iteration_circuit,
            }
        )
    return TrainingAudit(pd.DataFrame(rows), str(folder))
