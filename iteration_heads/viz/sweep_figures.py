"""The paper's sweep heatmaps from a table of runs (one row per run, such as
:func:`iteration_heads.runs.sweep_results.collect` returns): the runs of every cell are
averaged over seeds (:func:`aggregate_seeds`), then drawn as two rows of heatmaps, the mean of
a value (top) and the fraction of seeds where the iteration head formed (bottom), one column of
panels per value of a ``panel`` column (:func:`sweep_heatmaps`), or written as markdown grids
for the docs (:func:`heatmap_markdown`).

Only rows whose ``status`` is ``"done"`` enter the statistics; the others (``todo``,
``failed``) are still counted in ``seeds``. A table without a ``status`` column is all done.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from iteration_heads.errors import IterationHeadsError

AGGREGATE_COLUMNS = ("runs", "seeds", "mean", "std", "min", "max", "formed", "formed_count")
"""The columns :func:`aggregate_seeds` adds after the ``by`` columns."""

_Key = tuple[Any, ...]


def _require(table: pd.DataFrame, name: object, role: str) -> str:
    """``name`` if it is a column of ``table``, else a one-line error naming the columns."""
    if not isinstance(name, str):
        raise IterationHeadsError(f"{role} must be a column name, got {type(name).__name__}")
    if name not in table.columns:
        raise IterationHeadsError(
            f"{role} column {name!r} is not in the table; columns: {[str(c) for c in table.columns]}"
        )
    return name


def _plain(value: Any, column: str) -> Any:
    """A table cell as a hashable Python value; every kind of missing value becomes None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        hash(value)
    except TypeError:
        raise IterationHeadsError(
            f"column {column!r} holds {type(value).__name__} {value!r}; expected plain values"
        ) from None
    return value


def _order(value: Any) -> tuple[int, float, str]:
    """Sort key: numbers (and bools) by value, then strings, then missing values."""
    if value is None:
        return (2, 0.0, "")
    if isinstance(value, bool | int | float):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _label(value: Any) -> str:
    """An axis value as text (``unset`` where the run did not set it)."""
    if value is None:
        return "unset"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _number(value: Any, column: str) -> float:
    """A cell of the ``value`` column as a float (NaN where missing)."""
    value = _plain(value, column)
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise IterationHeadsError(
            f"value column {column!r} holds {value!r}; expected numbers"
        ) from None


def _flag(value: Any, column: str) -> bool:
    """A cell of the ``formed`` column as a bool (missing counts as not formed)."""
    value = _plain(value, column)
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if isinstance(value, bool | int | float) and value in (0, 1):
        return bool(value)
    raise IterationHeadsError(f"formed column {column!r} holds {value!r}; expected true/false")


def _same(a: Any, b: Any) -> bool:
    """Whether two table cells hold the same value (missing equals missing)."""
    try:
        return bool(a == b) or bool(pd.isna(a) and pd.isna(b))
    except (TypeError, ValueError):
        return str(a) == str(b)


