"""Checkpoints to resume from: each a folder ``checkpoint/epoch-N`` renamed into place whole
(weights, optimiser state, a manifest of both), the newest two kept, the newest intact one loaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from iteration_heads._io import (
    CHECKPOINT_DIR,
    METADATA_FILE,
    read_json,
    remove_temporary,
    write_error,
    write_json,
    write_tensors,
)
from iteration_heads.errors import IterationHeadsError

KEEP_CHECKPOINTS = 2
"""Checkpoints kept in a run directory (the newest); resume takes the newest intact one."""


def _checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:06d}"


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    """The checkpoints of ``run`` as ``(epoch, folder)``, newest first (an older layout's single
    checkpoint included).

    Example:
        >>> import tempfile
        >>> checkpoints(Path(tempfile.mkdtemp()))
        []
    """
    root = run / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        name = folder.name
        if folder.is_dir() and name.startswith("epoch-") and name[6:].isdigit():
            found.append((int(name[6:]), folder))
    if (root / "state.json").is_file():  # the single checkpoint of runs written before
        with suppress(IterationHeadsError, KeyError, TypeError, ValueError, OverflowError):
            found.append((int(read_json(root / "state.json")["epoch"]), root))
    return sorted(found, key=lambda item: item[0], reverse=True)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def save_checkpoint(
    run: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    *,
    configs: dict[str, Any] | None = None,
) -> None:
    """Save the weights and the optimiser state after ``epoch`` as ``run/checkpoint/epoch-N``:
    written into a temporary folder (safetensors for tensors, JSON for the rest, a manifest of
    both last), renamed into place whole, then all but the newest :data:`KEEP_CHECKPOINTS`
    removed. A crash at any instant leaves every earlier checkpoint intact. ``configs`` (the
    run's model, data and train configs) go into the manifest, for :func:`check_configs`.

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> optimizer = torch.optim.Adam(model.parameters())
        >>> run = Path(tempfile.mkdtemp())
        >>> for epoch in (5, 6, 7):
        ...     save_checkpoint(run, model, optimizer, epoch)
        >>> [epoch for epoch, _ in checkpoints(run)]
        [7, 6]
        >>> load_checkpoint(run, build_model(ModelConfig(d_model=32, max_len=4, seed=1)),
        ...                 torch.optim.Adam(model.parameters()))
        7
    """
    root = run / CHECKPOINT_DIR
    final = root / _checkpoint_name(epoch)
    if not final.is_dir():  # else the same epoch: the same state (training is deterministic)
        _write_checkpoint(root, final, model, optimizer, epoch, configs)
    for stale in root.iterdir():  # interrupted writes of earlier processes
        if stale.name.endswith(".tmp"):
            remove_temporary(stale)
    for _, old in checkpoints(run)[KEEP_CHECKPOINTS:]:  # also after a kill before this step
        if old != root:
            shutil.rmtree(old, ignore_errors=True)


def _write_checkpoint(
    root: Path,
    final: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    configs: dict[str, Any] | None,
) -> None:
    """Write one checkpoint into a temporary folder and rename it to ``final``."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}.", suffix=".tmp"))
    except OSError as err:
        raise write_error(root, err) from None
    try:
        state = optimizer.state_dict()
        tensors: dict[str, torch.Tensor] = {}
        scalars: dict[str, Any] = {}
        for index, values in state["state"].items():
            for name, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{index}.{name}"] = value
                else:
                    scalars[f"{index}.{name}"] = value
        write_tensors(tmp / "model.safetensors", dict(model.state_dict()))
        write_tensors(tmp / "optimizer.safetensors", tensors)
        write_json(
            tmp / "optimizer.json", {"param_groups": state["param_groups"], "scalars": scalars}
        )
        manifest = {
            f: {"bytes": (tmp / f).stat().st_size, "sha256": _digest(tmp / f)}
            for f in CHECKPOINT_FILES
        }
        kept = (
            {k: configs[k] for k in ("model", "data", "train") if k in configs} if configs else {}
        )
        write_json(tmp / "state.json", {"epoch": epoch, "files": manifest, "configs": kept or None})
        os.chmod(tmp, 0o755)
        os.rename(tmp, final)
    except OSError as err:
        raise write_error(final, err) from None
    except IterationHeadsError as err:  # a file of it: named in its final place
        shutil.rmtree(tmp, ignore_errors=True)  # first: the free space reported is without it
        raise IterationHeadsError(str(err).replace(str(tmp), str(final))) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


