"""Files: JSON written atomically, strict config parsing, and the names of the files of model and
run directories (one definition each, shared by training, the zoo, the figures and experiments).
"""

from __future__ import annotations

import dataclasses
import errno
import importlib.metadata
import json
import os
import platform
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import save_file

from iteration_heads.errors import IterationHeadsError

CONFIG_FILE = "config.json"
"""A model directory: the architecture (:class:`~iteration_heads.model.transformer.ModelConfig`)..."""
WEIGHTS_FILE = "model.safetensors"
"""...the weights..."""
METADATA_FILE = "metadata.json"
"""...and what the model is: task, data and training configs, seed, versions, figures."""
RUN_FILE = "run.json"
"""A run directory also holds its configs and versions..."""
HISTORY_FILE = "history.jsonl"
"""...one JSON record per evaluation..."""
CHECKPOINT_DIR = "checkpoint"
"""...and its last checkpoints (weights and optimiser state) to resume from."""
LOCK_FILE = ".lock"
"""A run directory is locked by the process training in it (this file, through filelock)..."""
LOCK_HOLDER_FILE = ".lock.holder"
"""...which records itself here (process, host, start) for the error another process gets."""

SHIPPED_MODELS_DIR = Path(__file__).parent / "zoo"
"""Where the shipped models live, one folder each (see :mod:`iteration_heads.zoo`)."""

T = TypeVar("T")


def versions() -> dict[str, str]:
    """Versions of the library, TransformerLens, torch and Python, for run records.

    Example:
        >>> sorted(versions())
        ['iteration_heads', 'python', 'torch', 'transformer_lens']
    """
    return {
        "iteration_heads": importlib.metadata.version("iteration-heads"),
        "transformer_lens": importlib.metadata.version("transformer-lens"),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


FILE_MODE = 0o666 & ~_umask()
"""Files are created with the mode ``open()`` would give them (0644 under the usual umask)."""


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename) to disk; a no-op where folders cannot be opened."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_error(path: Path, err: OSError) -> IterationHeadsError:
    """The one-line error for a failed write (a full disk, a read-only folder, ...).

    Example:
        >>> import errno
        >>> str(write_error(Path("run/model.safetensors"), OSError(errno.ENOSPC, "No space left on device")))
        "cannot write 'run/model.safetensors': No space left on device (free some space and run again; what was written before is intact)"
    """
    reason = err.strerror or str(err)
    hint = (
        " (free some space and run again; what was written before is intact)"
        if err.errno == errno.ENOSPC
        else ""
    )
    return IterationHeadsError(f"cannot write {str(path)!r}: {reason}{hint}")


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder, which
    is flushed to disk (fsync) and renamed over ``path``. A crash at any instant leaves the old
    file or the new one, never a mix; a failed write (a full disk) leaves the old file and no
    temporary file, and raises one line (:func:`write_error`).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a.txt"
        >>> atomic_write(path, lambda tmp: tmp.write_text("new"))
        >>> path.read_text(), [p.name for p in path.parent.iterdir()]
        ('new', ['a.txt'])
    """
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise write_error(path, err) from None
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        tmp.unlink(missing_ok=True)


def append_line(path: Path, line: str) -> None:
    """Append one line to a text file and flush it to disk. A crash in the middle leaves at most
    a torn last line, which :func:`read_jsonl` drops with a warning.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "h.jsonl"
        >>> append_line(path, '{"epoch": 0}'); append_line(path, '{"epoch": 10}')
        >>> path.read_text()
        '{"epoch": 0}\\n{"epoch": 10}\\n'
    """
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        raise write_error(path, err) from None


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (:func:`atomic_write`), so a crash leaves no half file.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a.json"
        >>> write_json(path, {"epoch": 3}); read_json(path)
        {'epoch': 3}
    """
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_text(path: Path, text: str) -> None:
    """Write text atomically (:func:`atomic_write`): a crash leaves the old file or the new.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "page.html"
        >>> write_text(path, "<p>hi</p>"); path.read_text()
        '<p>hi</p>'
    """
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write tensors as safetensors, atomically (:func:`atomic_write`).

    Example:
        >>> import tempfile
        >>> from safetensors.torch import load_file
        >>> path = Path(tempfile.mkdtemp()) / "w.safetensors"
        >>> write_tensors(path, {"w": torch.ones(2)}); load_file(str(path))["w"].tolist()
        [1.0, 1.0]
    """
    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(contiguous, str(tmp)))


def checked_output(path: str | os.PathLike[str]) -> Path:
    """An output file's path, checked before any work is done and without touching the disk: a
    clear error for a directory, for a file where a folder must be, or for a folder that cannot
    be written. Missing folders are created when the file is written
    (:func:`write_output_text`).

    Example:
        >>> checked_output("/")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: output path '/' is a directory; expected a file name
    """
    out = Path(path)
    if out.is_dir():
        raise IterationHeadsError(f"output path {str(out)!r} is a directory; expected a file name")
    existing = out.parent.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise IterationHeadsError(
            f"cannot create the folder of {str(out)!r}: {str(existing)!r} is a file"
        )
    if not os.access(existing, os.W_OK):
        raise IterationHeadsError(f"cannot write into {str(existing)!r}")
    return out


def write_output_text(path: Path, text: str) -> None:
    """:func:`write_text` into ``path``, creating its missing folders first (for outputs checked
    by :func:`checked_output`).

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "new" / "a.txt"
        >>> write_output_text(out, "x")
        >>> out.read_text()
        'x'
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(path, err) from None
    write_text(path, text)


def read_json(path: Path) -> Any:
    """Read a JSON file, raising a clear error when it is missing or corrupt.

    Example:
        >>> read_json(Path("no/such/file.json"))
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: missing file 'no/such/file.json'
    """
    if not path.is_file():
        raise IterationHeadsError(f"missing file {str(path)!r}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IterationHeadsError(f"corrupt JSON in {str(path)!r}: {err}") from err


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (``history.jsonl``), with a clear error for a bad line.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "h.jsonl"
        >>> _ = path.write_text('{"epoch": 0}\\n{"epoch": 10}\\n')
        >>> [r["epoch"] for r in read_jsonl(path)]
        [0, 10]

        A torn last line (no newline: a crash in the middle of a write) is dropped with a
        warning; a bad line anywhere else is an error.
    """
    if not path.is_file():
        raise IterationHeadsError(f"missing file {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise IterationHeadsError(f"corrupt text in {str(path)!r}: {err}") from None
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines) and not text.endswith("\n"):  # torn by a crash
                warnings.warn(
                    f"{path}: dropped a torn last line (a crash in the middle of a write)",
                    stacklevel=2,
                )
                break
            raise IterationHeadsError(
                f"corrupt JSON in {str(path)!r}, line {number}: {err}"
            ) from err
    return records


def strict_from_dict(cls: type[T], data: Any) -> T:
    """Build the dataclass ``cls`` from a dictionary; unknown keys and bad values are errors.

    Example:
        >>> from iteration_heads import DataConfig
        >>> strict_from_dict(DataConfig, {"task": "parity", "max_len": 4}).max_len
        4
        >>> strict_from_dict(DataConfig, {"max_length": 4})
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: unknown DataConfig fields ['max_length']; expected some of [...]
    """
    name = cls.__name__
    if not isinstance(data, dict):
        raise IterationHeadsError(f"{name} must be a JSON object, got {type(data).__name__}")
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise IterationHeadsError(f"unknown {name} fields {unknown}; expected some of {fields}")
    try:
        return cls(**data)
    except TypeError as err:
        raise IterationHeadsError(f"bad {name} {data!r}: {err}") from err
