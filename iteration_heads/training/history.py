"""The evaluation history of a run directory, ``history.jsonl``: one JSON record per evaluation,
appended as the run goes, checked against the checkpoint a run resumes from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from iteration_heads._io import HISTORY_FILE, append_line, read_jsonl_lines
from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.task import short_repr

__all__ = [
    "append_history",
    "check_history",
    "check_record",
    "read_history",
    "read_history_lines",
]


def read_history(run: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The evaluation records of a run directory, oldest first: JSON objects, each with an
    integer ``epoch``; anything else is a one-line error naming the line.

    Example:
        >>> from iteration_heads.model import model_directory
        >>> [r["epoch"] for r in read_history(model_directory("polynomial"))][:3]
        [0, 10, 20]
    """
    return [record for _, record in read_history_lines(Path(run))]


def read_history_lines(run: Path) -> list[tuple[int, dict[str, Any]]]:
    """:func:`read_history` with the line number of each record.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = (run / HISTORY_FILE).write_text('42\\n')
        >>> read_history_lines(run)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: ...history.jsonl', line 1: 42 is not an evaluation record (a JSON object with an integer epoch)
    """
    path = run / HISTORY_FILE
    lines = read_jsonl_lines(path)
    for number, record in lines:
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if type(epoch) is not int or epoch < 0:
            shown = json.dumps(record)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise IterationHeadsError(
                f"{str(path)!r}, line {number}: {shown} is not an evaluation record (a JSON "
                "object with an integer epoch)"
            )
        check_record(record, f"{str(path)!r}, line {number}")
    return lines


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(_number(v) for v in value)


def _bad_field(record: dict[str, Any]) -> tuple[str, str] | None:
    """The first field of an evaluation record that is not what training writes, and what
    was expected of it; None when every field is."""
    if type(record.get("epoch")) is not int or record["epoch"] < 0:
        return "epoch", "an integer >= 0"
    if "step" in record and (type(record["step"]) is not int or record["step"] < 0):
        return "step", "an integer >= 0"
    if record.get("train_loss") is not None and not _number(record["train_loss"]):
        return "train_loss", "a number or null"
    for name in ("train_seconds", "eval_seconds", "train_cpu_seconds"):
        if record.get(name) is not None and not _number(record[name]):
            return name, "a number or null"
    for split in ("test", "train"):
        figures = record.get(split)
        if split == "train" and figures is None:  # training-split evaluation off
            continue
        if not isinstance(figures, dict) or not isinstance(figures.get("summary"), dict):
            return split, "an object with a summary object"
        summary = figures["summary"]
        if not _number(summary.get("accuracy")):
            return f"{split}.summary.accuracy", "a number"
        for name in ("eoi_peakiness", "iteration_peakiness"):
            if name in summary and not _numbers(summary[name]):
                return f"{split}.summary.{name}", "a list of numbers"
        lengths: Any = figures.get("lengths")
        if "lengths" in figures and not (
            _numbers(lengths) and all(type(n) is int for n in lengths)
        ):
            return f"{split}.lengths", "a list of integers"
        for name in ("loss", "sequence_accuracy", "token_accuracy"):
            value: Any = figures.get(name)
            if name in figures and not (_numbers(value) and len(value) == len(lengths or [])):
                return f"{split}.{name}", "a list of numbers, one per length"
    return None


def check_record(record: Any, where: str = "history record") -> None:
    """Check one evaluation record against what training writes: an integer ``epoch`` (and
    ``step``), numbers for the loss and the timings, ``test`` and ``train`` objects with a
    ``summary`` (a number ``accuracy``, lists of peakiness numbers) and per-length lists. A bad
    field is a one-line error naming it and ``where``.

    Example:
        >>> check_record({"epoch": 0, "train_loss": None, "train_seconds": 0.0,
        ...               "eval_seconds": 0.1, "test": "x"}, "line 2")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: line 2: test='x', expected an object with a summary object
    """
    if not isinstance(record, dict):
        raise IterationHeadsError(f"{where}: {short_repr(record)} is not an evaluation record")
    bad = _bad_field(record)
    if bad is not None:
        name, expected = bad
        value: Any = record
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        raise IterationHeadsError(f"{where}: {name}={short_repr(value)}, expected {expected}")


def check_history(
    run: Path, lines: list[tuple[int, dict[str, Any]]], epoch: int, train: dict[str, Any]
) -> list[dict[str, Any]]:
    """The history to resume with from a checkpoint of ``epoch``: the records up to it. The
    file must be a strictly increasing run of epochs from 0 with every evaluation the run made
    up to ``epoch`` (each ``eval_every``; ``epoch`` itself unless that checkpoint fell between
    evaluations, or is the initial one); records after ``epoch`` are dropped (they are recomputed). Anything else is
    a one-line error naming the first bad line; nothing is rewritten.

    Example:
        >>> lines = [(1, {"epoch": 0}), (2, {"epoch": 2}), (3, {"epoch": 1})]
        >>> check_history(Path("run"), lines[:2], 2, {"eval_every": 1})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: cannot resume 'run': history.jsonl line 2 is epoch 2 after epoch 0, expected epoch 1 (eval_every=1); ...
    """
    every, saving = train.get("eval_every") or 1, train.get("checkpoint_every") or 0
    hint = (
        "; the history does not match the checkpoint: restore history.jsonl, or train again "
        "into a new folder (nothing was changed)"
    )
    previous = None
    for number, record in lines:
        current = record["epoch"]
        bad = ""
        if previous is None and current != 0:
            bad = f"is epoch {current}, expected the first evaluation, epoch 0"
        elif previous is not None and current <= previous:
            bad = f"is epoch {current} after epoch {previous}, expected a later epoch"
        elif previous is not None and current <= epoch:
            due = (previous // every + 1) * every  # the next evaluation the run made
            if due < current:
                bad = f"is epoch {current} after epoch {previous}, expected epoch {due} "
                bad += f"(eval_every={every})"
        if bad:
            raise IterationHeadsError(
                f"cannot resume {str(run)!r}: {HISTORY_FILE} line {number} {bad}{hint}"
            )
        previous = current
    kept = [record for _, record in lines if record["epoch"] <= epoch]
    last = kept[-1]["epoch"] if kept else None
    between = bool(saving) and epoch % saving == 0 and epoch % every != 0
    if last is None and epoch == 0:  # killed before the first evaluation: it runs again
        return kept
    if last is None or (last != epoch and not between) or (last // every < epoch // every):
        where = f"ends at epoch {last}" if kept else "holds no record"
        raise IterationHeadsError(
            f"cannot resume {str(run)!r}: {HISTORY_FILE} {where}, but the checkpoint is at "
            f"epoch {epoch}{hint}"
        )
    return kept


def append_history(run: Path, record: dict[str, Any]) -> None:
    """Add one evaluation record to ``history.jsonl`` (one line).

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> append_history(run, {"epoch": 0}); append_history(run, {"epoch": 10})
        >>> (run / HISTORY_FILE).read_text()
        '{"epoch": 0}\\n{"epoch": 10}\\n'
    """
    append_line(run / HISTORY_FILE, json.dumps(record))
