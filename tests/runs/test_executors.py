"""Executors: one grid through local processes, submitit's local executor and (slow) a real
local Ray runtime gives the same table cell by cell; a sweep killed part-way trains only its
unfinished cells on a rerun; engines that are missing or options that do not fit get one-line
errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from iteration_heads.cli import main
from iteration_heads.errors import IterationHeadsError
from iteration_heads.runs.cluster_executors import make_executor
from iteration_heads.runs.executors import LocalExecutor
from iteration_heads.runs.progress import RunProgress
from iteration_heads.runs.specs import finished
from iteration_heads.runs.sweep import SweepSpec, run_sweep
from iteration_heads.runs.sweep_results import collect

TINY = Path(__file__).parents[2] / "examples" / "sweeps" / "tiny.toml"
TIMING = ["seconds"]  # the only column that may differ between engines


def table_through(kind: str, runs: Path) -> pd.DataFrame:
    spec = SweepSpec.from_toml(TINY)
    options = {"folder": runs / "jobs"} if kind.startswith("slurm") else {}
    lines: list[str] = []
    with make_executor(kind, jobs=2, **options) as executor:
        run_sweep(spec, runs, executor=executor, runs_per_job=4 if kind != "local" else 1,
                  log=lines.append)  # fmt: skip
    assert lines[0].startswith(f"8 runs to train in {runs} ({kind} executor, 2 at a time")
    return collect(spec, runs).drop(columns=TIMING)


@pytest.mark.parametrize(
    "kind",
    [
        "slurm-local",
        # a sweep through Ray: 29 s alone, but 60 to 210 s inside `make test`, where its Ray
        # workers start beside the other tests; `make test` runs Ray in test_sharding.py
        pytest.param("ray", marks=pytest.mark.slow),
    ],
)
def test_local_and_cluster_executors_give_the_same_table_cell_by_cell(tmp_path, kind) -> None:
    pytest.importorskip("ray" if kind == "ray" else "submitit")
    local = table_through("local", tmp_path / "local")
    assert len(local) == 8 and (local["status"] == "done").all()
    assert local["accuracy"].between(0, 1).all() and local["steps"].gt(0).all()
    other = table_through(kind, tmp_path / kind)
    pd.testing.assert_frame_equal(local, other, check_exact=True)
    if kind == "slurm-local":
        jobs = list((tmp_path / "slurm-local" / "jobs").glob("*_submitted.pkl"))
        assert len(jobs) == 2  # 8 cells in array tasks of 4


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_sweep_trains_only_its_unfinished_cells(tmp_path) -> None:
    runs = tmp_path / "runs"
    cli = "import sys; from iteration_heads.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", cli, "sweep", str(TINY), "--runs", str(runs),
               "--out", str(tmp_path), "--jobs", "1", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sweep = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    cells = SweepSpec.from_toml(TINY).cells()
    deadline = time.monotonic() + 240
    while sum(finished(c, runs) for c in cells) < 2 and time.monotonic() < deadline:
        assert sweep.poll() is None, "the sweep ended before it was killed"
        time.sleep(0.05)
    workers = descendants(sweep.pid)  # the fork server and the worker training a cell
    assert len(workers) >= 2
    sweep.kill()  # the sweep alone, mid-run: its workers must not train on
    sweep.wait()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "workers outlived the sweep"
    done = sum(finished(c, runs) for c in cells)
    assert 2 <= done < len(cells)
    lines: list[str] = []
    run_sweep(SweepSpec.from_toml(TINY), runs, jobs=2, log=lines.append)
    assert lines[0].startswith(f"{len(cells) - done} runs to train")
    table = collect(SweepSpec.from_toml(TINY), runs)
    assert (table["status"] == "done").all() and len(table) == len(cells)


def test_local_executor_refuses_more_runs_than_cores() -> None:
    cores = len(os.sched_getaffinity(0))
    with pytest.raises(IterationHeadsError, match=f"needs {2 * cores} cores"):
        LocalExecutor(jobs=cores, threads_per_run=2)
    assert LocalExecutor(threads_per_run=1).slots == cores


def test_local_workers_start_from_a_script_read_from_standard_input(monkeypatch) -> None:
    # multiprocessing runs the main script again in each worker from __main__.__file__, which
    # is "<stdin>" for `python -` or a heredoc: without the executor hiding it, every worker
    # died before its call started
    import __main__

    monkeypatch.setattr(__main__, "__spec__", None, raising=False)  # as `python -` has it
    monkeypatch.setattr(__main__, "__file__", "<stdin>", raising=False)
    with LocalExecutor(jobs=1) as executor:
        futures = executor.submit_all([(pow, (2, 10)), (pow, (3, 2))])
        assert [f.result(timeout=120) for f in futures] == [1024, 9]
    assert __main__.__file__ == "<stdin>"


@pytest.mark.parametrize("engine, extra", [("ray", "ray"), ("submitit", "slurm")])
def test_a_missing_engine_names_its_extra(monkeypatch, engine, extra) -> None:
    monkeypatch.setitem(sys.modules, engine, None)  # import fails as if not installed
    kind = "ray" if engine == "ray" else "slurm-local"
    with pytest.raises(IterationHeadsError, match=rf'iteration-heads\[{extra}\]"$'):
        make_executor(kind, folder="unused")


def test_executor_options_that_do_not_fit_are_refused(tmp_path, capsys) -> None:
    base = ["sweep", str(TINY), "--runs", str(tmp_path)]
    assert main([*base, "--partition", "gpu"]) == 2
    assert "need --executor slurm or ray" in capsys.readouterr().err
    assert main([*base, "--executor", "slurm-local", "--gpus-per-run", "0.5"]) == 2
    assert "SLURM takes whole GPUs" in capsys.readouterr().err
    assert main([*base, "--estimate"]) == 2
    assert "--estimate goes with --dry-run" in capsys.readouterr().err
    reproduce = ["reproduce", "no-cot", "--runs", str(tmp_path), "--out", str(tmp_path)]
    assert main([*reproduce, "--ray-address", "auto"]) == 2  # reproduce takes the same options
    assert "need --executor slurm or ray" in capsys.readouterr().err
    assert main([*reproduce, "--executor", "slurm-local", "--time-min", "0"]) == 2
    assert "--time-min 0, expected >= 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing ran, nothing was written


def test_progress_counts_runs_done_running_and_failed() -> None:
    lines: list[str] = []
    view = RunProgress(3, enabled=True, log=lines.append)
    view.running(2)
    assert view.counts() == {"done": 0, "running": 2, "failed": 0, "elsewhere": 0, "todo": 1}
    view.finished("a")
    view.running(2)
    view.failed("b failed: x")
    assert view.counts() == {"done": 1, "running": 1, "failed": 1, "elsewhere": 0, "todo": 0}
    view.close()
    assert lines == ["[1/3] a", "[2/3] b failed: x"]


def test_seeds_stacked_in_one_process_give_the_table_of_separate_runs(tmp_path) -> None:
    spec = SweepSpec.from_dict({
        "fixed": {"data.task": "copy", "data.max_len": 3, "data.n_train": 32, "data.n_test": 32,
                  "train.epochs": 3, "train.eval_every": 1, "train.lr": 3e-3},
        "axes": {"model.d_model": [16, 24], "seed": [0, 1, 2]},
    })  # fmt: skip
    tables = {}
    for batch in (False, True):
        lines: list[str] = []
        run_sweep(spec, tmp_path / str(batch), jobs=2, batch_seeds=batch, log=lines.append)
        tables[batch] = collect(spec, tmp_path / str(batch)).drop(columns=TIMING)
    assert (tables[True]["status"] == "done").all()
    pd.testing.assert_frame_equal(tables[False], tables[True], rtol=1e-5)
