"""Sweep specs: the product of the axes with its rules, fields checked before anything runs,
a tiny grid trained locally and read back from its files, and a rerun that trains nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from iteration_heads.cli import main
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.results_page import sweep_section
from iteration_heads.runs.sweep import SweepSpec, cell_spec, dry_run, run_sweep
from iteration_heads.runs.sweep_results import collect, write_table

TINY = Path(__file__).parents[2] / "examples" / "sweeps" / "tiny.toml"


def test_cells_are_the_product_minus_excluded_plus_included() -> None:
    spec = SweepSpec.from_dict({
        "fixed": {"data.task": "copy", "train.epochs": 2},
        "axes": {"model.d_model": [16, 32], "data.max_len": [3, 4], "seed": [0, 1, 2]},
        "exclude": [{"model.d_model": 16, "data.max_len": 4}],
        "include": [{"model.d_model": 8, "data.max_len": 3, "seed": 9}],
    })  # fmt: skip
    cells = spec.cells()
    assert len(cells) == 2 * 2 * 3 - 3 + 1
    assert not any(c.model.d_model == 16 and c.data.max_len == 4 for c in cells)
    extra = [c for c in cells if c.model.d_model == 8]
    assert len(extra) == 1 and extra[0].train.seed == extra[0].data.seed == 9
    assert all(c.model.max_len == c.data.max_len and c.train.threads == 1 for c in cells)
    assert len({c.key() for c in cells}) == len(cells)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"axes": {"model.width": [1]}}, "unknown sweep field 'model.width'"),
        ({"axes": {"optimizer.lr": [1]}}, "unknown sweep field 'optimizer.lr'"),
        ({"axes": {"seed": []}}, "expected a non-empty list"),
        ({"axis": {}}, "unknown sweep spec keys \\['axis'\\]"),
        ({"fixed": {"seed": 1}, "axes": {"seed": [1]}}, "both fixed and an axis"),
        ({"axes": {"model.d_model": [0]}}, "sweep cell .*d_model"),
        ({"exclude": {"seed": 1}}, "must be tables"),
    ],
)
def test_bad_specs_get_one_line_errors(spec, message) -> None:
    with pytest.raises(IterationHeadsError, match=message):
        SweepSpec.from_dict(spec).cells()


def test_a_tiny_grid_trains_once_and_reads_back(tmp_path, capsys) -> None:
    spec = SweepSpec.from_toml(TINY)
    assert len(spec.cells()) == 8
    runs = tmp_path / "runs"
    run_sweep(spec.__class__.from_dict({**_as_dict(spec), "axes": {**spec.axes, "seed": [0]}}),
              runs, jobs=2, log=lambda line: None)  # fmt: skip
    assert dry_run(spec, runs).splitlines()[0] == "sweep 'tiny': 8 cells, 4 finished, 4 to train"
    assert (
        main(["sweep", str(TINY), "--runs", str(runs), "--out", str(tmp_path), "--jobs", "2"]) == 0
    )
    table = collect(spec, runs)
    assert (table["status"] == "done").all() and len(table) == 8
    assert table["accuracy"].between(0, 1).all()
    assert (tmp_path / "tiny.csv").is_file() and "| model.d_model |" in (
        tmp_path / "tiny.md"
    ).read_text()
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("model.safetensors")}
    assert main(["sweep", str(TINY), "--runs", str(runs), "--out", str(tmp_path)]) == 0
    after = {p: p.stat().st_mtime_ns for p in runs.rglob("model.safetensors")}
    assert before == after  # a rerun trains nothing
    capsys.readouterr()
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert "is not a file" in capsys.readouterr().err


def _as_dict(spec: SweepSpec) -> dict:
    return {"name": spec.name, "recipe": spec.recipe, "fixed": spec.fixed, "axes": spec.axes}


def test_a_failing_cell_is_recorded_and_does_not_stop_the_others(tmp_path) -> None:
    spec = SweepSpec.from_dict({
        "name": "broken",
        "fixed": {"data.task": "copy", "data.max_len": 3, "data.n_train": 32, "data.n_test": 32,
                  "train.epochs": 1, "model.d_model": 16},
        "axes": {"train.trainable": [["blocks.9.mlp"], ["blocks.1.mlp"]]},  # no block 9
    })  # fmt: skip
    runs = tmp_path / "runs"
    run_sweep(spec, runs, jobs=2, log=lambda line: None)
    table = collect(spec, runs)
    assert sorted(table["status"]) == ["done", "failed"]
    failed = table[table["status"] == "failed"]
    assert "blocks.9.mlp" in failed["error"].iloc[0] and "\n" not in failed["error"].iloc[0]
    assert failed["train.trainable"].iloc[0] == ["blocks.9.mlp"]
    # a rerun leaves the failed cell alone; --retry-failed trains it again (and fails again)
    run_sweep(spec, runs, log=lambda line: None)
    messages: list[str] = []
    run_sweep(spec, runs, retry_failed=True, log=messages.append)
    assert any("failed" in m for m in messages)


def test_variants_are_one_more_axis_and_override_fixed_settings() -> None:
    spec = SweepSpec.from_dict({
        "fixed": {"data.task": "copy", "model.n_layers": 2},
        "variants": {"cot": {}, "no cot": {"data.cot": False}, "1 layer": {"model.n_layers": 1}},
        "axes": {"model.d_model": [16, 32], "seed": [0, 1], "data.max_len": [4]},
        "exclude": [{"variant": "1 layer", "model.d_model": 32}],
        "include": [{"variant": "no cot", "model.d_model": 8, "seed": 5}],
        "figure": {"x": "model.d_model", "y": "data.max_len"},
    })  # fmt: skip
    settings = spec.settings()
    assert len(settings) == 3 * 4 - 2 + 1 and spec.columns()[0] == "variant"
    by_variant = {v: [cell_spec(s) for s in settings if s["variant"] == v]
                  for v in ("cot", "no cot", "1 layer")}  # fmt: skip
    assert all(c.data.cot and c.model.n_layers == 2 for c in by_variant["cot"])
    assert all(not c.data.cot for c in by_variant["no cot"]) and len(by_variant["no cot"]) == 5
    assert [c.model.d_model for c in by_variant["1 layer"]] == [16, 16]
    assert all(c.model.n_layers == 1 for c in by_variant["1 layer"])
    assert spec.figure_axes() == {"x": "model.d_model", "y": "data.max_len", "panel": "variant",
                                  "value": "accuracy"}  # fmt: skip


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"variants": {"a": {"seed": 1}}, "axes": {"seed": [0]}}, "sets axis fields \\['seed'\\]"),
        ({"variants": {"a": 3}}, "variant 'a' must be a table"),
        ({"variants": {"a": {}}, "exclude": [{"variant": "b"}]}, "names variant 'b'"),
        ({"axes": {"seed": [0]}, "figure": {"x": "seed"}}, "expected x and y"),
        ({"axes": {"seed": [0]}, "figure": {"x": "seed", "y": "model.d_model"}},
         "x = 'seed': seeds are aggregated"),
        ({"axes": {"seed": [0], "data.max_len": [3]},
          "figure": {"x": "data.max_len", "y": "model.d_model"}},
         "y = 'model.d_model' is not swept"),
        ({"fixed": {"variant": "a"}}, "set by \\[variants\\]"),
    ],
)  # fmt: skip
def test_bad_variants_and_figures_get_one_line_errors(spec, message) -> None:
    with pytest.raises(IterationHeadsError, match=message):
        SweepSpec.from_dict(spec)


def test_collect_writes_the_table_and_the_heatmaps_of_the_figure(tmp_path) -> None:
    spec = SweepSpec.from_dict({
        "name": "fig",
        "fixed": {"data.task": "copy", "data.n_train": 32, "data.n_test": 32,
                  "train.max_steps": 4, "train.epochs": 100, "train.eval_every": 1},
        "variants": {"2 layers": {}, "1 layer": {"model.n_layers": 1}},
        "axes": {"model.d_model": [16], "data.max_len": [3], "seed": [0, 1]},
        "figure": {"x": "model.d_model", "y": "data.max_len"},
    })  # fmt: skip
    runs = tmp_path / "runs"
    run_sweep(spec, runs, jobs=2, log=lambda line: None)
    written = write_table(spec, runs, tmp_path / "out", command="iteration-heads sweep fig.toml")
    assert [p.name for p in written] == ["fig.csv", "fig.curves.csv", "fig.md", "fig.html"]
    assert sweep_section(tmp_path / "out")[-1] == (
        "| fig | `iteration-heads sweep fig.toml` | [table](results/fig.md), "
        "[html](results/fig.html), [csv](results/fig.csv), [curves](results/fig.curves.csv) |"
    )
    # every evaluation of every run: 4 runs, evaluated every epoch for 4 epochs (and at 0)
    curves = pd.read_csv(tmp_path / "out" / "fig.curves.csv")
    assert curves.groupby("name").epoch.apply(list).tolist() == [[0, 1, 2, 3, 4]] * 4
    assert {"variant", "seed", "train_loss", "accuracy", "iteration_peakiness_1"} <= set(curves)
    two_layers = curves[curves.variant == "2 layers"]
    assert two_layers.iteration_peakiness_1.notna().all()
    assert curves[curves.variant == "1 layer"].iteration_peakiness_1.isna().all()
    table = collect(spec, runs)
    assert table["steps"].tolist() == [4, 4, 4, 4]  # 32 sequences x 3 lengths in batches of 256
    assert table["epochs"].tolist() == [4, 4, 4, 4]
    # 4 steps learn nothing; the outcome follows the first epochs at target and at accuracy
    assert table["outcome"].tolist() == ["not learned"] * 4
    assert table["first_epoch_target"].isna().all() and table["first_epoch_accuracy"].isna().all()
    page = (tmp_path / "out" / "fig.md").read_text()
    assert "**variant=1 layer**" in page and "4 done cells" not in page
    assert "4 done, 0 todo, 0 failed cells; training time of the done cells: " in page
    over_seeds = page.split("## Over seeds")[1].split("## Runs")[0]
    assert "| variant | model.d_model | data.max_len | runs | seeds |" in over_seeds
    assert over_seeds.count("| 2 | 2 |") == 2  # each variant: 2 done runs of 2 seeds
    assert "| formed | formed_count | at_target | alternative |" in over_seeds
    assert over_seeds.count("| 0 | 0 | 0 |") == 2  # no run formed, reached target or solved
    assert "Plotly.newPlot" in (tmp_path / "out" / "fig.html").read_text()
    assert "plotly.js v" in (tmp_path / "out" / "fig.html").read_text()  # works offline
    (tmp_path / "out" / "plotly.min.js").write_text("")  # as in docs/results/: shared
    write_table(spec, runs, tmp_path / "out")
    assert "plotly.js v" not in (tmp_path / "out" / "fig.html").read_text()


def test_runs_go_to_the_gpu_only_when_there_is_one_or_the_spec_says() -> None:
    import torch

    spec = SweepSpec.from_dict({"axes": {"seed": [0]}})
    keys = [c.key() for c in spec.cells()]
    assert [c.key() for c in spec.on_device("cpu").cells()] == keys  # cache keys unchanged
    chosen = SweepSpec.from_dict({"axes": {"seed": [0]}, "fixed": {"train.device": "cpu"}})
    assert chosen.on_device("cuda") is chosen  # the spec's own choice wins
    if not torch.cuda.is_available():
        assert [c.key() for c in spec.on_device("auto").cells()] == keys
        with pytest.raises(IterationHeadsError, match="cuda"):
            spec.on_device("cuda").cells()
    with pytest.raises(IterationHeadsError, match="device='tpu'"):
        spec.on_device("tpu")


# the first cell of every committed spec, as it was before specs had a recipe: its run folder
COMMITTED_FIRST_CELLS = {
    "authors-block": "polynomial-cot-d64-L8-2x1-s0-steps3200",
    "controls-one-head": "polynomial-cot-d64-L8-1x1-s0-e150",
    "ingredients-more-seeds": "polynomial-cot-d64-L8-2x1-s5-e200",
    "low-width": "polynomial-cot-d32-L8-2x2-s0-steps3200",
    "recipe-search": "polynomial-cot-d64-L8-2x1-s0-steps3200",
    "scaling": "polynomial-cot-d16-L4-2x1-s0-steps2500",
    "tiny": "copy-cot-d16-L3-2x1-s0-e3",
}


def test_the_recipe_is_the_trains_by_default_and_paper_on_request() -> None:
    from iteration_heads.training.recipe import recipe_model_config, recipe_train_config

    library = SweepSpec.from_dict({"axes": {"seed": [0]}}).cells()[0]
    train = recipe_model_config(), recipe_train_config()
    assert (library.model.n_heads, library.train.lr, library.train.warmup_steps) == (
        train[0].n_heads, train[1].lr, train[1].warmup_steps)  # fmt: skip
    paper = SweepSpec.from_dict({"recipe": "paper", "axes": {"seed": [0]}}).cells()[0]
    assert (paper.model.n_heads, paper.train.lr, paper.train.warmup_steps) == (1, 3e-4, 0)
    # a spec that states every recipe field trains the same runs (same hash) under both
    explicit = {"fixed": {"model.n_heads": 1, "train.lr": 1e-3, "train.warmup_steps": 0},
                "axes": {"seed": [0, 1]}}  # fmt: skip
    keys = {r: [c.key() for c in SweepSpec.from_dict({**explicit, "recipe": r}).cells()]
            for r in ("library", "paper")}  # fmt: skip
    assert keys["library"] == keys["paper"]
    assert cell_spec({"seed": 0}, "paper").key() == paper.key()
    for bad in ("Paper", 1, None):
        with pytest.raises(IterationHeadsError, match=r"recipe=.*expected 'library' or 'paper'"):
            SweepSpec.from_dict({"recipe": bad})
    with pytest.raises(IterationHeadsError, match="recipe='mine'"):
        cell_spec({"seed": 0}, "mine")


@pytest.mark.parametrize("name, first", COMMITTED_FIRST_CELLS.items())
def test_committed_specs_keep_their_cells(name, first) -> None:
    spec = SweepSpec.from_toml(TINY.parent / f"{name}.toml")
    assert spec.cells()[0].name() == first
    cells = [c.directory("") for c in spec.cells()]
    recomputed = [cell_spec(s, spec.recipe).directory("") for s in spec.settings()]
    assert cells == recomputed and len(set(cells)) == len(cells)


def test_a_seeds_only_table_is_summarised_and_explains_the_detector(tmp_path, monkeypatch):
    from iteration_heads.runs.executors import available_cores
    from iteration_heads.runs.results import RunResult

    spec_file = tmp_path / "seeds.toml"
    spec_file.write_text('name = "seeds"\n[fixed]\n"data.task" = "copy"\n"data.max_len" = 3\n'
                         '"data.n_train" = 32\n"data.n_test" = 16\n"model.d_model" = 16\n'
                         '"train.epochs" = 1\n[axes]\nseed = [0, 1]\n')  # fmt: skip

    def first_epoch(self, key="first_epoch_accuracy"):  # seed 0 at target at epoch 1, step 3
        return (3 if "step" in key else 1) if self.seed == 0 else None

    monkeypatch.setattr(RunResult, "first_epoch", first_epoch)
    runs, out = tmp_path / "runs", tmp_path / "out"
    assert main(["sweep", str(spec_file), "--runs", str(runs), "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    page = (out / "seeds.md").read_text()
    jobs = max(available_cores(), 1)
    assert f"--jobs {jobs} --runs {runs} --out {out}`" in page
    over_seeds = page.split("## Over seeds")[1].split("## Runs")[0]
    assert (
        "| runs | seeds | mean | std | min | max | formed | formed_count | at_target | "
        "alternative | not_learned |" in over_seeds
    )
    assert over_seeds.splitlines()[-2].startswith("| 2 | 2 |")
    assert over_seeds.splitlines()[-2].endswith("| 1 | 0 | 1 |")
    runs_table = page.split("## Runs")[1].strip().splitlines()
    header = [c.strip() for c in runs_table[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in r.strip("|").split("|")), strict=True))
            for r in runs_table[2:]]  # fmt: skip
    assert [r["first_epoch_head"] for r in rows] == ["1", ""]  # not 1.0 next to a missing one
    assert [r["first_step_head"] for r in rows] == ["3", ""]
    assert [r["steps"] for r in rows] == ["1", "1"] and [r["epochs"] for r in rows] == ["1", "1"]
    # a 1-epoch model has no circuit: the row at target says what the detector missed
    assert rows[0]["outcome"] == "head" and rows[0]["has_circuit"] == "False"
    assert rows[0]["note"].startswith("head at target; detect: no EoI head")
    assert rows[1]["note"] == ""
    assert ",1.0," not in (out / "seeds.csv").read_text().split("\n")[1].split("head")[0]


@pytest.mark.parametrize(
    "kind, detect, note",
    [
        ("head", {"has_iteration_circuit": True}, ""),
        ("not learned", {"has_iteration_circuit": False}, ""),
        ("head", {"eoi_heads": [], "iteration_heads": []},
         "head at target; detect: no EoI head, no iteration head"),
        ("head", {"eoi_heads": [[0, 0]], "iteration_heads": [], "iteration_summed_layers": []},
         "head at target; detect: no iteration head"),
        ("head", {"eoi_heads": [], "eoi_summed_layers": [0], "iteration_heads": [[1, 0]],
                  "circuit": {"attention_found": True}, "state_sensitivity": 0.2},
         "head at target; detect: state sensitivity 0.20 < 0.5"),
        ("head", {"eoi_heads": [[1, 0]], "iteration_heads": [[0, 0]], "circuit": None},
         "head at target; detect: EoI head not in a layer before the iteration head"),
        ("alternative circuit", {"has_iteration_circuit": True},
         "alternative circuit; detect: circuit found in the final model"),
    ],
)  # fmt: skip
def test_detector_notes_name_the_missing_part(kind, detect, note) -> None:
    from iteration_heads.runs.sweep_results import detector_note

    assert detector_note(kind, detect) == note
