"""The files of a run directory: configs, evaluation history, the checkpoint to resume from.

A run directory holds::

    run.json            model, data and training configs, seed, versions
    history.jsonl       one JSON record per evaluation (epoch 0, every eval_every, the last)
    checkpoint/         weights + optimizer state of the last checkpoint (for resume)
    config.json, model.safetensors, metadata.json   the final model (see iteration_heads.load)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from iteration_heads._io import (
    CHECKPOINT_DIR,
    HISTORY_FILE,
    RUN_FILE,
    read_json,
    read_jsonl,
    versions,
    write_json,
)
from iteration_heads.errors import IterationHeadsError
from iteration_heads.training.metrics import has_iteration_head, reaches_accuracy


def read_history(run: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The evaluation records of a run directory, oldest first.

    Example:
        >>> from iteration_heads.model import model_directory
        >>> [r["epoch"] for r in read_history(model_directory("polynomial"))][:3]
        [0, 10, 20]
    """
    return read_jsonl(Path(run) / HISTORY_FILE)


def append_history(run: Path, record: dict[str, Any]) -> None:
    """Add one evaluation record to ``history.jsonl`` (one line).

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> append_history(run, {"epoch": 0}); append_history(run, {"epoch": 10})
        >>> [r["epoch"] for r in read_history(run)]
        [0, 10]
    """
    with open(run / HISTORY_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


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

    def first(pred: Callable[[dict[str, Any]], bool]) -> int | None:
        return next((r["epoch"] for r in history if pred(r["test"]["summary"])), None)

    last = history[-1]
    return {
        "epochs": last["epoch"],
        "test": last["test"]["summary"],
        "train": last["train"]["summary"],
        "train_seconds": last["train_seconds"],
        "eval_seconds": last["eval_seconds"],
        "first_epoch_accuracy": first(reaches_accuracy),
        "first_epoch_iteration_head": first(has_iteration_head),
        "first_epoch_both": first(at_target),
    }


def prepare_run(
    run: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    record: dict[str, Any],
    resume: bool,
) -> tuple[int, list[dict[str, Any]]]:
    """Create the run directory (``run.json``, an empty history), or, when resuming, check that
    the configs match (all but ``epochs``), reload the last checkpoint and keep the history up to
    it. Returns the epoch to start from and the history so far.

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> optimizer = torch.optim.Adam(model.parameters())
        >>> run = Path(tempfile.mkdtemp())
        >>> prepare_run(run, model, optimizer, {"model": {}, "data": {}, "train": {}}, False)
        (0, [])
        >>> sorted(p.name for p in run.iterdir())
        ['history.jsonl', 'run.json']
    """
    run.mkdir(parents=True, exist_ok=True)
    existing = run / RUN_FILE
    if not resume:
        if existing.exists():
            raise IterationHeadsError(
                f"run directory {str(run)!r} already holds a run; pass resume=True "
                "(--resume) to continue it, or choose another directory"
            )
        write_json(existing, {**record, "versions": versions()})
        (run / HISTORY_FILE).write_text("")
        return 0, []
    saved = read_json(existing)
    for key in ("model", "data"):
        if saved.get(key) != record[key]:
            raise IterationHeadsError(
                f"cannot resume {str(run)!r}: its {key} config differs from this one"
            )
    if {**saved.get("train", {}), "epochs": None} != {**record["train"], "epochs": None}:
        raise IterationHeadsError(
            f"cannot resume {str(run)!r}: its train config differs (other than epochs)"
        )
    write_json(existing, {**record, "versions": versions()})
    epoch = load_checkpoint(run, model, optimizer)
    history = [r for r in read_jsonl(run / HISTORY_FILE) if r["epoch"] <= epoch]
    (run / HISTORY_FILE).write_text("".join(json.dumps(r) + "\n" for r in history))
    return epoch, history


def save_checkpoint(
    run: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int
) -> None:
    """Save the weights and the optimiser state after ``epoch`` into ``run/checkpoint``
    (safetensors for tensors, JSON for the rest; :func:`load_checkpoint` reads it back).

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> optimizer = torch.optim.Adam(model.parameters())
        >>> run = Path(tempfile.mkdtemp())
        >>> save_checkpoint(run, model, optimizer, 7)
        >>> load_checkpoint(run, build_model(ModelConfig(d_model=32, max_len=4, seed=1)),
        ...                 torch.optim.Adam(model.parameters()))
        7
    """
    ckpt = run / CHECKPOINT_DIR
    ckpt.mkdir(exist_ok=True)
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        str(ckpt / "model.safetensors"),
    )
    save_file(tensors, str(ckpt / "optimizer.safetensors"))
    write_json(ckpt / "optimizer.json", {"param_groups": state["param_groups"], "scalars": scalars})
    write_json(ckpt / "state.json", {"epoch": epoch})


def load_checkpoint(run: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load the last checkpoint of ``run`` into ``model`` and ``optimizer``; returns its epoch.

    Raises:
        IterationHeadsError: when there is no checkpoint, or it is corrupt or does not match.

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> load_checkpoint(Path(tempfile.mkdtemp()), model, torch.optim.Adam(model.parameters()))
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: no checkpoint to resume from in '...'
    """
    ckpt = run / CHECKPOINT_DIR
    if not (ckpt / "state.json").is_file():
        raise IterationHeadsError(f"no checkpoint to resume from in {str(ckpt)!r}")
    epoch = int(read_json(ckpt / "state.json")["epoch"])
    meta = read_json(ckpt / "optimizer.json")
    try:
        weights = load_file(str(ckpt / "model.safetensors"))
        tensors = load_file(str(ckpt / "optimizer.safetensors"))
    except Exception as err:
        raise IterationHeadsError(f"corrupt checkpoint in {str(ckpt)!r}: {err}") from err
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    try:
        model.load_state_dict(weights, strict=True)
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (RuntimeError, ValueError, KeyError) as err:
        raise IterationHeadsError(
            f"checkpoint in {str(ckpt)!r} does not match the model: {err}"
        ) from err
    return epoch
