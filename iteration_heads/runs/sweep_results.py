"""A sweep's results, read from its run directories (never from the jobs that trained them):
one tidy table with a row per cell, and the paper's heatmaps over two swept axes, one panel per
variant, seeds aggregated as the mean and as the fraction of seeds that formed the head.

Example:
    >>> import tempfile
    >>> from iteration_heads.runs.sweep import SweepSpec
    >>> spec = SweepSpec.from_dict({"axes": {"seed": [0, 1]}, "fixed": {"data.task": "copy"}})
    >>> collect(spec, tempfile.mkdtemp())[["seed", "status"]].values.tolist()
    [[0, 'todo'], [1, 'todo']]
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import pandas as pd

from iteration_heads._io import is_temporary, read_json, remove_temporary, write_text
from iteration_heads.errors import IterationHeadsError
from iteration_heads.runs.run_lock import run_holder
from iteration_heads.runs.specs import finished
from iteration_heads.runs.sweep import SweepSpec, check_sweep_arguments, error_file
from iteration_heads.runs.sweep_cost import format_seconds
from iteration_heads.viz.page import HtmlPage
from iteration_heads.viz.sweep_figures import aggregate_seeds, heatmap_markdown, sweep_heatmaps

RESULT_COLUMNS = (
    "outcome",
    "accuracy",
    "iteration_peakiness",
    "has_circuit",
    "first_epoch_accuracy",
    "first_epoch_head",
    "first_step_head",
    "first_epoch_target",
    "epochs",
    "steps",
    "seconds",
    "note",
)
"""What the table holds of a finished cell: its :func:`outcome`, final test accuracy and
last-layer iteration peakiness, whether the detector found the circuit, the first evaluated
epoch (and optimiser step) where accuracy and the iteration head reached their targets (and
where both did at once), the epochs and steps trained, the wall-clock seconds (over every
process that trained the run, a resumed one included), and a :func:`detector_note` where the
outcome and the detector disagree."""

INTEGER_COLUMNS = (
    "first_epoch_accuracy",
    "first_epoch_head",
    "first_step_head",
    "first_epoch_target",
    "epochs",
    "steps",
)
"""The columns of epochs and steps: integers (pandas ``Int64``, empty where missing)."""

OUTCOMES = ("head", "alternative circuit", "not learned")
"""A finished run's outcome: it reached target (test accuracy >= 0.99 and last-layer iteration
peakiness >= 0.9 at one evaluation); it reached the accuracy target but never with the head (an
alternative circuit for some steps); or neither."""


def outcome(first_epoch_target: int | None, first_epoch_accuracy: int | None) -> str:
    """One of :data:`OUTCOMES`, from the first epochs at target and at the accuracy target.

    Example:
        >>> outcome(40, 30), outcome(None, 30), outcome(None, None)
        ('head', 'alternative circuit', 'not learned')
    """
    if first_epoch_target is not None:
        return OUTCOMES[0]
    return OUTCOMES[1] if first_epoch_accuracy is not None else OUTCOMES[2]


def detector_note(outcome_: str, detect: dict[str, Any]) -> str:
    """Why a run's :func:`outcome` and its final model's detection (``detect.json``) disagree,
    or ``""`` when they agree: a run at target without the circuit names the part the detector
    missed (no EoI head, no iteration head, the EoI head not before the iteration head, or
    predictions that do not use the state); a run never at target names the circuit it found.

    Example:
        >>> detector_note("head", {"has_iteration_circuit": False, "eoi_heads": [],
        ...                        "iteration_heads": [[1, 0]]})
        'head at target; detect: no EoI head'
        >>> detector_note("not learned", {"has_iteration_circuit": False})
        ''
    """
    if not isinstance(detect, dict):
        raise IterationHeadsError(f"detect={detect!r}, expected the dict of detect.json")
    found = bool(detect.get("has_iteration_circuit"))
    if (outcome_ == OUTCOMES[0]) == found:
        return ""
    if found:
        return f"{outcome_}; detect: circuit found in the final model"
    missing = [
        f"no {label} head"
        for kind, label in (("eoi", "EoI"), ("iteration", "iteration"))
        if not detect.get(f"{kind}_heads") and not detect.get(f"{kind}_summed_layers")
    ]
    circuit = detect.get("circuit") or {}
    sensitivity = detect.get("state_sensitivity")
    minimum = (detect.get("thresholds") or {}).get("min_state_sensitivity", 0.5)
    if not missing and not circuit.get("attention_found"):
        missing = ["EoI head not in a layer before the iteration head"]
    elif not missing and sensitivity is not None and sensitivity < minimum:
        missing = [f"state sensitivity {sensitivity:.2f} < {minimum}"]
    reason = ", ".join(missing) or str(detect.get("verdict", "no circuit"))
    return f"head at target; detect: {reason}"


def collect(spec: SweepSpec, runs: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per cell, read from its run directory: the swept settings (``variant`` first),
    ``name``, ``status`` and, for finished cells, :data:`RESULT_COLUMNS` (those of
    :data:`INTEGER_COLUMNS` as integers). The status is read now from the run directories:
    ``done``; ``running`` (another process holds the run directory); ``failed`` (with its
    ``error``); else ``todo``."""
    check_sweep_arguments(spec, runs)
    rows = []
    for settings, cell in spec.cell_settings():
        row: dict[str, Any] = {c: settings[c] for c in spec.columns() if c in settings}
        status = "done" if finished(cell, runs) else "todo"
        failed = error_file(cell, runs)
        if status == "todo" and run_holder(cell.directory(runs)) is not None:
            status = "running"
        elif status == "todo" and failed.is_file():
            status = "failed"
            row["error"] = read_json(failed)["error"]
        row |= {"name": cell.name(), "status": status}
        if status == "done":
            result = cell.result(runs)
            target = result.first_epoch("first_epoch_both")
            accurate = result.first_epoch("first_epoch_accuracy")
            kind = outcome(target, accurate)
            row |= {
                "outcome": kind,
                "accuracy": result.accuracy,
                "iteration_peakiness": result.iteration_peakiness,
                "has_circuit": result.has_circuit,
                "first_epoch_accuracy": accurate,
                "first_epoch_head": result.first_epoch("first_epoch_iteration_head"),
                "first_step_head": result.first_epoch("first_step_iteration_head"),
                "first_epoch_target": target,
                "epochs": result.epochs,
                "steps": result.summary.get("steps"),
                "seconds": result.wall_seconds,
                "note": detector_note(kind, result.detect),
            }
        rows.append(row)
    table = pd.DataFrame(rows)
    for column in INTEGER_COLUMNS:
        if column in table:
            table[column] = table[column].astype("Int64")
    return table


