"""A real SLURM cluster on this machine (slurmctld + slurmd + munge, and slurmdbd when installed):
sbatch runs a script, submitit runs a function, a job array and a pre-empted job that is requeued
and resumes from its checkpoint; without accounting submitit still gets results; the cluster starts
twice in a row and leaves no process behind.

Slow: run with ``pytest -m slow tests/runs/test_slurm_cluster.py`` (needs root and
``apt-get install slurm-wlm munge``, optionally ``slurmdbd mariadb-server``; skips otherwise)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slurm_cluster import SlurmCluster, cluster_processes, local_slurm_cluster

pytestmark = pytest.mark.slow


def wait_done(jobs: list[Any], timeout_s: float = 180.0) -> list[Any]:
    """The results of submitit jobs, failing (instead of hanging) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not all(job.done() for job in jobs):
        if time.monotonic() > deadline:
            states = {job.job_id: job.state for job in jobs}
            pytest.fail(f"submitit jobs not done after {timeout_s:.0f} s: {states}")
        time.sleep(0.5)
    return [job.result() for job in jobs]


def job_processes(job: str) -> list[int]:
    """Ids of the processes of a running SLURM job (those with its ``SLURM_JOB_ID``)."""
    needle = f"\0SLURM_JOB_ID={job}\0".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if needle in b"\0" + (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_cluster_starts_twice_in_a_row_and_leaves_nothing_behind(tmp_path: Path) -> None:
    outer = os.environ.get("SLURM_CONF")
    for _ in range(2):
        with local_slurm_cluster(tmp_path) as cluster:
            assert os.environ["SLURM_CONF"] == str(cluster.conf) == cluster.env["SLURM_CONF"]
            assert cluster.run("sinfo", "-h", "-o", "%P %a %t").split() == [
                f"{cluster.partition}*",
                "up",
                "idle",
            ]
            job = cluster.run("sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 300")
            job = job.strip()
            assert cluster.wait_for_job(job, until="RUNNING") == "RUNNING"
            deadline = time.monotonic() + 30  # RUNNING: sent to slurmd, maybe not started yet
            while not job_processes(job) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert job_processes(job), f"no process of running job {job}"
            daemons = list(cluster.pids.values())
            assert set(daemons) <= set(cluster_processes(cluster.root))
        left = cluster_processes(cluster.root) + job_processes(job)
        assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
        assert not any(Path(f"/proc/{pid}/environ").exists() for pid in daemons)
        assert os.environ.get("SLURM_CONF") == outer


def test_cluster_stops_every_daemon_when_the_test_fails(tmp_path: Path) -> None:
    with (
        pytest.raises(ZeroDivisionError),
        local_slurm_cluster(tmp_path, accounting=False) as cluster,
    ):
        assert set(cluster.pids) == {"munged", "slurmctld", "slurmd"}
        _ = 1 / 0
    assert cluster_processes(cluster.root) == []
    assert not any(Path(f"/proc/{pid}/environ").exists() for pid in cluster.pids.values())


def test_a_daemon_that_fails_to_start_is_reported_with_its_log(tmp_path: Path) -> None:
    key = tmp_path / "slurm" / "munge.key"  # the cluster keeps an existing key: a bad one here
    key.parent.mkdir()
    key.write_bytes(b"short")
    key.chmod(0o400)
    before = dict(os.environ)
    failed = r"(?s)waiting for munged.*: munged exited.*munged\.out"
    with pytest.raises(RuntimeError, match=failed), local_slurm_cluster(tmp_path, accounting=False):
        pass
    assert os.environ == before
    assert cluster_processes(tmp_path / "slurm") == []


def test_submitit_gets_results_without_accounting(tmp_path: Path) -> None:
    """Without slurmdbd, sacct fails: submitit cannot know job states (it does not ask squeue)
    but still returns results, read from its result files."""
    submitit = pytest.importorskip("submitit")
    with local_slurm_cluster(tmp_path, accounting=False) as cluster:
        assert "AccountingStorageType=accounting_storage/none" in cluster.conf.read_text()
        executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
        executor.update_parameters(slurm_partition=cluster.partition, timeout_min=20)
        job = executor.submit(sorted, [3, 1, 2])
        assert wait_done([job]) == [[1, 2, 3]]
        assert job.get_info() == {} and job.state == "UNKNOWN"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    with local_slurm_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


def test_sbatch_wrap_runs_on_the_node_and_writes_its_output(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    command = 'echo "job $SLURM_JOB_ID of $SLURM_JOB_PARTITION on $SLURMD_NODENAME"'
    job = cluster.run(
        "sbatch", "--parsable", "-p", cluster.partition, "-o", str(out), "--wrap", command
    )
    job = job.strip()
    assert cluster.wait_for_job(job) == "COMPLETED"
    node = cluster.run("sinfo", "-h", "-N", "-o", "%N").strip()
    assert out.read_text() == f"job {job} of {cluster.partition} on {node}\n"


def test_submitit_runs_a_function_as_a_slurm_job(cluster: SlurmCluster, tmp_path: Path) -> None:
    submitit = pytest.importorskip("submitit")

    def power(base: int, exponent: int) -> tuple[int, str, str]:
        return base**exponent, os.environ["SLURM_JOB_ID"], os.environ["SLURM_JOB_PARTITION"]

    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    executor.update_parameters(slurm_partition=cluster.partition, timeout_min=20, cpus_per_task=1)
    job = executor.submit(power, 3, 4)
    assert wait_done([job]) == [(81, job.job_id, cluster.partition)]
    if cluster.accounting:  # submitit reads job states from sacct only, a moment later
        deadline = time.monotonic() + 30
        while job.get_info().get("State") != "COMPLETED" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert job.get_info()["State"] == "COMPLETED"


def test_submitit_job_array_returns_every_result(cluster: SlurmCluster, tmp_path: Path) -> None:
    submitit = pytest.importorskip("submitit")

    def square(x: int) -> tuple[int, str, str]:
        return x * x, os.environ["SLURM_ARRAY_JOB_ID"], os.environ["SLURM_ARRAY_TASK_ID"]

    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    executor.update_parameters(
        slurm_partition=cluster.partition, timeout_min=20, slurm_array_parallelism=4
    )
    jobs = executor.map_array(square, [1, 2, 3, 4])
    results = wait_done(jobs)
    assert [r[0] for r in results] == [1, 4, 9, 16]
    array = jobs[0].job_id.split("_")[0]
    assert [job.job_id for job in jobs] == [f"{array}_{i}" for i in range(4)]
    assert [(r[1], r[2]) for r in results] == [(array, str(i)) for i in range(4)]


def test_preempted_checkpointable_job_is_requeued_and_resumes(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    submitit = pytest.importorskip("submitit")
    waiting = tmp_path / "waiting-to-be-preempted"

    from submitit.helpers import Checkpointable

    class Count(Checkpointable):
        """Counts to ``target``; its first run stops halfway and waits to be pre-empted."""

        def __init__(self) -> None:
            self.count = 0

        def __call__(self, target: int) -> tuple[int, int, str]:
            resumed_at = self.count
            restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
            while self.count < target:
                self.count += 1
                if restarts == "0" and self.count == target // 2:
                    waiting.write_text(str(self.count))
                    while True:  # submitit's signal handler checkpoints `self` and requeues
                        time.sleep(0.1)
            return self.count, resumed_at, restarts

    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    executor.update_parameters(slurm_partition=cluster.partition, timeout_min=20)
    job = executor.submit(Count(), 10)
    deadline = time.monotonic() + 120
    while not waiting.exists():
        assert time.monotonic() < deadline, f"job {job.job_id} never started: {job.stderr()}"
        time.sleep(0.2)
    job._interrupt(timeout=False)  # what pre-emption does: SIGTERM, then submitit's USR2
    assert wait_done([job]) == [(10, 5, "1")]  # resumed at 5, not from 0, in its 2nd run
    assert "Restarts=1 " in cluster.run("scontrol", "-o", "show", "job", job.job_id)
    assert "this job is preempted" in (job.stderr() or "")
    assert f"Requeued job {job.job_id}" in (job.stdout() or "")
