"""Files: JSON written atomically, strict config parsing, and the names of the files of model and
run directories (one definition each, shared by training, the zoo, the figures and experiments).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any, TypeVar

import torch

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
"""...and the last checkpoint (weights and optimiser state) to resume from."""

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


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename), so a crash leaves no half file.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a.json"
        >>> write_json(path, {"epoch": 3}); read_json(path)
        {'epoch': 3}
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    """Write text atomically (temporary file, then rename): a crash leaves the old file or none.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "page.html"
        >>> write_text(path, "<p>hi</p>"); path.read_text()
        '<p>hi</p>'
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def checked_output(path: str | os.PathLike[str]) -> Path:
    """An output file's path, its folder created; a clear error for a directory or a folder
    that cannot be created or written (checked before any work is done).

    Example:
        >>> checked_output("/")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: output path '/' is a directory; expected a file name
    """
    out = Path(path)
    if out.is_dir():
        raise IterationHeadsError(f"output path {str(out)!r} is a directory; expected a file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise IterationHeadsError(f"cannot create the folder of {str(out)!r}: {err}") from None
    if not os.access(out.parent, os.W_OK):
        raise IterationHeadsError(f"cannot write into {str(out.parent)!r}")
    return out


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
    """
    if not path.is_file():
        raise IterationHeadsError(f"missing file {str(path)!r}")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
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
