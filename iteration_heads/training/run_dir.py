"""The files of a run directory: configs, evaluation history, the checkpoints to resume from,
and the lock of the process training in it.

A run directory holds::

    run.json            model, data and training configs, seed, versions (written last when a
                        run starts: the run exists once it does)
    history.jsonl       one JSON record per evaluation (epoch 0, every eval_every, the last)
    checkpoint/epoch-000050/   the last two checkpoints, each a folder renamed into place whole:
                        weights, optimiser state and a manifest of both (sizes, SHA-256)
    .lock, .lock.holder the lock of the process training here, and who holds it
    config.json, model.safetensors, metadata.json   the final model (see iteration_heads.load)

Every file is written atomically (:func:`~iteration_heads._io.atomic_write`), so a run killed at
any instant resumes from its newest intact checkpoint and ends as the uninterrupted run would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from iteration_heads._io import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    HISTORY_FILE,
    LOCK_FILE,
    LOCK_HOLDER_FILE,
    METADATA_FILE,
    RUN_FILE,
    TEMPORARY_NAME,
    WEIGHTS_FILE,
    read_json,
    remove_temporary,
    versions,
    write_error,
    write_json,
    write_text,
)
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.transformer import ModelConfig
from iteration_heads.training.history import append_history as append_history
from iteration_heads.training.history import check_history, check_record, read_history_lines
from iteration_heads.training.history import read_history as read_history
from iteration_heads.training.metrics import has_iteration_head, reaches_accuracy
from iteration_heads.training.resume import (
    check_configs,
    load_into,
    read_checkpoint,
    save_checkpoint,
)


def read_run_record(run: Path) -> dict[str, Any]:
    """The record ``run.json`` of a run directory, checked: an object whose ``model`` is a
    valid model config, and ``data`` and ``train`` objects (``epochs`` an integer).

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = (run / RUN_FILE).write_text('{"model": {}, "data": {}, "train": []}')
        >>> read_run_record(run)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: ...run.json' is not a run record: train must be a JSON object, got list
    """
    path = run / RUN_FILE
    saved = read_json(path)
    if not isinstance(saved, dict) or not {"model", "data", "train"} <= set(saved):
        raise IterationHeadsError(
            f"{str(path)!r} is not a run record (an object with model, data, train)"
        )
    train = saved["train"]
    try:
        ModelConfig.from_dict(saved["model"])
        for key in ("data", "train"):  # a DataConfig or an ontology's: checked by their users
            if not isinstance(saved[key], dict):
                raise IterationHeadsError(
                    f"{key} must be a JSON object, got {type(saved[key]).__name__}"
                )
        if type(train.get("epochs", 0)) is not int:  # TrainConfig checks the rest (training.loop)
            raise IterationHeadsError(f"epochs={train['epochs']!r}, expected an integer")
    except IterationHeadsError as err:
        raise IterationHeadsError(f"{str(path)!r} is not a run record: {err}") from None
    return saved


def check_resumable(run: Path) -> dict[str, Any]:
    """Check, reading only, that the run in ``run`` can be resumed: its record, an intact
    checkpoint and a history that matches it (:func:`check_history`); returns the record.
    Damaged checkpoints are skipped silently here (resuming warns about them).

    Example:
        >>> import tempfile
        >>> check_resumable(Path(tempfile.mkdtemp()))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: missing file '...run.json'
    """
    record = read_run_record(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = read_checkpoint(run)
        check_configs(run, found, record)
        check_history(run, read_history_lines(run), found.epoch, record["train"])
    return record


def remove_stale_temporaries(run: Path) -> list[str]:
    """Remove what interrupted writes left in ``run``: the temporaries of its own files and of
    its checkpoint folders (only those, by name: :data:`~iteration_heads._io.TEMPORARY_NAME`);
    returns their names. Call it holding the run's lock (:func:`locked_run`), so that no write
    in progress is removed.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> for name in (".model.safetensors.a1b2c3d4.tmp", ".notes.a1b2c3d4.tmp", "x.tmp"):
        ...     (run / name).mkdir()
        >>> remove_stale_temporaries(run), sorted(p.name for p in run.iterdir())
        (['.model.safetensors.a1b2c3d4.tmp'], ['.notes.a1b2c3d4.tmp', 'x.tmp'])
    """
    removed = []
    for folder, names in ((run, RUN_FILES), (run / CHECKPOINT_DIR, None)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            match = TEMPORARY_NAME.fullmatch(path.name)
            written = match.group(1) if match else ""  # the name of the file or folder written
            if written in names if names is not None else re.fullmatch(r"epoch-\d+", written):
                remove_temporary(path)
                removed.append(path.name)
    return removed


def at_target(summary: dict[str, Any]) -> bool:
    """Whether a test summary reaches both targets (accuracy and iteration head).

    Example:
        >>> at_target({"accuracy": 1.0, "iteration_peakiness": [0.1, 0.97]})
        True
    """
    return reaches_accuracy(summary) and has_iteration_head(summary)


def run_metadata(record: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """Metadata stored with a trained model: task, layout, configs, seed and a history summary.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, TrainConfig
        >>> record = {"data": DataConfig(task="copy").to_dict(), "model": ModelConfig().to_dict(),
        ...           "train": TrainConfig(seed=3).to_dict()}
        >>> meta = run_metadata(record, [])
        >>> meta["task"], meta["seed"], meta["summary"]
        ('copy', 3, {})
    """
    return {
        "task": record["data"]["task"],
        "cot": record["data"]["cot"],
        "layout": record["model"]["layout"],
        "data": record["data"],
        "train": record["train"],
        "seed": record["train"]["seed"],
        "summary": history_summary(history),
    }


def history_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Final figures and the first epochs where accuracy and iteration peakiness reach target.

    Example:
        >>> history_summary([])
        {}
    """
    if not history:
        return {}
    for index, record in enumerate(history):  # what training writes, or a one-line error
        check_record(record, f"history record {index}")

    def first(pred: Callable[[dict[str, Any]], bool], key: str = "epoch") -> int | None:
        return next((r.get(key) for r in history if pred(r["test"]["summary"])), None)

    last = history[-1]
    summary = {
        "epochs": last["epoch"],
        "test": last["test"]["summary"],
        "train": last["train"]["summary"],
        "train_seconds": last["train_seconds"],
        "eval_seconds": last["eval_seconds"],
        "first_epoch_accuracy": first(reaches_accuracy),
        "first_epoch_iteration_head": first(has_iteration_head),
        "first_epoch_both": first(at_target),
    }
    if "step" in last:  # optimiser steps (histories written before steps were recorded lack them)
        summary |= {
            "steps": last["step"],
            "first_step_accuracy": first(reaches_accuracy, "step"),
            "first_step_iteration_head": first(has_iteration_head, "step"),
            "first_step_both": first(at_target, "step"),
        }
    return summary


