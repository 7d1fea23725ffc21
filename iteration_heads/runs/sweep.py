"""Grids of runs described in a TOML file: axes over any field of the data, model and training
configs (and seeds), fixed settings, and rules that drop or add cells. Every cell is a
:class:`~iteration_heads.runs.specs.RunSpec`, so it trains into the run cache like the
reproduction's runs (finished cells are skipped on a rerun) and its figures are read back from
its files.

A spec::

    name = "tiny"
    recipe = "library"     # optional: the default; "paper" starts from the paper's settings
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

    [variants]             # optional: named bundles of settings, one more axis
    "2 layers, CoT" = {}
    "no CoT" = {"data.cot" = false}
    [figure]               # optional: the heatmaps of --collect
    x = "data.max_len"
    y = "model.d_model"

Field names are ``data.<DataConfig field>``, ``model.<ModelConfig field>``,
``train.<TrainConfig field>`` or ``seed`` (the seed of all three, except one the cell sets
itself, such as ``data.seed``). ``model.max_len`` follows
``data.max_len`` unless set; every run uses one thread unless ``train.threads`` says otherwise.
Unless the spec sets them, cells take ``model.n_heads``, ``train.lr`` and
``train.warmup_steps`` from its ``recipe`` (:data:`~iteration_heads.runs.sweep_fields.RECIPES`):
``library`` (the default, as ``iteration-heads train``: 2 heads, Adam 1e-3, 200-step warm-up) or
``paper`` (1 head, Adam 3e-4, no warm-up). ``train.max_steps`` budgets optimiser steps rather than epochs, so that cells over lengths or
batch sizes get the same number of updates. A variant's settings override the fixed ones; rules
may match ``variant`` by name.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from iteration_heads._io import write_json
from iteration_heads.errors import IterationHeadsError
from iteration_heads.runs.executors import Executor, LocalExecutor
from iteration_heads.runs.run_lock import run_holder
from iteration_heads.runs.scheduling import run_all
from iteration_heads.runs.specs import RunSpec, finished
from iteration_heads.runs.sweep_cost import check_cells_fit, estimate_cost, format_seconds
from iteration_heads.runs.sweep_fields import (
    VARIANT,
    cell_spec,
    check_distinct,
    check_field,
    check_recipe,
)
from iteration_heads.tasks.task import check_int

SPEC_KEYS = ("name", "recipe", "fixed", "axes", "variants", "exclude", "include", "figure")
"""The top-level keys of a sweep spec."""

FIGURE_KEYS = ("x", "y", "panel", "value")
"""The keys of a spec's ``[figure]``: the two axes of the heatmaps, the column that makes one
panel per value (default: ``variant`` when the spec has variants) and the value drawn."""

MAX_CELLS = 10_000
"""The most cells one sweep may hold, counted before any is built (the product of the axes,
times the variants, plus the included cells): a larger grid is refused in one line, in
microseconds, rather than built. Split a larger study into several specs."""


@dataclass(frozen=True)
class SweepSpec:
    """A grid of runs: the product of ``axes`` (and of named ``variants``) over ``fixed``
    settings, minus the cells that match an ``exclude`` rule, plus the ``include`` cells, on top
    of ``recipe`` (``library`` or ``paper``). ``figure`` names the heatmaps' axes
    (:data:`FIGURE_KEYS`).

    Example:
        >>> spec = SweepSpec.from_dict({"fixed": {"data.task": "copy"},
        ...                             "axes": {"model.d_model": [16, 32], "seed": [0, 1]}})
        >>> [cell.name() for cell in spec.cells()][:2]
        ['copy-cot-d16-L16-2x2-s0-e1000', 'copy-cot-d16-L16-2x2-s1-e1000']
        >>> SweepSpec.from_dict({"recipe": "paper", "axes": {"seed": [0]}}).cells()[0].name()
        'polynomial-cot-d128-L16-2x1-s0-e1000'
        >>> spec = SweepSpec.from_dict({"axes": {"seed": [0]},
        ...                             "variants": {"cot": {}, "no cot": {"data.cot": False}}})
        >>> [(s["variant"], cell_spec(s).data.cot) for s in spec.settings()]
        [('cot', True), ('no cot', False)]
    """

    name: str = "sweep"
    fixed: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    exclude: tuple[dict[str, Any], ...] = ()
    include: tuple[dict[str, Any], ...] = ()
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    figure: dict[str, str] = field(default_factory=dict)
    recipe: str = "library"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        """Read a parsed spec, checking every key and field name."""
        if not isinstance(data, dict):
            raise IterationHeadsError(f"a sweep spec must be a table, got {type(data).__name__}")
        unknown = sorted(set(data) - set(SPEC_KEYS))
        if unknown:
            raise IterationHeadsError(f"unknown sweep spec keys {unknown}; expected {SPEC_KEYS}")
        fixed, axes = data.get("fixed", {}), data.get("axes", {})
        variants, figure = data.get("variants", {}), data.get("figure", {})
        rules = {"exclude": data.get("exclude", []), "include": data.get("include", [])}
        for key, value in [("fixed", fixed), ("axes", axes), ("variants", variants),
                           ("figure", figure)]:  # fmt: skip
            if not isinstance(value, dict):
                raise IterationHeadsError(f"[{key}] must be a table of field = value")
        for name, values in axes.items():
            if not isinstance(values, list) or not values:
                raise IterationHeadsError(f"axis {name!r} = {values!r}: expected a non-empty list")
            check_distinct(f"axis {name!r}", values)
        for key, rule_list in rules.items():
            if not isinstance(rule_list, list) or not all(isinstance(r, dict) for r in rule_list):
                raise IterationHeadsError(f"[[{key}]] must be tables of field = value")
        for variant, bundle in variants.items():
            if not isinstance(bundle, dict):
                raise IterationHeadsError(f"variant {variant!r} must be a table of field = value")
            clash = sorted(set(bundle) & {*axes, "seed", VARIANT})
            if clash:
                raise IterationHeadsError(f"variant {variant!r} sets axis fields {clash}")
        names = [*fixed, *axes, *(n for b in variants.values() for n in b),
                 *(n for rs in rules.values() for r in rs for n in r)]  # fmt: skip
        for name in names:
            check_field(name)
        count = math.prod(map(len, axes.values())) * max(len(variants), 1) + len(rules["include"])
        if count > MAX_CELLS:
            shape = " x ".join(str(len(v)) for v in [*axes.values(), *[variants] * bool(variants)])
            raise IterationHeadsError(
                f"the sweep has {count} cells ({shape or 'no axes'} + {len(rules['include'])} "
                f"included); at most {MAX_CELLS} are allowed: split it into several specs"
            )
        for rule in (r for rs in rules.values() for r in rs):
            if VARIANT in rule and (not isinstance(rule[VARIANT], str)
                                    or rule[VARIANT] not in variants):  # fmt: skip
                raise IterationHeadsError(
                    f"rule {rule} names variant {rule[VARIANT]!r}; variants: {list(variants)}"
                )
        if VARIANT in [*fixed, *axes]:
            raise IterationHeadsError("'variant' is set by [variants], not as a field")
        overlap = sorted(set(fixed) & set(axes))
        if overlap:
            raise IterationHeadsError(f"fields {overlap} are both fixed and an axis")
        name = data.get("name", "sweep")
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isascii() or \
                not name.replace("-", "").replace("_", "").isalnum():  # fmt: skip
            raise IterationHeadsError(f"name={name!r}, expected letters, digits, '-' or '_'")
        recipe = check_recipe(data.get("recipe", "library"))
        spec = cls(name, dict(fixed), dict(axes), tuple(rules["exclude"]),
                   tuple(rules["include"]), dict(variants), dict(figure), recipe)  # fmt: skip
        spec.figure_axes()  # checked now, used by --collect
        return spec

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> SweepSpec:
        """Read a spec file (module docstring), or a clear error naming the file."""
        path = Path(path)
        if not path.is_file():
            raise IterationHeadsError(f"sweep spec {str(path)!r} is not a file")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise IterationHeadsError(
                f"sweep spec {str(path)!r} is not UTF-8 text (byte {err.start}); expected TOML"
            ) from None
        except OSError as err:
            raise IterationHeadsError(f"cannot read sweep spec {str(path)!r}: {err}") from None
        try:
            data = tomllib.loads(text)
        except RecursionError:
            raise IterationHeadsError(
                f"sweep spec {str(path)!r} nests arrays or tables too deeply for a sweep spec"
            ) from None
        except tomllib.TOMLDecodeError as err:
            reason = " ".join(str(err).split())
            raise IterationHeadsError(
                f"sweep spec {str(path)!r} is not valid TOML: {reason}"
            ) from None
        return cls.from_dict(data)

    def on_device(self, device: str) -> SweepSpec:
        """The spec with every run on ``device`` (``auto``: CUDA when this machine has it),
        unless the spec chooses ``train.device`` itself. The device is part of a run's
        configuration, so runs on a GPU and on the CPU are cached apart.

        Example:
            >>> spec = SweepSpec.from_dict({"axes": {"seed": [0]}}).on_device("cpu")
            >>> spec.cells()[0].train.device
            'cpu'
        """
        if device not in ("auto", "cpu", "cuda"):
            raise IterationHeadsError(f"device={device!r}, expected 'auto', 'cpu' or 'cuda'")
        chosen = [*self.fixed, *self.axes, *(n for b in self.variants.values() for n in b)]
        if "train.device" in chosen:
            return self
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":  # the configs' default: cache keys as without this option
            return self
        return dataclasses.replace(self, fixed={**self.fixed, "train.device": device})

    def columns(self) -> list[str]:
        """The swept columns of its table: ``variant`` (if any), then the axes."""
        return [VARIANT] * bool(self.variants) + list(self.axes)

    def figure_axes(self) -> dict[str, str | None] | None:
        """The heatmaps' ``x``, ``y``, ``panel`` and ``value`` (None: the spec draws none).

        Example:
            >>> SweepSpec.from_dict({"axes": {"seed": [0], "model.d_model": [8],
            ...     "data.max_len": [4]}, "figure": {"x": "data.max_len", "y": "model.d_model"}}
            ...     ).figure_axes()
            {'x': 'data.max_len', 'y': 'model.d_model', 'panel': None, 'value': 'accuracy'}
        """
        if not self.figure:
            return None
        unknown = sorted(set(self.figure) - set(FIGURE_KEYS))
        if unknown or not {"x", "y"} <= set(self.figure):
            raise IterationHeadsError(
                f"[figure] keys {sorted(self.figure)}: expected x and y, optionally panel and value"
            )
        axes = {key: self.figure.get(key) for key in ("x", "y", "panel")}
        axes["panel"] = axes["panel"] or (VARIANT if self.variants else None)
        for key, column in axes.items():
            if column == "seed":
                raise IterationHeadsError(
                    f"[figure] {key} = 'seed': seeds are aggregated (mean, and the fraction "
                    "that formed the head); choose another swept field"
                )
            if column is not None and column not in self.columns():
                raise IterationHeadsError(
                    f"[figure] {key} = {column!r} is not swept; expected one of {self.columns()}"
                )
        return {**axes, "value": self.figure.get("value", "accuracy")}

    def settings(self) -> list[dict[str, Any]]:
        """Every cell's settings (fixed, then its variant's, then one point of the axes), in
        axis order; each names its ``variant`` when the spec has variants."""
        bundles = {name: {VARIANT: name, **b} for name, b in self.variants.items()} or {"": {}}
        names = list(self.axes)
        points = [dict(zip(names, values, strict=True))
                  for values in itertools.product(*(self.axes[n] for n in names))]  # fmt: skip
        cells = [{**self.fixed, **bundle, **point}
                 for bundle in bundles.values() for point in points]  # fmt: skip
        kept = [cell for cell in cells
                if not any(all(cell.get(k) == v for k, v in rule.items())
                           for rule in self.exclude)]  # fmt: skip
        extra = []
        for rule in self.include:
            bundle = bundles.get(rule.get(VARIANT, ""), {})
            extra.append({**self.fixed, **bundle, **rule})
        return kept + extra

    def cell_settings(self) -> list[tuple[dict[str, Any], RunSpec]]:
        """Every cell's settings and run spec; the config error of the first cell that is not
        valid, or an error naming two cells that are one run (an ``include`` of a cell the
        grid has, two variants that set nothing apart): each cell is counted once.

        Example:
            >>> SweepSpec.from_dict({"axes": {"seed": [0]}, "include": [{"seed": 0}]}
            ...                     ).cell_settings()  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            iteration_heads.errors.IterationHeadsError: sweep cells {'seed': 0} and {'seed': 0} are the same run ...
        """
        pairs: dict[str, tuple[dict[str, Any], RunSpec]] = {}
        for settings in self.settings():
            spec = cell_spec(settings, check_recipe(self.recipe))
            if spec.key() in pairs:
                raise IterationHeadsError(
                    f"sweep cells {pairs[spec.key()][0]} and {settings} are the same run "
                    f"{spec.name()}; expected each cell once (drop the [[include]] rule or "
                    "the variant that repeats it)"
                )
            pairs[spec.key()] = (settings, spec)
        return list(pairs.values())

    def cells(self) -> list[RunSpec]:
        """The run spec of every cell (:meth:`cell_settings`)."""
        return [spec for _, spec in self.cell_settings()]


def dry_run(
    spec: SweepSpec,
    runs: str | os.PathLike[str],
    *,
    estimate: bool = False,
    slots: int = 1,
    local: bool = True,
) -> str:
    """The cells of ``spec`` as text, each marked finished (in the ``runs`` cache) or to
    train; with ``estimate``, the cost of each cell to train and of the whole sweep with
    ``slots`` runs at once, from throughput measured here
    (:func:`~iteration_heads.runs.sweep_cost.estimate_cost`). It checks what the real
    run checks before training: every cell's configs and, when its runs train locally,
    that each unfinished cell fits this machine's memory (:func:`~iteration_heads.runs.sweep_cost.check_cells_fit`).

    Example:
        >>> import tempfile
        >>> spec = SweepSpec.from_dict({"axes": {"seed": [0, 1]}, "fixed": {"data.task": "copy"}})
        >>> print(dry_run(spec, tempfile.mkdtemp()).splitlines()[0])
        sweep 'sweep': 2 cells, 0 finished, 2 to train
    """
    check_sweep_arguments(spec, runs, slots=slots, estimate=estimate, local=local)
    cells = spec.cells()
    done = [finished(cell, runs) for cell in cells]
    if local:
        check_cells_fit([c for c, d in zip(cells, done, strict=True) if not d])
    lines = [f"sweep {spec.name!r}: {len(cells)} cells, {sum(done)} finished, "
             f"{len(cells) - sum(done)} to train"]  # fmt: skip
    costs: dict[str, str] = {}
    if estimate:
        todo = [c for c, d in zip(cells, done, strict=True) if not d]
        cost = estimate_cost(todo, slots=slots)
        costs = {key: f"  ~{format_seconds(seconds)}" for key, seconds in cost.seconds.items()}
        lines.append(cost.summary())
    lines += [f"  {'done' if d else 'todo'}  {c.name()}{costs.get(c.key(), '')}"
              for c, d in zip(cells, done, strict=True)]  # fmt: skip
    return "\n".join(lines)


def error_file(cell: RunSpec, runs: str | os.PathLike[str]) -> Path:
    """Where a failed cell's error is recorded: next to its run directory (its traceback is
    in ``<run>.traceback.txt``).

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
    executor: Executor | None = None,
    runs_per_job: int = 1,
    batch_seeds: bool = False,
    retry_failed: bool = False,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> int:
    """Train every unfinished cell of ``spec`` into the ``runs`` cache through ``executor``
    (default: ``jobs`` local processes, one thread each unless the spec sets
    ``train.threads``), ``runs_per_job`` cells per job, or with ``batch_seeds`` the seeds of
    one configuration stacked in one process. A cell that fails does not stop the
    others: its error is recorded (:func:`error_file`) and the cell is left alone on later
    runs unless ``retry_failed``. A cell whose run directory another process holds is left to
    it ("running elsewhere", neither trained nor failed). Killed part-way, a rerun trains only
    the unfinished cells (a cell killed mid-run resumes from its last checkpoint); a finished
    cell keeps no error or traceback file. Returns how many cells are finished."""
    jobs = check_int("jobs", jobs, minimum=1)
    runs_per_job = check_int("runs_per_job", runs_per_job, minimum=1)
    check_sweep_arguments(spec, runs, batch_seeds=batch_seeds, retry_failed=retry_failed,
                          progress=progress)  # fmt: skip
    if executor is not None and not isinstance(executor, Executor):
        raise IterationHeadsError(f"executor={executor!r}, expected an Executor or None")
    if not callable(log):
        raise IterationHeadsError(f"log={log!r}, expected a function of one line")
    everything = spec.cells()
    cells = [c for c in everything if retry_failed or not error_file(c, runs).is_file()]

    def record(cell: RunSpec, error: BaseException) -> None:
        message = str(error).splitlines()[0]
        write_json(error_file(cell, runs), {"name": cell.name(), "error": message})

    if executor is None or isinstance(executor, LocalExecutor):
        check_cells_fit([c for c in cells if not finished(c, runs)])
    Path(runs).mkdir(parents=True, exist_ok=True)
    run_all(cells, runs, jobs=jobs, executor=executor, runs_per_job=runs_per_job,
            batch_seeds=batch_seeds, log=log, on_error=record, progress=progress)  # fmt: skip
    done = 0
    for cell in everything:
        if finished(cell, runs):  # an error or traceback of an earlier attempt is stale
            done += 1
            for path in (error_file(cell, runs), traceback_file(cell, runs)):
                path.unlink(missing_ok=True)
    away = [c for c in cells if not finished(c, runs) and run_holder(c.directory(runs))]
    if away:
        log(f"{len(away)} cell{'s' * (len(away) > 1)} running elsewhere (another process "
            "holds the run directory); run this sweep again once it ends")  # fmt: skip
    return done