CHECKPOINT_FILES = ("model.safetensors", "optimizer.safetensors", "optimizer.json")
"""The files of a checkpoint folder, each listed in its manifest ``state.json`` (size, SHA-256)."""


@dataclass(frozen=True)
class Checkpoint:
    """An intact checkpoint read from disk (:func:`read_checkpoint`), not yet loaded."""

    epoch: int
    folder: Path
    weights: dict[str, torch.Tensor]
    state: dict[str, Any]
    configs: dict[str, Any] | None = None  # the run's configs when it was written (if stored)


def read_checkpoint(run: Path) -> Checkpoint:
    """The newest intact checkpoint of ``run``, read and checked but loaded into nothing. A
    checkpoint is intact when its manifest ``state.json`` names its epoch and every file of
    :data:`CHECKPOINT_FILES`, each with the size and SHA-256 it has, and the files parse; any
    other is skipped with a warning.

    Raises:
        IterationHeadsError: when no checkpoint is intact.

    Example:
        >>> import tempfile
        >>> read_checkpoint(Path(tempfile.mkdtemp()))
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: no checkpoint to resume from in '...'
    """
    found = checkpoints(run)
    if not found:
        raise IterationHeadsError(f"no checkpoint to resume from in {str(run / CHECKPOINT_DIR)!r}")
    problems = []
    for epoch, folder in found:
        try:
            weights, state, configs = _read_checkpoint(folder, epoch)
        except IterationHeadsError as err:
            problems.append(str(err))
            warnings.warn(f"skipped a damaged checkpoint: {err}", stacklevel=2)
            continue
        return Checkpoint(epoch, folder, weights, state, configs)
    raise IterationHeadsError(
        f"no intact checkpoint in {str(run / CHECKPOINT_DIR)!r}: " + "; ".join(problems)
    )