def aggregate_seeds(
    table: pd.DataFrame,
    by: Sequence[str],
    *,
    value: str = "accuracy",
    formed: str = "has_circuit",
    seed: str | None = "seed",
) -> pd.DataFrame:
    """One row per combination of the ``by`` columns, with the statistics of its runs.

    Columns: the ``by`` columns (sorted: numbers, then text, then missing), then ``runs`` (done
    runs), ``seeds`` (all runs, done or not), ``mean``, ``std`` (``ddof=1``, NaN for one run),
    ``min`` and ``max`` of ``value`` over the done runs that have one, ``formed`` (the fraction
    of the done runs where ``formed`` is true; NaN without a done run) and ``formed_count``.

    Args:
        table: One row per run; a ``status`` column marks the done ones (no column: all done).
        by: The columns that make a cell (one name is taken as ``[name]``).
        value: The numeric column to average (missing values are left out).
        formed: The true/false column to count (missing counts as not formed).
        seed: The seed column, when the table has one: runs of a cell that share a seed must
            be the same run (listed twice: counted once), else a setting outside ``by`` varies
            and this raises instead of pooling it. ``None`` counts every row as a run.

    Example:
        >>> table = pd.DataFrame({"model.d_model": [16, 16, 16, 32], "seed": [0, 1, 2, 0],
        ...                       "status": ["done", "done", "todo", "done"],
        ...                       "accuracy": [0.9, 0.7, None, 1.0],
        ...                       "has_circuit": [True, False, None, True]})
        >>> aggregate_seeds(table, ["model.d_model"]).round(3).to_dict("records")[0]
        {'model.d_model': 16, 'runs': 2, 'seeds': 3, 'mean': 0.8, 'std': 0.141, 'min': 0.7, 'max': 0.9, 'formed': 0.5, 'formed_count': 1}
        >>> aggregate_seeds(table, ["model.width"])
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: by column 'model.width' is not in the table; columns: [...]
    """
    if not isinstance(table, pd.DataFrame):
        raise IterationHeadsError(
            f"table must be a pandas DataFrame (one row per run), got {type(table).__name__}"
        )
    names = [by] if isinstance(by, str) else list(by)
    if not names:
        raise IterationHeadsError("by is empty: give at least one column that makes a cell")
    names = [_require(table, name, "by") for name in names]
    if len(set(names)) != len(names):
        raise IterationHeadsError(f"by={names} names a column twice")
    if seed is not None and seed in names:
        raise IterationHeadsError(
            f"seed column {seed!r} is what the runs are averaged over; leave it out of by={names}"
        )
    records = table.to_dict("records")
    done = [row.get("status", "done") == "done" for row in records]
    if any(done):
        _require(table, value, "value")
        _require(table, formed, "formed")
    numbers = [
        _number(row[value], value) if d else math.nan for row, d in zip(records, done, strict=True)
    ]
    flags = [d and _flag(row[formed], formed) for row, d in zip(records, done, strict=True)]

    cells: dict[_Key, list[int]] = {}
    for i, row in enumerate(records):
        cells.setdefault(tuple(_plain(row[n], n) for n in names), []).append(i)
    check_seeds = seed is not None and seed in table.columns
    rows = []
    for key in sorted(cells, key=lambda k: tuple(map(_order, k))):
        kept: list[int] = []
        seen: dict[Any, int] = {}
        for i in cells[key]:
            if not check_seeds:
                kept.append(i)
                continue
            s = _plain(records[i][str(seed)], str(seed))
            if s not in seen:
                seen[s] = i
                kept.append(i)
                continue
            other = records[seen[s]]
            differ = [str(c) for c in table.columns if not _same(records[i][c], other[c])]
            if differ:
                raise IterationHeadsError(
                    f"cell {dict(zip(names, key, strict=True))} has two runs with {seed}={s!r} "
                    f"that differ in {differ[:5]}: add the varying setting to by, or filter the "
                    "table"
                )
        ran = [i for i in kept if done[i]]
        found = np.array([numbers[i] for i in ran if not math.isnan(numbers[i])])
        count = sum(flags[i] for i in ran)
        rows.append(
            {
                **dict(zip(names, key, strict=True)),
                "runs": len(ran),
                "seeds": len(kept),
                "mean": float(found.mean()) if found.size else math.nan,
                "std": float(found.std(ddof=1)) if found.size > 1 else math.nan,
                "min": float(found.min()) if found.size else math.nan,
                "max": float(found.max()) if found.size else math.nan,
                "formed": count / len(ran) if ran else math.nan,
                "formed_count": count,
            }
        )
    return pd.DataFrame(rows, columns=[*names, *AGGREGATE_COLUMNS])


def _grid(
    table: pd.DataFrame, x: str, y: str, panel: str | None, value: str, formed: str
) -> tuple[list[Any], list[Any], list[Any], dict[_Key, dict[str, Any]]]:
    """The panels, x values, y values (each sorted) and the statistics of every present cell,
    keyed ``(panel, y, x)``."""
    axes = {"x": x, "y": y} if panel is None else {"x": x, "y": y, "panel": panel}
    for role, name in axes.items():
        if not isinstance(name, str):
            raise IterationHeadsError(f"{role} must be a column name, got {type(name).__name__}")
    if len(set(axes.values())) != len(axes):
        raise IterationHeadsError(f"x, y and panel must be different columns, got {axes}")
    if isinstance(table, pd.DataFrame) and table.empty:
        raise IterationHeadsError("the table has no rows: nothing to draw")
    by = [y, x] if panel is None else [panel, y, x]
    stats = aggregate_seeds(table, by, value=value, formed=formed)
    cells: dict[_Key, dict[str, Any]] = {}
    for row in stats.to_dict("records"):
        key = tuple(_plain(row[n], n) for n in by)
        cells[key if panel is not None else (None, *key)] = row
    panels, ys, xs = ({k[i] for k in cells} for i in range(3))
    return *(sorted(v, key=_order) for v in (panels, xs, ys)), cells  # type: ignore[return-value]