RUN_FILES = {
    RUN_FILE,
    HISTORY_FILE,
    CHECKPOINT_DIR,
    LOCK_FILE,
    LOCK_HOLDER_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    METADATA_FILE,
}
"""What a run directory may hold (besides temporary files of interrupted writes)."""


def check_run_folder(run: Path, resume: bool, holding_lock: bool = False) -> None:
    """A clear error, before anything is written, when ``run`` cannot hold this run: a file, a
    folder that cannot be created or written, a run another process holds (:class:`RunInUse`,
    even before that run wrote its ``run.json``), a folder holding anything that is not a run,
    an existing run without ``resume`` or a missing one with it. ``holding_lock``: the caller
    holds the run's lock already.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "notes.txt").write_text("mine")
        >>> check_run_folder(folder, False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: ... holds files that are not a run's (notes.txt); choose an empty or new folder
    """
    if run.exists() and not run.is_dir():
        raise IterationHeadsError(f"run directory {str(run)!r} is a file; expected a folder")
    if not run.exists():
        if resume:
            raise IterationHeadsError(f"nothing to resume: {str(run)!r} does not exist")
        parent = next((p for p in run.parents if p.exists()), Path("."))
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise IterationHeadsError(
                f"cannot create the run directory {str(run)!r}: {str(parent)!r} is not a "
                "writable folder"
            )
        return
    if not os.access(run, os.W_OK | os.X_OK):
        raise IterationHeadsError(f"cannot write into the run directory {str(run)!r}")
    if (
        not holding_lock and (run / LOCK_FILE).exists()
    ):  # a run that is starting has its lock before its run.json
        take_run_lock(run).release()
    if (run / RUN_FILE).is_file():
        if not resume:
            raise IterationHeadsError(
                f"run directory {str(run)!r} already holds a run; pass resume=True (--resume) "
                "to continue it, or choose another directory"
            )
        return
    if resume:
        raise IterationHeadsError(
            f"nothing to resume in {str(run)!r}: the run never started (no {RUN_FILE}); run it "
            "again without resume (--resume)"
        )
    if any((run / name).exists() for name in (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)):
        raise IterationHeadsError(
            f"{str(run)!r} holds a saved model, not a run; choose an empty or new folder"
        )
    foreign = sorted(
        p.name for p in run.iterdir() if p.name not in RUN_FILES and not p.name.endswith(".tmp")
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise IterationHeadsError(
            f"{str(run)!r} holds files that are not a run's ({shown}); choose an empty or new "
            "folder"
        )


class RunInUse(IterationHeadsError):
    """Another process holds the lock of a run directory; ``holder`` says who (``process 12 on
    host since ...``, or ``another process`` when it has not said)."""

    holder: str = "another process"


def take_run_lock(run: Path) -> FileLock:
    """Take the lock of the existing run directory ``run`` without waiting, and return it (the
    caller releases it). :class:`RunInUse` naming the holder when another process holds it; a
    failure to write the lock file is one line.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> lock = take_run_lock(run)
        >>> take_run_lock(run)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        iteration_heads.training.run_dir.RunInUse: run directory ... is in use by another process; wait for it to finish, or stop it
        >>> lock.release()
    """
    lock = FileLock(str(run / LOCK_FILE), timeout=0, thread_local=False, is_singleton=False)
    try:
        lock.acquire()
    except Timeout:
        try:
            holder = read_json(run / LOCK_HOLDER_FILE)
            who = f"process {holder['pid']} on {holder['host']} since {holder['since']}"
        except (IterationHeadsError, KeyError, TypeError):
            who = "another process"
        error = RunInUse(
            f"run directory {str(run)!r} is in use by {who}; wait for it to finish, or stop it"
        )
        error.holder = who
        raise error from None
    except OSError as err:
        raise write_error(run / LOCK_FILE, err) from None
    return lock


@contextmanager
def locked_run(run: Path) -> Iterator[None]:
    """Hold the lock of the run directory ``run`` (created if needed) inside the block: a
    second process gets a clear error naming the holder. The lock is the operating system's
    (``filelock``): it dies with its process, so a killed run leaves no stale lock.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> with locked_run(run):
        ...     with locked_run(run):  # another holder
        ...         pass  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        iteration_heads.training.run_dir.RunInUse: run directory ... is in use by process ... since ...; wait for it to finish, or stop it
    """
    created = not run.exists()
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(run, err) from None
    try:
        lock = take_run_lock(run)
    except RunInUse:
        raise
    except IterationHeadsError:
        if created:
            shutil.rmtree(run, ignore_errors=True)
        raise
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        write_json(
            run / LOCK_HOLDER_FILE,
            {"pid": os.getpid(), "host": socket.gethostname(), "since": since},
        )
        yield
    finally:
        (run / LOCK_HOLDER_FILE).unlink(missing_ok=True)
        lock.release()


def prepare_run(
    run: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    record: dict[str, Any],
    resume: bool,
) -> tuple[int, list[dict[str, Any]]]:
    """Start the run in ``run`` (a checkpoint of the initial state, an empty history, then
    ``run.json``), or, when resuming, check that the configs match (``epochs`` may only grow),
    load the newest intact checkpoint and keep the history up to it. Nothing is written before
    the resume is known to be possible. Returns the epoch to start from and the history so far.
    Call it holding the run's lock (:func:`locked_run`).

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> optimizer = torch.optim.Adam(model.parameters())
        >>> run = Path(tempfile.mkdtemp())
        >>> prepare_run(run, model, optimizer, {"model": {}, "data": {}, "train": {}}, False)
        (0, [])
        >>> sorted(p.name for p in run.iterdir())
        ['checkpoint', 'history.jsonl', 'run.json']
    """
    check_run_folder(run, resume, holding_lock=True)
    if not resume:
        remove_stale_temporaries(run)
        for leftover in (run / CHECKPOINT_DIR, run / HISTORY_FILE):  # a start that never finished
            if leftover.is_dir():
                shutil.rmtree(leftover)
            leftover.unlink(missing_ok=True)
        save_checkpoint(run, model, optimizer, 0, configs=record)
        write_text(run / HISTORY_FILE, "")
        write_json(run / RUN_FILE, {**record, "versions": versions()})
        return 0, []
    saved = read_run_record(run)
    for key in ("model", "data"):
        if saved[key] != record[key]:
            raise IterationHeadsError(
                f"cannot resume {str(run)!r}: its {key} config differs from this one"
            )
    saved_train = saved["train"]
    budget = {"epochs": None, "max_steps": None}  # a run may be extended
    if {**saved_train, **budget} != {**record["train"], **budget}:
        raise IterationHeadsError(
            f"cannot resume {str(run)!r}: its train config differs (other than epochs and "
            "max_steps)"
        )
    if record["train"]["epochs"] < saved_train.get("epochs", 0):
        raise IterationHeadsError(
            f"cannot resume {str(run)!r} with epochs={record['train']['epochs']}: the run is "
            f"{saved_train['epochs']} epochs long; resume without epochs, or with more"
        )
    found = read_checkpoint(run)
    check_configs(run, found, saved)
    history = check_history(run, read_history_lines(run), found.epoch, saved_train)
    load_into(found, model, optimizer)
    remove_stale_temporaries(run)
    write_text(run / HISTORY_FILE, "".join(json.dumps(r) + "\n" for r in history))
    if record["train"] != saved_train:
        write_json(run / RUN_FILE, {**record, "versions": versions()})
    return found.epoch, history