def load_checkpoint(run: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load the newest intact checkpoint of ``run`` (:func:`read_checkpoint`) into ``model``
    and ``optimizer``; returns its epoch. Nothing is loaded half.

    Raises:
        IterationHeadsError: when no checkpoint is intact, or the newest intact one does not
            match the model.

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> load_checkpoint(Path(tempfile.mkdtemp()), model, torch.optim.Adam(model.parameters()))
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: no checkpoint to resume from in '...'
    """
    found = read_checkpoint(run)
    load_into(found, model, optimizer)
    return found.epoch


def check_manifest(folder: Path, meta: Any, epoch: int | None = None) -> None:
    """Check a checkpoint's manifest (``state.json``, parsed) against the files of ``folder``:
    it must name ``epoch`` and every file of :data:`CHECKPOINT_FILES` with its size and SHA-256.

    Example:
        >>> check_manifest(Path("ckpt"), {"epoch": 3, "files": {}})
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: 'ckpt': its manifest state.json does not list model.safetensors
    """
    where = f"{str(folder)!r}: its manifest state.json"
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise IterationHeadsError(f"{where} is not an object with files")
    shown = meta.get("epoch")
    if type(shown) is not int or (epoch is not None and shown != epoch):
        raise IterationHeadsError(f"{where} names epoch {_short(shown)}, expected {epoch}")
    for name in CHECKPOINT_FILES:
        expected = meta["files"].get(name)
        if expected is None:
            raise IterationHeadsError(f"{where} does not list {name}")
        size = expected.get("bytes") if isinstance(expected, dict) else None
        digest = expected.get("sha256") if isinstance(expected, dict) else None
        if type(size) is not int or not isinstance(digest, str):
            raise IterationHeadsError(
                f"{where} lists {name} as {_short(expected)}; expected bytes, sha256"
            )
        path = folder / name
        if not path.is_file():
            raise IterationHeadsError(f"{str(folder)!r}: {name} is missing")
        if path.stat().st_size != size or _digest(path) != digest:
            raise IterationHeadsError(f"{str(folder)!r}: {name} is not the file its manifest lists")


def _short(value: Any) -> str:
    shown = " ".join(repr(value).split())
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _read_checkpoint(
    folder: Path, epoch: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any] | None]:
    """Weights, optimiser state and configs of one checkpoint folder, checked against its
    manifest."""
    meta = read_json(folder / "state.json")
    check_manifest(folder, meta, epoch)
    configs = meta.get("configs")
    if configs is not None and not (
        isinstance(configs, dict) and all(isinstance(v, dict) for v in configs.values())
    ):
        raise IterationHeadsError(
            f"{str(folder)!r}: its manifest state.json holds configs={_short(configs)}, "
            "expected an object of config objects"
        )
    optimizer_meta = read_json(folder / "optimizer.json")
    try:
        weights = load_file(str(folder / "model.safetensors"))
        tensors = load_file(str(folder / "optimizer.safetensors"))
        state: dict[int, dict[str, Any]] = {}
        for key, value in [*tensors.items(), *optimizer_meta["scalars"].items()]:
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        groups = optimizer_meta["param_groups"]
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise TypeError("param_groups is not a list of objects")
    except Exception as err:
        reason = " ".join(str(err).split())[:200]
        raise IterationHeadsError(f"corrupt checkpoint in {str(folder)!r}: {reason}") from None
    return weights, {"state": state, "param_groups": groups}, configs


RESUMABLE_CHANGES = ("epochs", "max_steps")
"""Train config fields a resumed run may change (its budget); every other must be the same."""


def check_configs(run: Path, found: Checkpoint, record: dict[str, Any]) -> None:
    """Check that the checkpoint ``found`` was written by the run ``record`` describes (its
    ``run.json``): the configs stored in its manifest must equal the record's (train fields
    other than :data:`RESUMABLE_CHANGES` included). A checkpoint written before configs were
    stored is compared with the run's saved model metadata, when there is one. A difference is
    a one-line error naming the first field that differs.

    Example:
        >>> found = Checkpoint(3, Path("ckpt"), {}, {}, {"data": {"task": "copy"}})
        >>> check_configs(Path("run"), found, {"data": {"task": "parity"}})
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: cannot resume 'run': run.json data.task is 'parity', but its checkpoint 'ckpt' was written with 'copy'; restore run.json, or train again into a new folder (nothing was changed)
    """
    stored, source = found.configs, f"its checkpoint {str(found.folder)!r}"
    if stored is None:
        metadata = read_json(run / METADATA_FILE) if (run / METADATA_FILE).is_file() else None
        data = metadata.get("data") if isinstance(metadata, dict) else None
        stored, source = ({"data": data} if data is not None else {}), f"its {METADATA_FILE}"
    for key, then in stored.items():
        now = record.get(key)
        if not isinstance(now, dict):
            continue  # read_run_record has checked the record's configs
        names = sorted(set(then) | set(now), key=str)
        for name in names:
            if key == "train" and name in RESUMABLE_CHANGES:
                continue
            if then.get(name) != now.get(name):
                raise IterationHeadsError(
                    f"cannot resume {str(run)!r}: run.json {key}.{name} is "
                    f"{_short(now.get(name))}, but {source} was written with "
                    f"{_short(then.get(name))}; restore run.json, or train again into a new "
                    "folder (nothing was changed)"
                )


def load_into(found: Checkpoint, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load a checkpoint read by :func:`read_checkpoint` into ``model`` and ``optimizer``; on
    a mismatch, nothing changes.

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> optimizer = torch.optim.Adam(model.parameters())
        >>> run = Path(tempfile.mkdtemp())
        >>> save_checkpoint(run, model, optimizer, 2)
        >>> load_into(read_checkpoint(run), model, optimizer)
    """
    _load_into(found.folder, model, optimizer, found.weights, found.state)


def _load_into(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    weights: dict[str, torch.Tensor],
    state: dict[str, Any],
) -> None:
    """Load a checkpoint read by :func:`_read_checkpoint`; on a mismatch, nothing changes."""
    expected = model.state_dict()
    wrong = [
        k
        for k, v in expected.items()
        if k in weights and (weights[k].shape != v.shape or weights[k].dtype != v.dtype)
    ]
    if set(weights) != set(expected) or wrong:
        raise IterationHeadsError(
            f"checkpoint in {str(folder)!r} does not match the model (tensors {sorted(set(weights) ^ set(expected)) + wrong})"
        )
    before = {k: v.detach().clone() for k, v in expected.items()}
    try:
        model.load_state_dict(weights, strict=True)
        optimizer.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
        model.load_state_dict(before, strict=True)
        raise IterationHeadsError(
            f"checkpoint in {str(folder)!r} does not match the model: {err}"
        ) from None
