"""Sweeps never lose data and behave at the edges: a run directory that another process holds
is neither deleted nor trained nor called failed; a finished cell keeps no error or traceback
file; duplicate and huge grids are refused in one line; the spec parser answers any input with
a spec or one line; Ctrl-C stops a real ``iteration-heads sweep`` at once and it resumes."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sweep_helpers import InlineExecutor, write_spec

from iteration_heads.cli import main
from iteration_heads.errors import IterationHeadsError
from iteration_heads.runs.executors import LocalExecutor
from iteration_heads.runs.scheduling import train_seed_batch
from iteration_heads.runs.specs import finished
from iteration_heads.runs.sweep import MAX_CELLS, SweepSpec, dry_run, run_sweep
from iteration_heads.runs.sweep_results import collect, write_table

CLI = Path(sys.executable).with_name("iteration-heads")


def files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def held_start(runs: Path, cell) -> tuple[Path, FileLock]:
    """A cell's run directory as another process leaves it while it starts: its lock held, a
    checkpoint being written, no run.json yet."""
    directory = cell.directory(runs)
    (directory / "checkpoint" / ".epoch-000000.x.tmp").mkdir(parents=True)
    (directory / "checkpoint" / ".epoch-000000.x.tmp" / "model.safetensors").write_text("mine")
    lock = FileLock(str(directory / ".lock"), timeout=0, thread_local=False, is_singleton=False)
    lock.acquire()
    return directory, lock


def test_a_run_held_elsewhere_is_neither_deleted_nor_trained_nor_failed(tmp_path) -> None:
    spec = SweepSpec.from_toml(write_spec(tmp_path, seeds="[0, 1, 2]"))
    runs, cells = tmp_path / "runs", spec.cells()
    directory, lock = held_start(runs, cells[1])
    before = files(directory)
    lines: list[str] = []
    try:
        trained = run_sweep(spec, runs, executor=InlineExecutor(), log=lines.append)
        assert files(directory) == before  # not one file touched, the lock's included
        assert trained == 2
        # the seed-stacking path leaves it alone too
        assert "running elsewhere" in train_seed_batch(cells, str(runs))[cells[1].key()]
        assert files(directory) == before
        table = collect(spec, runs)
        assert list(table["status"]) == ["done", "running", "done"]
        write_table(spec, runs, tmp_path / "out")
        assert (
            "2 done, 0 todo, 0 failed cells, 1 running elsewhere"
            in (tmp_path / "out" / "tiny.md").read_text()
        )
    finally:
        lock.release()
    assert any("running elsewhere" in line for line in lines)
    assert not any("failed" in line for line in lines)
    assert not list(runs.glob("*.error.json")) and not list(runs.glob("*.traceback.txt"))
    # released (the other process died at its start): the next sweep trains it from scratch
    assert run_sweep(spec, runs, executor=InlineExecutor(), log=lines.append) == 3
    assert not list(directory.rglob("*.tmp"))


def test_a_finished_cell_keeps_no_stale_error_or_traceback(tmp_path) -> None:
    spec = SweepSpec.from_toml(write_spec(tmp_path, seeds="[0]"))
    runs, cell = tmp_path / "runs", spec.cells()[0]
    run_sweep(spec, runs, executor=InlineExecutor(), log=lambda line: None)
    stale = [cell.directory(runs).with_name(cell.directory(runs).name + suffix)
             for suffix in (".error.json", ".traceback.txt")]  # fmt: skip
    stale[0].write_text('{"name": "x", "error": "in use"}')
    stale[1].write_text("Traceback ...")
    assert collect(spec, runs)["status"].tolist() == ["done"]
    run_sweep(spec, runs, executor=InlineExecutor(), log=lambda line: None)
    assert not any(path.exists() for path in stale)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"axes": {"seed": [0, 1, 2, 0]}}, "axis 'seed' lists 0 twice"),
        ({"axes": {"train.lr": [0.001, 1e-3]}}, "axis 'train.lr' lists 0.001 twice"),
        ({"axes": {"seed": [0, 1]}, "include": [{"seed": 1}]}, "are the same run"),
        ({"axes": {"seed": [0]}, "variants": {"a": {}, "b": {}}}, "are the same run"),
        ({"axes": {"seed": [0]}, "include": [{"seed": 5}, {"seed": 5}]}, "are the same run"),
    ],
)
def test_a_cell_listed_twice_is_refused_in_one_line(spec, message) -> None:
    with pytest.raises(IterationHeadsError, match=message) as error:
        SweepSpec.from_dict(spec).cells()
    assert "\n" not in str(error.value)


def test_a_huge_grid_is_refused_at_once_with_its_count(tmp_path, capsys) -> None:
    axes = {"seed": list(range(100)), "train.lr": [i / 1e4 for i in range(1, 101)],
            "model.d_model": list(range(8, 108))}  # fmt: skip
    tick = time.perf_counter()
    with pytest.raises(IterationHeadsError, match=f"1000000 cells .*at most {MAX_CELLS}"):
        SweepSpec.from_dict({"axes": axes})
    assert time.perf_counter() - tick < 1
    path = tmp_path / "huge.toml"
    path.write_text("[axes]\n" + "".join(f'"{k}" = {v}\n' for k, v in axes.items()))
    assert main(["sweep", str(path), "--dry-run", "--runs", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1000000 cells" in err and str(MAX_CELLS) in err
    assert not (tmp_path / "r").exists()
    # at the limit, the dry run and the table agree on the cells, each counted once
    spec = SweepSpec.from_dict({"axes": {"seed": [0, 1, 2]}, "include": [{"seed": 7}]})
    assert dry_run(spec, tmp_path / "r").splitlines()[0].startswith("sweep 'sweep': 4 cells")
    assert len(collect(spec, tmp_path / "r")) == 4


def test_a_spec_that_is_not_utf8_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'name = "\xff\xfe"\n')
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not UTF-8" in err and "Traceback" not in err


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_give_a_spec_or_one_line(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("spec") / "spec.toml"
    path.write_bytes(data)
    try:
        SweepSpec.from_toml(path).cells()
    except IterationHeadsError as error:
        assert "\n" not in str(error)


FIELDS = ["seed", "variant", "data.max_len", "data.task", "model.d_model", "train.epochs",
          "train.lr", "model.width", "x", "y", "panel", "value"]  # fmt: skip
SCALARS = (st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=True) | st.text(max_size=6)
           | st.sampled_from(["copy", "parity", "data.max_len", "seed"]))  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
SPECS = st.dictionaries(
    st.sampled_from(["name", "fixed", "axes", "variants", "exclude", "include", "figure", "z"]),
    VALUES,
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(SPECS)
@example({"variants": {"a": {}}, "exclude": [{"variant": ["a"]}]})
@example({"axes": {3: [1]}})
def test_any_toml_table_gives_a_spec_or_one_line(data) -> None:
    try:
        spec = SweepSpec.from_dict(data)
        cells = spec.cells()
        assert len(cells) <= MAX_CELLS
    except IterationHeadsError as error:
        assert "\n" not in str(error)


def test_ctrl_c_stops_a_real_sweep_at_once_and_it_resumes(tmp_path) -> None:
    """SIGINT to ``iteration-heads sweep --jobs 2`` while its cells train: exit 130 within a
    few seconds, one line saying what finished and the command that resumes, no traceback
    and no leaked semaphore; the resumed sweep (the same command) ends as an uninterrupted one, its stderr clean."""
    for epochs in (20, 60, 180):  # longer if a loaded machine let the sweep end first
        folder = tmp_path / f"epochs-{epochs}"
        folder.mkdir()
        spec_file = write_spec(folder, epochs=epochs, seeds="[0, 1]", every=10)
        runs, out = folder / "runs", folder / "out"
        command = [str(CLI), "sweep", str(spec_file), "--runs", str(runs), "--out", str(out),
                   "--jobs", "2", "--no-progress"]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)  # fmt: skip
        deadline = time.perf_counter() + 120
        while not list(runs.glob("*/history.jsonl")) and time.perf_counter() < deadline:
            time.sleep(0.05)  # a cell trains
        tick = time.perf_counter()
        process.send_signal(signal.SIGINT)
        status = process.wait(30)
        cells = SweepSpec.from_toml(spec_file).cells()
        if not (status == 0 and all(finished(cell, runs) for cell in cells)):
            break  # else the sweep ended before the signal (a loaded machine): a longer one
    tmp_path = folder
    assert status == 130
    seconds = time.perf_counter() - tick
    err = process.stderr.read() if process.stderr else ""
    assert seconds < 8, seconds  # about 2 s of it is the interpreter's exit with torch loaded
    assert err.count("\n") == 1, err
    assert "cells finished" in err and f"resume with: iteration-heads sweep {spec_file}" in err
    assert "leaked" not in err and "Traceback" not in err
    spec = SweepSpec.from_toml(spec_file)
    assert not all(finished(cell, runs) for cell in spec.cells())
    resumed_run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed_run.returncode == 0, resumed_run.stderr
    # the local workers' pool is released before exit: no "Exception ignored" from its thread
    assert "Traceback" not in resumed_run.stderr and "Exception" not in resumed_run.stderr
    assert all(finished(cell, runs) for cell in spec.cells())
    run_sweep(spec, tmp_path / "again", executor=InlineExecutor(), log=lambda line: None)
    resumed, again = collect(spec, runs), collect(spec, tmp_path / "again")
    for column in ("accuracy", "iteration_peakiness", "epochs", "first_epoch_accuracy"):
        assert resumed[column].tolist() == again[column].tolist() or all(
            isinstance(a, float) and math.isnan(a) and math.isnan(b)
            for a, b in zip(resumed[column], again[column], strict=True)
        )


def test_the_local_executor_releases_its_workers_on_leaving() -> None:
    """Leaving a :class:`LocalExecutor` normally waits for its calls and ends its workers: a
    pool left to the interpreter's exit races its shutdown there (an "Exception ignored ...
    Bad file descriptor" traceback at the end of every sweep that trained)."""
    with LocalExecutor(jobs=1) as executor:
        futures = executor.submit_all([(abs, (-3,))])
        workers = list(executor._pool._processes.values())  # type: ignore[union-attr]
    assert futures[0].result() == 3
    assert workers and not any(worker.is_alive() for worker in workers)


def test_an_interrupted_sweep_leaves_the_callers_signal_handlers_as_found(
    tmp_path, monkeypatch, capsys
) -> None:
    """``main(["sweep", ...])`` inside a longer process (a notebook, a test worker): after a
    Ctrl-C it returns 130 and Ctrl-C still interrupts the caller (it used to stay ignored, and
    every subprocess started later inherited that)."""
    import iteration_heads.cli.sweep as sweep_command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_command, "run_sweep", interrupted, raising=False)
    monkeypatch.setattr("iteration_heads.runs.sweep.run_sweep", interrupted)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    spec_file = write_spec(tmp_path, epochs=1)
    argv = ["sweep", str(spec_file), "--runs", str(tmp_path / "runs"), "--jobs", "1"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 130
    assert "interrupted: 0 of" in capsys.readouterr().err
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
