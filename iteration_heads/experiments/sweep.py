"""Grids of runs described in a TOML file: axes over any field of the data, model and training
configs (and seeds), fixed settings, and rules that drop or add cells. Every cell is a
:class:`~iteration_heads.experiments.runs.RunSpec`, so it trains into the run cache like the
reproduction's runs (finished cells are skipped on a rerun) and its figures are read back from
its files.

A spec::

    name = "tiny"
    [fixed]
    "data.task" = "copy"
    "train.epochs" = 4
    [axes]
    "model.d_model" = [16, 32]
    "data.max_len" = [4, 6]
    seed = [0, 1]
    [[exclude]]            # a cell matching every field of a rule is dropped
    "model.d_model" = 16
    "data.max_len" = 6

Field names are ``data.<DataConfig field>``, ``model.<ModelConfig field>``,
``train.<TrainConfig field>`` or ``seed`` (the seed of all three). ``model.max_len`` follows
``data.max_len`` unless set; every run uses one thread unless ``train.threads`` says otherwise.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from iteration_heads._io import read_json, write_json, write_text
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.runs import RunSpec, finished, run_all
from iteration_heads.model.transformer import ModelConfig
from iteration_heads.tasks.data import DataConfig
from iteration_heads.training.loop import TrainConfig

CONFIGS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
"""The config each field prefix names."""

SPEC_KEYS = ("name", "fixed", "axes", "exclude", "include")
"""The top-level keys of a sweep spec."""


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
    if name == "seed":
        return name
    prefix, _, rest = name.partition(".")
    if prefix not in CONFIGS or not rest:
        raise IterationHeadsError(
            f"unknown sweep field {name!r}; expected 'seed' or data.<field>, model.<field>, "
            "train.<field>"
        )
    fields = [f.name for f in dataclasses.fields(CONFIGS[prefix])]
    if rest not in fields:
        raise IterationHeadsError(f"unknown sweep field {name!r}; {prefix} fields: {fields}")
    return name


@dataclass(frozen=True)
class SweepSpec:
    """A grid of runs: the product of ``axes`` over ``fixed`` settings, minus the cells that
    match an ``exclude`` rule, plus the ``include`` cells.

    Example:
        >>> spec = SweepSpec.from_dict({"fixed": {"data.task": "copy"},
        ...                             "axes": {"model.d_model": [16, 32], "seed": [0, 1]}})
        >>> [cell.name() for cell in spec.cells()][:2]
        ['copy-cot-d16-L16-2x1-s0-e1000', 'copy-cot-d16-L16-2x1-s1-e1000']
    """

    name: str = "sweep"
    fixed: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    exclude: tuple[dict[str, Any], ...] = ()
    include: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        """Read a parsed spec, checking every key and field name."""
        if not isinstance(data, dict):
            raise IterationHeadsError(f"a sweep spec must be a table, got {type(data).__name__}")
        unknown = sorted(set(data) - set(SPEC_KEYS))
        if unknown:
            raise IterationHeadsError(f"unknown sweep spec keys {unknown}; expected {SPEC_KEYS}")
        fixed, axes = data.get("fixed", {}), data.get("axes", {})
        rules = {"exclude": data.get("exclude", []), "include": data.get("include", [])}
        for key, value in [("fixed", fixed), ("axes", axes)]:
            if not isinstance(value, dict):
                raise IterationHeadsError(f"[{key}] must be a table of field = value")
        for name, values in axes.items():
            if not isinstance(values, list) or not values:
                raise IterationHeadsError(f"axis {name!r} = {values!r}: expected a non-empty list")
        for key, rule_list in rules.items():
            if not isinstance(rule_list, list) or not all(isinstance(r, dict) for r in rule_list):
                raise IterationHeadsError(f"[[{key}]] must be tables of field = value")
        for name in [*fixed, *axes, *(n for rs in rules.values() for r in rs for n in r)]:
            check_field(name)
        overlap = sorted(set(fixed) & set(axes))
        if overlap:
            raise IterationHeadsError(f"fields {overlap} are both fixed and an axis")
        name = data.get("name", "sweep")
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise IterationHeadsError(f"name={name!r}, expected letters, digits, '-' or '_'")
        return cls(name, dict(fixed), dict(axes), tuple(rules["exclude"]), tuple(rules["include"]))

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> SweepSpec:
        """Read a spec file (module docstring), or a clear error naming the file."""
        path = Path(path)
        if not path.is_file():
            raise IterationHeadsError(f"sweep spec {str(path)!r} is not a file")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise IterationHeadsError(
                f"sweep spec {str(path)!r} is not valid TOML: {err}"
            ) from None
        return cls.from_dict(data)

    def settings(self) -> list[dict[str, Any]]:
        """Every cell's settings (fixed merged with one point of the axes), in axis order."""
        names = list(self.axes)
        points = [dict(zip(names, values, strict=True))
                  for values in itertools.product(*(self.axes[n] for n in names))]  # fmt: skip
        kept = [
            {**self.fixed, **point}
            for point in points
            if not any(all(point.get(k, self.fixed.get(k)) == v for k, v in rule.items())
                       for rule in self.exclude)
        ]  # fmt: skip
        return kept + [{**self.fixed, **extra} for extra in self.include]

    def cells(self) -> list[RunSpec]:
        """The run spec of every cell (duplicates removed), or the config error of the first
        cell that is not valid."""
        specs: dict[str, RunSpec] = {}
        for settings in self.settings():
            spec = cell_spec(settings)
            specs.setdefault(spec.key(), spec)
        return list(specs.values())


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


