"""Sweep specs: the product of the axes with its rules, fields checked before anything runs,
a tiny grid trained locally and read back from its files, and a rerun that trains nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from iteration_heads.cli import main
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.sweep import SweepSpec, collect, dry_run, run_sweep

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
    return {"name": spec.name, "fixed": spec.fixed, "axes": spec.axes}


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