def _mean_text(row: dict[str, Any] | None) -> str:
    """``"0.97 ±0.02"`` (two decimals, none from 100), ``"0.97"`` for one run, ``""`` for none."""
    if row is None or math.isnan(row["mean"]):
        return ""
    digits = 2 if abs(row["mean"]) < 100 else 0
    text = f"{row['mean']:.{digits}f}"
    return text if math.isnan(row["std"]) else f"{text} ±{row['std']:.{digits}f}"


HOVER_FIELDS = ("runs", "seeds", "std", "min", "max", "formed_count")
"""The statistics each heatmap cell of :func:`sweep_heatmaps` carries as ``customdata``."""


def _field(grid: list[list[dict[str, Any] | None]], name: str | Sequence[str]) -> list[list[Any]]:
    """One statistic (or a list of them) of every cell of a grid; NaN for a missing cell."""
    if isinstance(name, str):
        return [[math.nan if r is None else r[name] for r in row] for row in grid]
    return [[[math.nan if r is None else r[n] for n in name] for r in row] for row in grid]


def _formed_text(row: dict[str, Any] | None) -> str:
    """``"2/3"``: done runs where the head formed, of the done runs; ``""`` for none."""
    return "" if row is None or not row["runs"] else f"{row['formed_count']}/{row['runs']}"


def sweep_heatmaps(
    table: pd.DataFrame,
    *,
    x: str,
    y: str,
    panel: str | None = None,
    value: str = "accuracy",
    formed: str = "has_circuit",
    title: str | None = None,
) -> go.Figure:
    """The paper's sweep figure: a column of panels per value of ``panel``, each with the mean of
    ``value`` over seeds (top, text ``"0.97 ±0.02"``) and the fraction of seeds where ``formed``
    is true (bottom, text ``"2/3"`` of the done runs), on a ``y`` × ``x`` grid.

    Every panel shares the sorted x and y values of the whole table (categorical axes); a cell
    without runs, or without a done one, is blank (NaN). The top colour scale is 0..1 when
    every mean lies there (accuracies, peakiness), else the means' range.

    Args:
        table: One row per run (see :func:`aggregate_seeds`).
        x: The column along the horizontal axis, e.g. ``"model.d_model"``.
        y: The column along the vertical axis, e.g. ``"data.max_len"``.
        panel: The column whose values make the columns of panels (e.g. ``"data.cot"``); None
            for one column.
        value: The numeric column averaged in the top row.
        formed: The true/false column counted in the bottom row.
        title: The figure's title (default: says what is drawn).

    Example:
        >>> table = pd.DataFrame({"model.d_model": [16, 16, 32], "data.max_len": [4, 4, 4],
        ...                       "data.cot": [True, True, False], "seed": [0, 1, 0],
        ...                       "status": ["done"] * 3, "accuracy": [0.9, 0.7, 1.0],
        ...                       "has_circuit": [True, False, True]})
        >>> fig = sweep_heatmaps(table, x="model.d_model", y="data.max_len", panel="data.cot")
        >>> [trace.name for trace in fig.data][:2]
        ['data.cot=False: mean accuracy', 'data.cot=False: has_circuit']
        >>> fig.data[2].z, fig.data[2].text  # data.cot=True: d_model 32 has no run
        (([0.8, nan],), (['0.80 ±0.14', ''],))
    """
    panels, xs, ys, cells = _grid(table, x, y, panel, value, formed)
    prefixes = ["" if panel is None else f"{panel}={_label(p)}: " for p in panels]
    titles = [f"{p}mean {value}" for p in prefixes] + [
        f"{p}{formed} (of done runs)" for p in prefixes
    ]
    fig = make_subplots(
        rows=2,
        cols=len(panels),
        subplot_titles=titles,
        horizontal_spacing=min(0.08, 0.5 / len(panels)),
        vertical_spacing=0.16,
    )
    x_labels, y_labels = [_label(v) for v in xs], [_label(v) for v in ys]
    means = [r["mean"] for r in cells.values() if not math.isnan(r["mean"])]
    unit = not means or (min(means) >= 0 and max(means) <= 1)
    low, high = (0.0, 1.0) if unit else (min(means), max(means))
    where = f"{x} %{{x}}, {y} %{{y}}"
    for col, (p, prefix) in enumerate(zip(panels, prefixes, strict=True), start=1):
        grid = [[cells.get((p, yv, xv)) for xv in xs] for yv in ys]
        common = {"x": x_labels, "y": y_labels, "customdata": _field(grid, HOVER_FIELDS)}
        fig.add_trace(
            go.Heatmap(
                z=_field(grid, "mean"),
                text=[[_mean_text(r) for r in row] for row in grid],
                texttemplate="%{text}",
                coloraxis="coloraxis",
                name=f"{prefix}mean {value}",
                hovertemplate=f"{where}: mean {value} %{{z:.3f}} ± %{{customdata[2]:.3f}} "
                "(min %{customdata[3]:.3f}, max %{customdata[4]:.3f}); "
                "%{customdata[0]} of %{customdata[1]} runs done<extra></extra>",
                **common,
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Heatmap(
                z=_field(grid, "formed"),
                text=[[_formed_text(r) for r in row] for row in grid],
                texttemplate="%{text}",
                coloraxis="coloraxis2",
                name=f"{prefix}{formed}",
                hovertemplate=f"{where}: {formed} in %{{customdata[5]}} of %{{customdata[0]}} "
                "done runs (%{customdata[1]} seeds)<extra></extra>",
                **common,
            ),
            row=2,
            col=col,
        )
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=x_labels, title_text=x)
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=y_labels)
    fig.update_yaxes(title_text=y, col=1)
    bar = {"len": 0.4, "thickness": 15}
    fig.update_layout(
        title=title or f"{value} (mean over seeds) and {formed} (fraction of seeds): {y} × {x}",
        coloraxis={
            "colorscale": "Viridis",
            "cmin": low,
            "cmax": high,
            "colorbar": {**bar, "y": 0.8, "title": value},
        },
        coloraxis2={
            "colorscale": "Blues",
            "cmin": 0,
            "cmax": 1,
            "colorbar": {**bar, "y": 0.2, "title": formed},
        },
        height=2 * (170 + 30 * len(ys)) + 120,
        width=160 + len(panels) * max(280, 60 * len(xs)),
    )
    return fig


