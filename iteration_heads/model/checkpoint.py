"""Save and load models: ``config.json`` + ``model.safetensors`` + ``metadata.json``.

Loading is strict and atomic: a missing, corrupt or mismatched file raises
:class:`~iteration_heads.errors.IterationHeadsError` and no model is returned. No pickle anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformer_lens.model_bridge import TransformerBridge

from iteration_heads._io import (
    CONFIG_FILE,
    METADATA_FILE,
    SHIPPED_MODELS_DIR,
    WEIGHTS_FILE,
    read_json,
    versions,
    write_error,
    write_json,
    write_tensors,
)
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.transformer import ModelConfig, build_model, check_device, model_config
from iteration_heads.tasks.data import DataConfig
from iteration_heads.tasks.task import Task, get_task, short_repr

FORMAT_VERSION = 1
_METADATA_ATTR = "_iteration_heads_metadata"


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
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(path, err) from None
    write_tensors(path / WEIGHTS_FILE, dict(model.state_dict()))
    write_json(path / CONFIG_FILE, config.to_dict())
    record = dict(metadata or {})
    record.update(format_version=FORMAT_VERSION, versions=versions())
    write_json(path / METADATA_FILE, record)
    setattr(model, _METADATA_ATTR, record)
    return path


def shipped_models() -> list[str]:
    """Names of the models shipped with the package (see :mod:`iteration_heads.zoo`).

    Example:
        >>> "polynomial" in shipped_models()
        True
    """
    return sorted(p.name for p in SHIPPED_MODELS_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def model_directory(name_or_directory: str | os.PathLike[str]) -> Path:
    """The directory of a saved model: ``name_or_directory`` itself when it exists, else the
    folder of the shipped model of that name.

    Raises:
        IterationHeadsError: when it is neither a directory nor a shipped model's name; the
            message says what it is instead (a file, a broken link, a symlink loop, unreadable).

    Example:
        >>> model_directory("polynomial").name
        'polynomial'
        >>> model_directory("no/such/dir")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: model directory 'no/such/dir' does not exist and is not the name of a shipped model (...)
        >>> model_directory(__file__)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: '...checkpoint.py' is a file, expected a model folder
    """
    if not isinstance(name_or_directory, (str, os.PathLike)) or not str(name_or_directory):
        raise IterationHeadsError(
            f"model {name_or_directory!r}, expected a folder or the name of a shipped model"
        )
    import errno

    path = Path(name_or_directory)
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise IterationHeadsError(
                f"{str(path)!r} is a symlink loop, expected a model folder"
            ) from None
        if err.errno == errno.ENOTDIR:
            raise IterationHeadsError(
                f"{str(path)!r}: a part of this path is a file, expected a model folder"
            ) from None
        if err.errno == errno.EACCES:
            raise IterationHeadsError(
                f"{str(path)!r} cannot be read (permission denied), expected a model folder"
            ) from None
        if path.is_symlink():
            raise IterationHeadsError(
                f"{str(path)!r} is a broken symlink (to {os.readlink(path)!r}), expected a "
                "model folder"
            ) from None
    if path.is_dir():
        return path
    if path.exists():
        raise IterationHeadsError(f"{str(path)!r} is a file, expected a model folder")
    if str(name_or_directory) in shipped_models():
        return SHIPPED_MODELS_DIR / str(name_or_directory)
    raise IterationHeadsError(
        f"model directory {str(path)!r} does not exist and is not the name of a shipped model "
        f"({', '.join(shipped_models())})"
    )


def load(
    name_or_directory: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> TransformerBridge:
    """Load a model saved with :func:`save`, or a shipped model by name (strict: every tensor
    present, of the right shape).

    Raises:
        IterationHeadsError: if the directory or a file is missing or corrupt, a tensor does not
            match the config (name, shape, dtype) or is not finite, or the device is unknown or
            not available; nothing is returned half-loaded.

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> again = load(save(model, tempfile.mkdtemp()))
        >>> all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
        ...                                       again.state_dict().values()))
        True
        >>> load("polynomial").cfg.d_model  # a shipped model, by name
        64
    """
    device = check_device(device)
    path = model_directory(name_or_directory)
    config = ModelConfig.from_dict(read_json(path / CONFIG_FILE))
    metadata = read_json(path / METADATA_FILE)
    check_metadata(path / METADATA_FILE, metadata)
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
        f"{k}: file {tuple(tensors[k].shape)} {tensors[k].dtype} vs config {tuple(v.shape)} "
        f"{v.dtype}"
        for k, v in expected.items()
        if k in tensors and (tensors[k].shape != v.shape or tensors[k].dtype != v.dtype)
    ]
    if missing or unexpected or wrong:
        raise IterationHeadsError(
            f"weights in {str(weights_path)!r} do not match {CONFIG_FILE}: "
            f"missing {missing}, unexpected {unexpected}, shape or dtype mismatches {wrong}"
        )
    broken = [
        k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())
    ]
    if broken:
        raise IterationHeadsError(
            f"weights in {str(weights_path)!r} are not finite (NaN or inf) in {broken[:3]}"
            f"{' and more' if len(broken) > 3 else ''}: the run that saved them diverged"
        )
    model.load_state_dict(tensors, strict=True)
    setattr(model, _METADATA_ATTR, metadata)
    return model.eval()


def check_metadata(path: Path, metadata: Any) -> None:
    """Check the fields of a saved model's ``metadata.json`` (parsed) that the library reads:
    an object; ``task`` a string, the task of its ``data`` config when it has one; ``data`` an
    object with a string ``task``; ``cot`` True or False.

    Example:
        >>> check_metadata(Path("m.json"), {"task": "addition", "data": {"task": "copy"}})
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: 'm.json': task 'addition' is not the task of its data config, 'copy'
    """
    where = repr(str(path))
    if not isinstance(metadata, dict):
        raise IterationHeadsError(f"{where} must hold a JSON object")
    data = metadata.get("data")
    if data is not None and (not isinstance(data, dict) or not isinstance(data.get("task"), str)):
        raise IterationHeadsError(
            f"{where}: data={short_repr(data)}, expected an object with a task"
        )
    task = metadata.get("task")
    if task is not None and not isinstance(task, str):
        raise IterationHeadsError(f"{where}: task={short_repr(task)}, expected a task name")
    if task is not None and data is not None and task != data["task"]:
        raise IterationHeadsError(
            f"{where}: task {task!r} is not the task of its data config, {data['task']!r}"
        )
    if "cot" in metadata and not isinstance(metadata["cot"], bool):
        raise IterationHeadsError(f"{where}: cot={short_repr(metadata['cot'])}, expected a boolean")


def attach_metadata(model: torch.nn.Module, metadata: dict[str, Any]) -> None:
    """Record ``metadata`` (task, data config, ...) on a model in memory, as :func:`save` and
    :func:`load` do; :func:`~iteration_heads.training.loop.train` calls it after training.

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


def data_config(model: torch.nn.Module, *, task: str | Task | None = None) -> DataConfig:
    """The data a library model was trained on, from its metadata; with ``task``, the same
    lengths and seed for that task (a model that was built but never trained needs ``task``).

    This is the one place where a model's metadata becomes its task and data: probes
    (:meth:`~iteration_heads.detection.Probes.from_model`), evaluation and the report use it.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> data_config(build_model(ModelConfig(d_model=32, max_len=6)), task="parity").max_len
        6
        >>> data_config(load("polynomial")).task
        'polynomial'
    """
    config = model_config(model)
    metadata = model_metadata(model)
    if "data" in metadata:
        data = DataConfig.from_dict(metadata["data"])
        if task is None:
            return data
        return DataConfig(task=get_task(task).name, max_len=data.max_len, seed=data.seed)
    if task is not None:
        return DataConfig(task=get_task(task).name, max_len=config.max_len)
    raise IterationHeadsError(
        "the model has no data config in its metadata (built, not trained by this library?); "
        "pass task=..."
    )
