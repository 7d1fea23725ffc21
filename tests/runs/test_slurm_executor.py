"""The sweep on a real SLURM cluster (Debian's slurm-wlm on this machine, started by the test):
job arrays of several runs per task give the table of local processes cell by cell, and an
array task pre-empted mid-sweep is requeued and its runs resume, to the same table.

Slow: ``pytest -m slow tests/runs/test_slurm_executor.py`` (root and
``apt-get install slurm-wlm munge slurmdbd mariadb-server``; skips otherwise)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from slurm_cluster import SlurmCluster, local_slurm_cluster

from iteration_heads.runs.cluster_executors import make_executor
from iteration_heads.runs.specs import finished
from iteration_heads.runs.sweep import SweepSpec, run_sweep
from iteration_heads.runs.sweep_results import collect

pytest.importorskip("submitit")
pytestmark = pytest.mark.slow

SPEC = SweepSpec.from_dict({
    "name": "slurm",
    "fixed": {"data.task": "copy", "data.n_train": 64, "data.n_test": 64, "train.epochs": 6,
              "train.eval_every": 1, "train.checkpoint_every": 1},
    "axes": {"model.d_model": [16, 32], "data.max_len": [3, 4], "seed": [0, 1]},
})  # fmt: skip


def accounted(cluster: SlurmCluster, field: str = "JobID,State") -> list[str]:
    """SLURM's accounting of the jobs once all have ended (its records lag the results)."""
    deadline = time.monotonic() + 60
    while cluster.run("squeue", "-h") and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    return cluster.run("sacct", "-X", "-n", "-P", "-o", field).split()


def local_table(runs: Path) -> pd.DataFrame:
    with make_executor("local", jobs=2) as executor:
        run_sweep(SPEC, runs, executor=executor, log=lambda line: None)
    return collect(SPEC, runs).drop(columns=["seconds"])


def test_a_sweep_on_slurm_gives_the_local_table(tmp_path: Path) -> None:
    expected = local_table(tmp_path / "local")
    with local_slurm_cluster(tmp_path / "cluster") as cluster:
        runs = tmp_path / "slurm"
        options = {"folder": runs / "jobs", "partition": cluster.partition, "time_min": 10}
        lines: list[str] = []
        with make_executor("slurm", **options) as executor:
            run_sweep(SPEC, runs, executor=executor, runs_per_job=3, log=lines.append)
        assert "slurm executor, queued by SLURM" in lines[0]
        submitted = accounted(cluster)
        assert len(submitted) == 3 and all(s.endswith("|COMPLETED") for s in submitted)
        assert {s.split("|")[0].split("_")[1] for s in submitted} == {"0", "1", "2"}  # one array
    pd.testing.assert_frame_equal(expected, collect(SPEC, runs).drop(columns=["seconds"]))


def test_a_preempted_array_task_is_requeued_and_its_runs_resume(tmp_path: Path) -> None:
    import threading

    expected = local_table(tmp_path / "local")
    with local_slurm_cluster(tmp_path / "cluster") as cluster:
        runs = tmp_path / "slurm"
        options = {"folder": runs / "jobs", "partition": cluster.partition, "time_min": 10}
        cells = SPEC.cells()

        def preempt_once() -> None:  # as SLURM pre-empts a job: SIGTERM, then USR2
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                started = [c for c in cells if (c.directory(runs) / "run.json").is_file()]
                if any(not finished(c, runs) for c in started):
                    jobs = cluster.run("squeue", "-h", "-t", "R", "-o", "%i").split()
                    if jobs:
                        cluster.run("scancel", jobs[0], "--signal", "SIGTERM")
                        cluster.run("scancel", jobs[0], "--signal", "USR2")
                        return
                time.sleep(0.2)

        interrupter = threading.Thread(target=preempt_once)
        interrupter.start()
        with make_executor("slurm", **options) as executor:
            run_sweep(SPEC, runs, executor=executor, runs_per_job=8, log=lambda line: None)
        interrupter.join()
        (job,) = accounted(cluster, "JobID")  # one array task of the eight cells
        assert "Restarts=1 " in cluster.run("scontrol", "-o", "show", "job", job)  # requeued once
    pd.testing.assert_frame_equal(expected, collect(SPEC, runs).drop(columns=["seconds"]))