def collect_curves(spec: SweepSpec, runs: str | os.PathLike[str]) -> pd.DataFrame:
    """Every evaluation of every finished cell, one row each: the swept settings, ``name``,
    ``epoch``, ``train_loss``, test ``accuracy``, and the EoI and iteration peakiness of each
    layer (``eoi_peakiness_0``, ``iteration_peakiness_1``, ...).

    Example:
        >>> import tempfile
        >>> from iteration_heads.runs.sweep import SweepSpec
        >>> spec = SweepSpec.from_dict({"axes": {"seed": [0]}, "fixed": {"data.task": "copy"}})
        >>> collect_curves(spec, tempfile.mkdtemp()).empty
        True
    """
    check_sweep_arguments(spec, runs)
    rows = []
    for settings, cell in spec.cell_settings():
        if not finished(cell, runs):
            continue
        swept = {c: settings[c] for c in spec.columns() if c in settings}
        for point in cell.result(runs).curve:
            row = {**swept, "name": cell.name(), "epoch": point["epoch"],
                   "train_loss": point["train_loss"], "accuracy": point["accuracy"]}  # fmt: skip
            for kind in ("eoi_peakiness", "iteration_peakiness"):
                row |= {f"{kind}_{layer}": v for layer, v in enumerate(point[kind] or [])}
            rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (empty cells for missing values).

    Example:
        >>> print(markdown_table(pd.DataFrame({"seed": [0], "accuracy": [None]})))
        | seed | accuracy |
        |---|---|
        | 0 |  |
    """
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    lines = ["| " + " | ".join("" if _missing(v) else str(v) for v in row) + " |"
             for row in table.itertuples(index=False)]  # fmt: skip
    return "\n".join([header, rule, *lines])


def _missing(value: Any) -> bool:
    return not isinstance(value, (list, tuple, dict)) and bool(pd.isna(value))


def write_table(
    spec: SweepSpec,
    runs: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    command: str = "",
) -> list[Path]:
    """Write ``<out>/<name>.csv`` and ``<out>/<name>.md`` (atomically) from :func:`collect`,
    ``<out>/<name>.curves.csv`` (every evaluation of every finished run, :func:`collect_curves`)
    and, when the spec has a ``[figure]``, its heatmaps: as markdown grids at the top of the
    ``.md``, and in ``<out>/<name>.html``, an offline page (plotly.js inlined, or read from a
    ``plotly.min.js`` already in ``out``, as in ``docs/results/``). ``command``, if given, is
    recorded on both pages. Returns the files written."""
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        raise IterationHeadsError(f"out={out!r}, expected a folder path")
    if not isinstance(command, str):
        raise IterationHeadsError(f"command={command!r}, expected a string")
    table = collect(spec, runs)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f".{spec.name}.*.tmp"):  # writes of a sweep killed part-way
        if is_temporary(stale):
            remove_temporary(stale)
    written = [folder / f"{spec.name}.csv"]
    write_text(written[0], table.to_csv(index=False))
    curves = collect_curves(spec, runs)
    if not curves.empty:
        written.append(folder / f"{spec.name}.curves.csv")
        write_text(written[-1], curves.to_csv(index=False))
    markdown = folder / f"{spec.name}.md"
    written.append(markdown)
    parts = [f"# Sweep `{spec.name}`", ""]
    parts += [f"Command: `{command}`", ""] if command else []
    parts += [_status_line(table), ""]
    if not curves.empty:
        parts += [
            f"Every evaluation of every run: [{spec.name}.curves.csv]({spec.name}.curves.csv).",
            "",
        ]
    axes = spec.figure_axes()
    if axes is not None and (table["status"] == "done").any():
        x, y, panel, value = (str(axes["x"]), str(axes["y"]), axes["panel"], str(axes["value"]))
        figure = sweep_heatmaps(table, x=x, y=y, panel=panel, value=value,
                                title=f"sweep {spec.name}")  # fmt: skip
        shared = (folder / "plotly.min.js").is_file()
        page = HtmlPage(f"sweep {spec.name}", plotly="directory" if shared else "inline")
        page.add(f"<h1>Sweep {html.escape(spec.name)}</h1>")
        page.add(f"<p>{html.escape(command)}</p>" if command else "")
        page.add(f"<p>{html.escape(_status_line(table))}</p>")
        page.figure(figure)
        page.add(table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3g}"))
        written.append(folder / f"{spec.name}.html")
        write_text(written[-1], page.html())
        grids = heatmap_markdown(table, x=x, y=y, panel=panel, value=value)
        parts += [f"Mean {value} over seeds, and the seeds where the iteration head formed:",
                  "", grids, ""]  # fmt: skip
    if "seed" in spec.axes and (table["status"] == "done").any():
        seeds = seed_summary(table, [c for c in spec.columns() if c != "seed"])
        parts += ["## Over seeds", "", "Final accuracy over seeds (`mean` ± `std`, `min`, `max`), "
                  "the fraction of seeds where the detector found the circuit (`formed`), and the "
                  "runs that reached target (`at_target`: accuracy >= 0.99 and iteration "
                  "peakiness >= 0.9 at one evaluation), solved the task without the head "
                  "(`alternative`) or did neither (`not_learned`):", "",
                  markdown_table(seeds), ""]  # fmt: skip
    parts += ["## Runs", "", markdown_table(table), ""]
    write_text(markdown, "\n".join(parts))
    return written


def seed_summary(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The over-seeds table of a :func:`collect` table: one row per combination of ``by`` (one
    row for all runs when ``by`` is empty, as in a sweep over seeds only), with the statistics
    of :func:`~iteration_heads.viz.sweep_figures.aggregate_seeds` (rounded to 3 decimals) and
    the done runs of each :data:`OUTCOMES` (``at_target``, ``alternative``, ``not_learned``).

    Example:
        >>> table = pd.DataFrame({"seed": [0, 1, 2], "status": ["done"] * 3,
        ...     "accuracy": [1.0, 1.0, 0.4], "has_circuit": [True, False, False],
        ...     "outcome": ["head", "alternative circuit", "not learned"]})
        >>> seed_summary(table, []).to_dict("records")[0]  # doctest: +NORMALIZE_WHITESPACE
        {'runs': 3, 'seeds': 3, 'mean': 0.8, 'std': 0.346, 'min': 0.4, 'max': 1.0,
         'formed': 0.333, 'formed_count': 1, 'at_target': 1, 'alternative': 1, 'not_learned': 1}
    """
    if not isinstance(table, pd.DataFrame):
        raise IterationHeadsError(f"table={table!r}, expected a DataFrame of collect()")
    if not isinstance(by, list) or not all(isinstance(c, str) for c in by):
        raise IterationHeadsError(f"by={by!r}, expected a list of column names")
    everything = None if by else "all runs"  # a constant column to group all runs by
    if everything is not None:
        table = table.assign(**{everything: everything})
    groups = by or [str(everything)]
    seeds = aggregate_seeds(table, groups).round(3)
    done = table[table["status"] == "done"] if "status" in table else table
    if "outcome" in done:
        for kind, column in zip(OUTCOMES, ("at_target", "alternative", "not_learned"), strict=True):
            counts = done.assign(hit=done["outcome"] == kind).groupby(groups, dropna=False)["hit"]
            seeds = seeds.merge(counts.sum().astype(int).rename(column).reset_index(), on=groups)
    return seeds.drop(columns=[everything]) if everything is not None else seeds


def _status_line(table: pd.DataFrame) -> str:
    counts = table["status"].value_counts()
    line = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "todo", "failed")) + " cells"
    if counts.get("running", 0):
        line += f", {counts['running']} running elsewhere"
    if "seconds" not in table:
        return line + "."
    seconds = float(table["seconds"].sum())
    return line + f"; training time of the done cells: {format_seconds(seconds)} in all."
