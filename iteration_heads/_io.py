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
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
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


def _megabytes(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1e6:.1f} MB"
    return f"{size / 1e3:.0f} kB" if size >= 1_000 else f"{size} bytes"


def free_space(path: Path) -> int | None:
    """Bytes free on the file system of ``path`` (its nearest existing folder); None when
    unknown.

    Example:
        >>> free_space(Path(".")) > 0
        True
    """
    folder = path.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def write_error(path: Path, err: OSError, needed: int | None = None) -> IterationHeadsError:
    """The one-line error for a failed write (a full disk, a read-only folder, ...); on a full
    disk it says how much free space the file needs (``needed`` bytes) and how much there is.

    Example:
        >>> import errno
        >>> str(write_error(Path("run/model.safetensors"), OSError(errno.ENOSPC, "No space left on device")))
        "cannot write 'run/model.safetensors': No space left on device (free some space and run again; what was written before is intact)"
        >>> str(write_error(Path("/no/such/file"), OSError(errno.ENOSPC, "No space left on device"), 2_500_000))  # doctest: +ELLIPSIS
        "cannot write '/no/such/file': No space left on device (it needs 2.5 MB of free space, ... are free; free some space and run again; what was written before is intact)"
    """
    reason = err.strerror or str(err)
    hint = ""
    if err.errno == errno.ENOSPC:
        hint = " (free some space and run again; what was written before is intact)"
        if needed is not None:
            free = free_space(path)
            shown = "an unknown amount" if free is None else _megabytes(free)
            hint = f" (it needs {_megabytes(needed)} of free space, {shown} are free; {hint[2:]}"
    return IterationHeadsError(f"cannot write {str(path)!r}: {' '.join(reason.split())}{hint}")


def _os_error(err: Exception) -> OSError:
    """An error of a writer that is not an OSError (safetensors' SafetensorError wraps the
    operating system's) as the OSError it reports."""
    code = re.search(r"os error (\d+)|code: (\d+)", str(err))
    if code:
        number = int(code.group(1) or code.group(2))
        return OSError(number, os.strerror(number))
    return OSError(errno.EIO, str(err))


def atomic_write(path: Path, write: Callable[[Path], object], size: int | None = None) -> None:
    """Write ``path`` atomically: ``write(tmp)`` fills ``.NAME.XXXXXXXX.tmp/NAME``, a private
    folder beside ``path`` that also holds what the writer stages next to its file (safetensors'
    own ``.tmpXXXXXX``); the file is moved out to ``.NAME.YYYYYYYY.tmp``, the folder removed,
    and the file flushed (fsync) and renamed over ``path``, last. A crash leaves the old file
    or the new one, never a mix, and nothing else once ``path`` is new (before, temporaries
    named as :data:`TEMPORARY_NAME` says). A failed write (a full disk) leaves the old file
    and no temporary, and raises one line (:func:`write_error`: about ``size`` bytes needed).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a.txt"
        >>> atomic_write(path, lambda tmp: tmp.write_text("new"))
        >>> path.read_text(), [p.name for p in path.parent.iterdir()]
        ('new', ['a.txt'])
    """
    staging: Path | None = None
    tmp: Path | None = None
    try:
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        tmp = Path(name)
        written = staging / path.name
        write(written)
        os.replace(written, tmp)
        shutil.rmtree(staging)  # before ``path`` is replaced: then no temporary is left
        staging = None
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb") as flushed:
            os.fsync(flushed.fileno())
        os.replace(tmp, path)
        tmp = None
        _sync_folder(path.parent)
    except OSError as err:
        _remove_all(staging, tmp)  # first: the free space reported is without them
        raise write_error(path, err, size) from None
    finally:
        _remove_all(staging, tmp)


def _remove_all(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            remove_temporary(path)


TEMPORARY_NAME = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.tmp")
"""What an interrupted write of ``NAME`` leaves (:func:`atomic_write`, a checkpoint's folder)."""


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is what an interrupted write left (:data:`TEMPORARY_NAME`).

    Example:
        >>> is_temporary(Path(".run.json.k2j4x9_a.tmp")), is_temporary(Path("x.tmp"))
        (True, False)
    """
    return TEMPORARY_NAME.fullmatch(path.name) is not None


def remove_temporary(path: Path) -> None:
    """Remove what an interrupted write left: a temporary folder and what it holds, or a file.

    Example:
        >>> import tempfile
        >>> staging = Path(tempfile.mkdtemp()) / ".a.json.k2j4x9_a.tmp"
        >>> staging.mkdir(); _ = (staging / "a.json").write_text("{")
        >>> remove_temporary(staging); staging.exists()
        False
    """
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
        raise write_error(path, err, len(line.encode("utf-8")) + 1) from None


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (:func:`atomic_write`), so a crash leaves no half file.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a.json"
        >>> write_json(path, {"epoch": 3}); read_json(path)
        {'epoch': 3}
    """
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write text atomically (:func:`atomic_write`): a crash leaves the old file or the new.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "page.html"
        >>> write_text(path, "<p>hi</p>"); path.read_text()
        '<p>hi</p>'
    """
    encoded = text.encode("utf-8")
    atomic_write(path, lambda tmp: tmp.write_bytes(encoded), len(encoded))


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

    def write(tmp: Path) -> None:
        try:
            save_file(contiguous, str(tmp))
        except SafetensorError as err:  # a full disk, as safetensors reports it
            raise _os_error(err) from None

    size = sum(v.numel() * v.element_size() + 100 + len(k) for k, v in contiguous.items())
    atomic_write(path, write, size)


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
    write_output_bytes(path, text.encode("utf-8"))


def write_output_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` into ``path`` atomically (:func:`atomic_write`), creating its missing
    folders first (for outputs checked by :func:`checked_output`).

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "new" / "a.png"
        >>> write_output_bytes(out, b"\\x89PNG")
        >>> out.read_bytes()
        b'\\x89PNG'
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(path, err) from None
    atomic_write(path, lambda tmp: tmp.write_bytes(data), len(data))


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
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:  # bad JSON or text, too deep, too long a number
        raise IterationHeadsError(f"corrupt JSON in {str(path)!r}: {_reason(err)}") from None
    except OSError as err:
        raise IterationHeadsError(f"cannot read {str(path)!r}: {err.strerror or err}") from None


def _reason(err: BaseException) -> str:
    if isinstance(err, RecursionError):
        return "nested too deeply"
    return " ".join(str(err).split())[:200]


def read_jsonl(path: Path) -> list[Any]:
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
    return [record for _, record in read_jsonl_lines(path)]


def read_jsonl_lines(path: Path) -> list[tuple[int, Any]]:
    """:func:`read_jsonl` with the line number of each record (blank lines are skipped).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "h.jsonl"
        >>> _ = path.write_text('{"epoch": 0}\\n\\n{"epoch": 10}\\n')
        >>> read_jsonl_lines(path)
        [(1, {'epoch': 0}), (3, {'epoch': 10})]
    """
    if not path.is_file():
        raise IterationHeadsError(f"missing file {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise IterationHeadsError(f"corrupt text in {str(path)!r}: {err}") from None
    except OSError as err:
        raise IterationHeadsError(f"cannot read {str(path)!r}: {err.strerror or err}") from None
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except (ValueError, RecursionError) as err:
            if number == len(lines) and not text.endswith("\n"):  # torn by a crash
                warnings.warn(
                    f"{path}: dropped a torn last line (a crash in the middle of a write)",
                    stacklevel=3,
                )
                break
            raise IterationHeadsError(
                f"corrupt JSON in {str(path)!r}, line {number}: {_reason(err)}"
            ) from None
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