def check_sweep_arguments(
    spec: SweepSpec, runs: str | os.PathLike[str], *, slots: int = 1, **flags: bool
) -> None:
    """A one-line error for a bad argument of :func:`dry_run` or :func:`run_sweep`: a spec
    that is not a :class:`SweepSpec`, a ``runs`` that is not a path, ``slots`` that is not an
    integer >= 1, or a flag that is not a bool.

    Example:
        >>> check_sweep_arguments(SweepSpec(), "runs", slots=0)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: slots=0, expected an integer >= 1
    """
    if not isinstance(spec, SweepSpec):
        raise IterationHeadsError(f"spec={spec!r}, expected a SweepSpec (SweepSpec.from_toml)")
    if not isinstance(runs, (str, os.PathLike)) or not str(runs):
        raise IterationHeadsError(f"runs={runs!r}, expected a folder path")
    check_int("slots", slots, minimum=1)
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise IterationHeadsError(f"{name}={value!r}, expected True or False")


def traceback_file(cell: RunSpec, runs: str | os.PathLike[str]) -> Path:
    """Where a failed cell's traceback is written, next to its run directory.

    Example:
        >>> traceback_file(cell_spec({"seed": 1}), "runs").name.endswith(".traceback.txt")
        True
    """
    directory = cell.directory(runs)
    return directory.with_name(directory.name + ".traceback.txt")
