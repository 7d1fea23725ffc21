"""The fields of a sweep spec: which config each name sets (``data.max_len``, ``seed``...) and
the run spec of one cell's settings (:func:`cell_spec`); used by
:mod:`~iteration_heads.runs.sweep`.

Example:
    >>> cell_spec({"model.d_model": 16, "seed": 1}).model.d_model
    16
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.transformer import ModelConfig
from iteration_heads.runs.specs import RunSpec
from iteration_heads.tasks.data import DataConfig
from iteration_heads.training.loop import TrainConfig
from iteration_heads.training.recipe import (
    RECIPE_HEADS_PER_LAYER,
    RECIPE_LR,
    RECIPE_WARMUP_STEPS,
)

CONFIGS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
"""The config each field prefix names."""

VARIANT = "variant"
"""The column (and rule field) that names a cell's variant."""

RECIPES = ("library", "paper")
"""The recipes a sweep spec may start from (its top-level ``recipe``): ``library``, the
recipe of ``iteration-heads train`` (:mod:`~iteration_heads.training.recipe`: 2 heads per
layer, Adam 1e-3, 200-step warm-up), or ``paper``, the configs' dataclass defaults (1 head per
layer, Adam 3e-4, no warm-up). A field the spec sets wins over either."""


def check_recipe(recipe: object) -> str:
    """``recipe`` if it is one of :data:`RECIPES`, else a one-line error.

    Example:
        >>> check_recipe("paper")
        'paper'
        >>> check_recipe("Library")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: recipe='Library', expected 'library' or 'paper'
    """
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise IterationHeadsError(f"recipe={recipe!r}, expected 'library' or 'paper'")
    return recipe


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


def cell_spec(settings: dict[str, Any], recipe: str = "library") -> RunSpec:
    """The run spec of one cell's settings on top of ``recipe`` (:data:`RECIPES`; ``seed``
    sets the three seeds that the cell does not set itself (``data.seed`` = 0 keeps one data
    set over the seeds); ``model.max_len`` follows ``data.max_len``; one thread per run by
    default).

    Example:
        >>> spec = cell_spec({"data.max_len": 6, "seed": 2})
        >>> spec.model.max_len, spec.train.seed, spec.train.threads
        (6, 2, 1)
        >>> spec = cell_spec({"data.seed": 0, "seed": 2})
        >>> spec.data.seed, spec.model.seed, spec.train.seed
        (0, 2, 2)
        >>> [(s.model.n_heads, s.train.lr, s.train.warmup_steps)
        ...  for s in (spec, cell_spec({"data.max_len": 6, "seed": 2}, recipe="paper"))]
        [(2, 0.001, 200), (1, 0.0003, 0)]
    """
    check_recipe(recipe)
    parts: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {"threads": 1}}
    if recipe == "library":
        parts["model"]["n_heads"] = RECIPE_HEADS_PER_LAYER
        parts["train"] |= {"lr": RECIPE_LR, "warmup_steps": RECIPE_WARMUP_STEPS}
    for name, value in settings.items():
        if name == VARIANT:
            continue
        if name == "seed":
            for part in parts.values():
                part.setdefault("seed", value)  # data.seed and the like win, in any order
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
