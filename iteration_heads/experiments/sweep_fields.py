"""The fields of a sweep spec: which config each name sets (``data.max_len``, ``seed``...) and
the run spec of one cell's settings (:func:`cell_spec`); used by
:mod:`~iteration_heads.experiments.sweep`.

Example:
    >>> cell_spec({"model.d_model": 16, "seed": 1}).model.d_model
    16
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.runs import RunSpec
from iteration_heads.model.transformer import ModelConfig
from iteration_heads.tasks.data import DataConfig
from iteration_heads.training.loop import TrainConfig

CONFIGS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
"""The config each field prefix names."""

VARIANT = "variant"
"""The column (and rule field) that names a cell's variant."""


def check_field(name: str) -> str:
    """``name`` if it names a config field (``data.max_len``, ``seed``...), else a clear error.

    Example:
        >>> check_field("model.d_model")
        'model.d_model'
        >>> check_field("model.width")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: unknown sweep field 'model.width'; model fields: [...]
    """
    if not isinstance(name, str):
        raise IterationHeadsError(f"sweep field {name!r}: expected a string such as 'seed'")
    if name in ("seed", VARIANT):
        return name
    prefix, _, rest = name.partition(".")
    if prefix not in CONFIGS or not rest:
        raise IterationHeadsError(
            f"unknown sweep field {name!r}; expected 'seed', 'variant' or data.<field>, "
            "model.<field>, train.<field>"
        )
    fields = [f.name for f in dataclasses.fields(CONFIGS[prefix])]
    if rest not in fields:
        raise IterationHeadsError(f"unknown sweep field {name!r}; {prefix} fields: {fields}")
    return name


def check_distinct(what: str, values: list[Any]) -> None:
    """A one-line error naming the first value that ``values`` lists twice.

    Example:
        >>> check_distinct("axis 'seed'", [0, 1, 2, 0])
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: axis 'seed' lists 0 twice ([0, 1, 2, 0]); expected distinct values
    """
    seen = set()
    for value in values:
        token = json.dumps(value, sort_keys=True, default=repr)
        if token in seen:
            shown = repr(values) if len(repr(values)) <= 200 else f"{len(values)} values"
            raise IterationHeadsError(
                f"{what} lists {value!r} twice ({shown}); expected distinct values"
            )
        seen.add(token)


def cell_spec(settings: dict[str, Any]) -> RunSpec:
    """The run spec of one cell's settings (``seed`` sets all three seeds; ``model.max_len``
    follows ``data.max_len``; one thread per run by default).

    Example:
        >>> spec = cell_spec({"data.max_len": 6, "seed": 2})
        >>> spec.model.max_len, spec.train.seed, spec.train.threads
        (6, 2, 1)
    """
    parts: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {"threads": 1}}
    for name, value in settings.items():
        if name == VARIANT:
            continue
        if name == "seed":
            for part in parts.values():
                part["seed"] = value
            continue
        prefix, _, rest = check_field(name).partition(".")
        parts[prefix][rest] = value
    if "max_len" in parts["data"]:
        parts["model"].setdefault("max_len", parts["data"]["max_len"])
    try:
        return RunSpec(
            DataConfig.from_dict(parts["data"]),
            ModelConfig.from_dict(parts["model"]),
            TrainConfig.from_dict(parts["train"]),
        )
    except IterationHeadsError as err:
        raise IterationHeadsError(f"sweep cell {settings}: {err}") from None