def dry_run(spec: SweepSpec, runs: str | os.PathLike[str]) -> str:
    """The cells of ``spec`` as text, each marked finished (in the ``runs`` cache) or to train.

    Example:
        >>> import tempfile
        >>> spec = SweepSpec.from_dict({"axes": {"seed": [0, 1]}, "fixed": {"data.task": "copy"}})
        >>> print(dry_run(spec, tempfile.mkdtemp()).splitlines()[0])
        sweep 'sweep': 2 cells, 0 finished, 2 to train
    """
    cells = spec.cells()
    done = [finished(cell, runs) for cell in cells]
    lines = [f"sweep {spec.name!r}: {len(cells)} cells, {sum(done)} finished, "
             f"{len(cells) - sum(done)} to train"]  # fmt: skip
    lines += [f"  {'done' if d else 'todo'}  {c.name()}" for c, d in zip(cells, done, strict=True)]
    return "\n".join(lines)


def error_file(cell: RunSpec, runs: str | os.PathLike[str]) -> Path:
    """Where a failed cell's error is recorded: next to its run directory.

    Example:
        >>> error_file(cell_spec({"seed": 1}), "runs").name.endswith(".error.json")
        True
    """
    directory = cell.directory(runs)
    return directory.with_name(directory.name + ".error.json")


def run_sweep(
    spec: SweepSpec,
    runs: str | os.PathLike[str],
    *,
    jobs: int = 1,
    retry_failed: bool = False,
    log: Any = print,
) -> None:
    """Train every unfinished cell of ``spec`` into the ``runs`` cache, ``jobs`` local
    processes at a time (one thread each unless the spec sets ``train.threads``). A cell that
    fails does not stop the others: its error is recorded (:func:`error_file`) and the cell is
    left alone on later runs unless ``retry_failed``."""
    cells = [c for c in spec.cells() if retry_failed or not error_file(c, runs).is_file()]

    def record(cell: RunSpec, error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        write_json(error_file(cell, runs), {"name": cell.name(), "error": message})

    Path(runs).mkdir(parents=True, exist_ok=True)
    run_all(cells, runs, jobs=jobs, log=log, on_error=record)
    for cell in cells:
        if finished(cell, runs):
            error_file(cell, runs).unlink(missing_ok=True)


def collect(spec: SweepSpec, runs: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per cell, read from its run directory: the swept settings, ``status``
    (``done``, ``todo`` or ``failed``, with its ``error``), the final test accuracy, the last layer's iteration peakiness, the
    first epochs where accuracy and the head reached their targets, and the detection verdict.

    Example:
        >>> import tempfile
        >>> spec = SweepSpec.from_dict({"axes": {"seed": [0, 1]}, "fixed": {"data.task": "copy"}})
        >>> collect(spec, tempfile.mkdtemp())[["seed", "status"]].values.tolist()
        [[0, 'todo'], [1, 'todo']]
    """
    rows = []
    for settings, cell in zip(
        spec.settings(), [cell_spec(s) for s in spec.settings()], strict=True
    ):
        row: dict[str, Any] = {name: settings[name] for name in spec.axes if name in settings}
        status = "done" if finished(cell, runs) else "todo"
        failed = error_file(cell, runs)
        if status == "todo" and failed.is_file():
            status = "failed"
            row["error"] = read_json(failed)["error"]
        row |= {"name": cell.name(), "status": status}
        if row["status"] == "done":
            result = cell.result(runs)
            row |= {
                "accuracy": result.accuracy,
                "iteration_peakiness": result.iteration_peakiness,
                "first_epoch_accuracy": result.first_epoch("first_epoch_accuracy"),
                "first_epoch_head": result.first_epoch("first_epoch_iteration_head"),
                "has_circuit": result.has_circuit,
                "epochs": result.epochs,
            }
        rows.append(row)
    return pd.DataFrame(rows)


def write_table(spec: SweepSpec, runs: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write ``<out>/<name>.csv`` and ``<out>/<name>.md`` (atomically) from :func:`collect`."""
    table = collect(spec, runs)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / f"{spec.name}.csv", table.to_csv(index=False))
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    lines = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |"
             for row in table.itertuples(index=False)]  # fmt: skip
    write_text(folder / f"{spec.name}.md", "\n".join([header, rule, *lines]) + "\n")
    return folder / f"{spec.name}.csv"