def _markdown_cell(row: dict[str, Any] | None) -> str:
    """``"0.97 ±0.02 (formed 2/3)"``, with ``; 3/4 done`` when some runs are not done."""
    if row is None:
        return ""
    if not row["runs"]:
        return f"– (0/{row['seeds']} done)"
    done = f"; {row['runs']}/{row['seeds']} done" if row["seeds"] > row["runs"] else ""
    return f"{_mean_text(row) or '–'} (formed {row['formed_count']}/{row['runs']}{done})"


def heatmap_markdown(
    table: pd.DataFrame,
    *,
    x: str,
    y: str,
    panel: str | None = None,
    value: str = "accuracy",
    formed: str = "has_circuit",
) -> str:
    """The grids of :func:`sweep_heatmaps` as markdown tables, one per value of ``panel`` (each
    under a bold ``panel=value`` line): rows are the ``y`` values, columns the ``x`` values,
    cells ``"mean ±std (formed k/n)"`` over the n done runs (``; n/m done`` when some of the m
    seeds are not done); a cell without runs is empty.

    Example:
        >>> table = pd.DataFrame({"model.d_model": [16, 16, 32], "data.max_len": [4, 4, 6],
        ...                       "seed": [0, 1, 0], "status": ["done", "todo", "done"],
        ...                       "accuracy": [0.9, None, 1.0],
        ...                       "has_circuit": [True, None, True]})
        >>> print(heatmap_markdown(table, x="model.d_model", y="data.max_len"))
        | data.max_len \\ model.d_model | 16 | 32 |
        |---|---|---|
        | 4 | 0.90 (formed 1/1; 1/2 done) |  |
        | 6 |  | 1.00 (formed 1/1) |
    """
    panels, xs, ys, cells = _grid(table, x, y, panel, value, formed)

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    blocks = []
    for p in panels:
        lines = [] if panel is None else [f"**{cell(panel)}={cell(_label(p))}**", ""]
        lines.append(
            f"| {cell(y)} \\ {cell(x)} | " + " | ".join(cell(_label(v)) for v in xs) + " |"
        )
        lines.append("|---|" + "---|" * len(xs))
        for yv in ys:
            texts = [cell(_markdown_cell(cells.get((p, yv, xv)))) for xv in xs]
            lines.append(f"| {cell(_label(yv))} | " + " | ".join(texts) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
