"""Save and load models: ``config.json`` + ``model.safetensors`` + ``metadata.json``.

Loading is strict and atomic: a missing, corrupt or mismatched file raises
:class:`~iteration_heads.errors.IterationHeadsError` and no model is returned. No pickle anywhere.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformer_lens.model_bridge import TransformerBridge

from iteration_heads.errors import IterationHeadsError
from iteration_heads.model import ModelConfig, build_model, model_config

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
_METADATA_ATTR = "_iteration_heads_metadata"


def versions() -> dict[str, str]:
    """Versions of the library, TransformerLens, torch and Python, for run records.

    Example:
        >>> sorted(versions())
        ['iteration_heads', 'python', 'torch', 'transformer_lens']
    """
    from iteration_heads import __version__

    return {
        "iteration_heads": __version__,
        "transformer_lens": importlib.metadata.version("transformer-lens"),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename), so a crash leaves no half file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Read a JSON file, raising a clear error when it is missing or corrupt."""
    if not path.is_file():
        raise IterationHeadsError(f"missing file {str(path)!r}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IterationHeadsError(f"corrupt JSON in {str(path)!r}: {err}") from err


def save(
    model: torch.nn.Module,
    directory: str | os.PathLike[str],
    *,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Save a model built by this library to ``directory`` (created if needed).

    ``metadata`` (task, data and training configs, history summary, ...) is stored with the
    library, TransformerLens and torch versions.

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> path = save(model, tempfile.mkdtemp(), metadata={"task": "polynomial"})
        >>> sorted(p.name for p in path.iterdir())
        ['config.json', 'metadata.json', 'model.safetensors']
    """
    config = model_config(model)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path / WEIGHTS_FILE)
    write_json(path / CONFIG_FILE, config.to_dict())
    record = dict(metadata or {})
    record.update(format_version=FORMAT_VERSION, versions=versions())
    write_json(path / METADATA_FILE, record)
    setattr(model, _METADATA_ATTR, record)
    return path


def load(
    directory: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> TransformerBridge:
    """Load a model saved with :func:`save` (strict: every tensor present, of the right shape).

    Raises:
        IterationHeadsError: if the directory or a file is missing, corrupt, or does not match
            the config; nothing is returned half-loaded.

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> again = load(save(model, tempfile.mkdtemp()))
        >>> all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
        ...                                       again.state_dict().values()))
        True
    """
    path = Path(directory)
    if not path.is_dir():
        raise IterationHeadsError(f"model directory {str(path)!r} does not exist")
    config = ModelConfig.from_dict(read_json(path / CONFIG_FILE))
    metadata = read_json(path / METADATA_FILE)
    if not isinstance(metadata, dict):
        raise IterationHeadsError(f"{str(path / METADATA_FILE)!r} must hold a JSON object")
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        raise IterationHeadsError(f"missing file {str(weights_path)!r}")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise IterationHeadsError(f"corrupt weights file {str(weights_path)!r}: {err}") from err
    model = build_model(config, device=device)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        raise IterationHeadsError(
            f"weights in {str(weights_path)!r} do not match {CONFIG_FILE}: "
            f"missing {missing}, unexpected {unexpected}, shape mismatches {wrong}"
        )
    model.load_state_dict(tensors, strict=True)
    setattr(model, _METADATA_ATTR, metadata)
    return model.eval()


def attach_metadata(model: torch.nn.Module, metadata: dict[str, Any]) -> None:
    """Record ``metadata`` (task, data config, ...) on a model in memory, as :func:`save` and
    :func:`load` do; :func:`~iteration_heads.train.train` calls it after training.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> attach_metadata(model, {"task": "parity"})
        >>> model_metadata(model)["task"]
        'parity'
    """
    setattr(model, _METADATA_ATTR, dict(metadata))


def model_metadata(model: torch.nn.Module) -> dict[str, Any]:
    """The metadata a model was saved or loaded with (empty for a freshly built model).

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model_metadata(build_model(ModelConfig(d_model=32, max_len=4)))
        {}
    """
    return dict(getattr(model, _METADATA_ATTR, None) or {})
