"""Sweep heatmaps from hand-built run tables: the exact statistics over seeds, not-done runs
counted but not averaged, one column of panels per panel value with the right z-values, NaN
for missing cells, the markdown grids, and one-line errors for bad tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from iteration_heads.errors import IterationHeadsError
from iteration_heads.viz.export import save_html
from iteration_heads.viz.sweep_figures import (
    AGGREGATE_COLUMNS,
    aggregate_seeds,
    heatmap_markdown,
    sweep_heatmaps,
)


def run(d, L, variant, seed, status="done", accuracy=None, formed=None, **extra):
    row = {"model.d_model": d, "data.max_len": L, "variant": variant, "seed": seed}
    row |= {"name": f"{variant}-d{d}-L{L}-s{seed}", "status": status, **extra}
    if status == "done":
        row |= {"accuracy": accuracy, "has_circuit": formed, "first_epoch_head": 3 * seed}
    elif status == "failed":
        row["error"] = "RuntimeError: boom"
    return row


@pytest.fixture
def table():
    """Two variants; CoT has d16 × L4 (3 seeds, one todo), d32 × L4 and d16 × L8; no-CoT only
    d32 × L8 (one done, one failed)."""
    rows = [
        run(16, 4, "CoT", 0, accuracy=0.9, formed=True),
        run(16, 4, "CoT", 1, accuracy=0.7, formed=False),
        run(16, 4, "CoT", 2, status="todo"),
        run(32, 4, "CoT", 0, accuracy=1.0, formed=True),
        run(32, 4, "CoT", 1, accuracy=0.96, formed=True),
        run(16, 8, "CoT", 0, accuracy=0.5, formed=False),
        run(32, 8, "no CoT", 0, accuracy=0.25, formed=False),
        run(32, 8, "no CoT", 1, status="failed"),
    ]
    return pd.DataFrame(rows)


def test_aggregate_seeds_gives_the_exact_statistics(table):
    stats = aggregate_seeds(table, ["variant", "data.max_len", "model.d_model"])
    assert list(stats.columns) == ["variant", "data.max_len", "model.d_model", *AGGREGATE_COLUMNS]
    keys = [tuple(k) for k in stats[["variant", "data.max_len", "model.d_model"]].values]
    assert keys == [("CoT", 4, 16), ("CoT", 4, 32), ("CoT", 8, 16), ("no CoT", 8, 32)]
    first = stats.iloc[0]
    assert (first["runs"], first["seeds"], first["formed_count"]) == (2, 3, 1)
    assert first["mean"] == pytest.approx(0.8)
    assert first["std"] == pytest.approx(math.sqrt(0.02))  # ddof=1 of 0.9, 0.7
    assert (first["min"], first["max"], first["formed"]) == (0.7, 0.9, 0.5)
    second = stats.iloc[1]
    assert second["mean"] == pytest.approx(0.98) and second["formed"] == 1.0
    assert second["std"] == pytest.approx(np.std([1.0, 0.96], ddof=1))
    single = stats.iloc[2]  # one run: no spread
    assert single["runs"] == single["seeds"] == 1 and math.isnan(single["std"])
    assert single["mean"] == single["min"] == single["max"] == 0.5 and single["formed"] == 0.0
    failed = stats.iloc[3]  # the failed run counts in seeds only
    assert (failed["runs"], failed["seeds"], failed["mean"]) == (1, 2, 0.25)


def test_aggregate_seeds_other_value_columns_and_no_done_run(table):
    epochs = aggregate_seeds(table, "variant", value="first_epoch_head", seed=None)
    assert epochs["mean"].tolist() == pytest.approx([6 / 5, 0.0])  # CoT seeds 0,1,0,1,0
    todo = aggregate_seeds(table[table["status"] != "done"], ["variant"])
    assert todo["runs"].tolist() == [0, 0] and todo["seeds"].tolist() == [1, 1]
    assert todo[["mean", "std", "min", "max", "formed"]].isna().all().all()
    # every run still to train: no result columns yet, still a grid of seeds
    bare = table[["model.d_model", "data.max_len", "seed"]].assign(status="todo")
    grid = aggregate_seeds(bare, ["data.max_len", "model.d_model"])
    assert grid["seeds"].tolist() == [3, 2, 1, 2] and grid["runs"].sum() == 0


def test_missing_values_and_csv_style_booleans():
    table = pd.DataFrame(
        {"x": [1, 1, 1], "seed": [0, 1, 2], "accuracy": [0.5, np.nan, 1.0],
         "has_circuit": ["True", "false", None]}
    )  # fmt: skip
    [row] = aggregate_seeds(table, ["x"]).to_dict("records")  # no status column: all done
    assert row["runs"] == 3 and row["mean"] == 0.75  # the missing accuracy is left out
    assert row["formed_count"] == 1 and row["formed"] == pytest.approx(1 / 3)


def test_seeds_that_pool_another_axis_raise_but_repeats_count_once(table):
    with pytest.raises(IterationHeadsError, match=r"two runs with seed=0 that differ in .*"
                       r"data.max_len.*add the varying setting to by"):  # fmt: skip
        aggregate_seeds(table, ["variant", "model.d_model"])
    pooled = aggregate_seeds(table, ["variant", "model.d_model"], seed=None)
    assert pooled["seeds"].tolist() == [4, 2, 2]
    twice = pd.concat([table, table.iloc[[0]]])
    assert aggregate_seeds(twice, ["variant", "data.max_len", "model.d_model"])["seeds"][0] == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": ["model.width"]}, r"by column 'model.width' is not in the table; columns: \["),
        ({"by": ["variant"], "value": "acc"}, "value column 'acc' is not in the table"),
        ({"by": ["variant"], "formed": "circuit"}, "formed column 'circuit' is not in the"),
        ({"by": []}, "by is empty"),
        ({"by": ["variant", "variant"]}, "names a column twice"),
        ({"by": ["seed"]}, "seed column 'seed' is what the runs are averaged over"),
        ({"by": ["variant"], "value": "name"}, "value column 'name' holds 'CoT-d16-L4-s0'"),
        ({"by": ["variant"], "formed": "variant"}, "formed column 'variant' holds 'CoT'"),
    ],
)
def test_aggregate_seeds_errors(table, kwargs, message):
    with pytest.raises(IterationHeadsError, match=message) as info:
        aggregate_seeds(table, **kwargs)
    assert "\n" not in str(info.value)


def test_a_table_that_is_not_a_dataframe_raises():
    with pytest.raises(IterationHeadsError, match=r"must be a pandas DataFrame \(.*\), got list"):
        aggregate_seeds([{"variant": "CoT"}], ["variant"])


def test_sweep_heatmaps_panels_and_z_values(table):
    fig = sweep_heatmaps(table, x="model.d_model", y="data.max_len", panel="variant")
    assert len(fig.data) == 4 and all(trace.type == "heatmap" for trace in fig.data)
    cot_mean, cot_formed, no_mean, no_formed = fig.data
    assert [t.name for t in fig.data] == ["variant=CoT: mean accuracy", "variant=CoT: has_circuit",
                                          "variant=no CoT: mean accuracy", "variant=no CoT: has_circuit"]  # fmt: skip
    # shared sorted categorical axes: y = max_len (4, 8), x = d_model (16, 32)
    assert list(cot_mean.x) == ["16", "32"] and list(cot_mean.y) == ["4", "8"]
    assert np.allclose(cot_mean.z, [[0.8, 0.98], [0.5, np.nan]], equal_nan=True)
    assert np.allclose(cot_formed.z, [[0.5, 1.0], [0.0, np.nan]], equal_nan=True)
    assert np.allclose(no_mean.z, [[np.nan, np.nan], [np.nan, 0.25]], equal_nan=True)
    assert np.allclose(no_formed.z, [[np.nan, np.nan], [np.nan, 0.0]], equal_nan=True)
    assert [list(r) for r in cot_mean.text] == [["0.80 ±0.14", "0.98 ±0.03"], ["0.50", ""]]
    assert [list(r) for r in cot_formed.text] == [["1/2", "2/2"], ["0/1", ""]]
    assert [list(r) for r in no_formed.text] == [["", ""], ["", "0/1"]]
    assert list(no_mean.customdata[1][1][:2]) == [1, 2]  # 1 done run of 2 seeds
    # two rows × two panels of subplots, one colour scale per row, 0..1 for accuracy
    assert [a.text for a in fig.layout.annotations][:2] == ["variant=CoT: mean accuracy",
                                                            "variant=no CoT: mean accuracy"]  # fmt: skip
    assert {t.xaxis for t in fig.data} == {"x", "x2", "x3", "x4"}
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0, 1)
    assert fig.layout.xaxis.type == "category" and list(fig.layout.xaxis.categoryarray) == [
        "16",
        "32",
    ]


def test_sweep_heatmaps_one_column_bool_panels_and_other_values(table, tmp_path):
    single = sweep_heatmaps(table[table["variant"] == "CoT"], x="model.d_model", y="data.max_len")
    assert [t.name for t in single.data] == ["mean accuracy", "has_circuit"]
    assert np.allclose(single.data[0].z, [[0.8, 0.98], [0.5, np.nan]], equal_nan=True)
    cot = table.assign(**{"data.cot": table["variant"] == "CoT"})
    fig = sweep_heatmaps(cot, x="model.d_model", y="data.max_len", panel="data.cot", title="T")
    assert [t.name for t in fig.data][::2] == ["data.cot=False: mean accuracy",
                                               "data.cot=True: mean accuracy"]  # fmt: skip
    assert fig.layout.title.text == "T"
    epochs = sweep_heatmaps(table, x="model.d_model", y="data.max_len", value="first_epoch_head")
    assert (epochs.layout.coloraxis.cmin, epochs.layout.coloraxis.cmax) == (0.0, 1.5)
    html = save_html(fig, tmp_path / "sweep.html").read_text()
    assert "data.cot=True: mean accuracy" in html


def test_sweep_heatmaps_errors(table):
    with pytest.raises(IterationHeadsError, match="x, y and panel must be different columns"):
        sweep_heatmaps(table, x="model.d_model", y="model.d_model")
    with pytest.raises(IterationHeadsError, match="by column 'layers' is not in the table"):
        sweep_heatmaps(table, x="model.d_model", y="data.max_len", panel="layers")
    with pytest.raises(IterationHeadsError, match="the table has no rows"):
        sweep_heatmaps(table.iloc[:0], x="model.d_model", y="data.max_len")
    clash = pd.concat([table, pd.DataFrame([run(16, 4, "no CoT", 0, accuracy=0.1, formed=False)])])
    with pytest.raises(IterationHeadsError, match=r"seed=0 that differ in \['variant'"):
        sweep_heatmaps(clash, x="model.d_model", y="data.max_len")  # would pool the variants


def test_heatmap_markdown_grids(table):
    text = heatmap_markdown(table, x="model.d_model", y="data.max_len", panel="variant")
    assert text == (
        "**variant=CoT**\n\n"
        "| data.max_len \\ model.d_model | 16 | 32 |\n"
        "|---|---|---|\n"
        "| 4 | 0.80 ±0.14 (formed 1/2; 2/3 done) | 0.98 ±0.03 (formed 2/2) |\n"
        "| 8 | 0.50 (formed 0/1) |  |\n\n"
        "**variant=no CoT**\n\n"
        "| data.max_len \\ model.d_model | 16 | 32 |\n"
        "|---|---|---|\n"
        "| 4 |  |  |\n"
        "| 8 |  | 0.25 (formed 0/1; 1/2 done) |\n"
    )
    todo = table.assign(status="todo", variant="a|b")
    text = heatmap_markdown(todo, x="model.d_model", y="data.max_len", panel="variant")
    assert text.startswith("**variant=a\\|b**") and "| 4 | – (0/3 done) | – (0/2 done) |" in text


def test_a_collected_sweep_with_nothing_trained_draws_an_empty_grid(tmp_path):
    from iteration_heads.runs.sweep import SweepSpec
    from iteration_heads.runs.sweep_results import collect

    axes = {"model.d_model": [16, 32], "data.cot": [True, False], "seed": [0, 1]}
    spec = SweepSpec.from_dict({"fixed": {"data.task": "copy"}, "axes": axes})
    table = collect(spec, tmp_path)  # all todo: no accuracy or has_circuit column yet
    fig = sweep_heatmaps(table, x="model.d_model", y="data.cot")
    assert np.isnan(np.array(fig.data[0].z, dtype=float)).all()
    # runs 0 of seeds 2 in every cell, formed_count 0, no statistics
    assert [[r[i] for i in (0, 1, 5)] for r in fig.data[0].customdata[0]] == [[0, 2, 0]] * 2
    assert list(fig.data[0].y) == ["False", "True"]
    assert heatmap_markdown(table, x="model.d_model", y="data.cot").splitlines()[2] == (
        "| False | – (0/2 done) | – (0/2 done) |"
    )
