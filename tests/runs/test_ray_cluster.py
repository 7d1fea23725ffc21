"""The sweep on a Ray cluster started apart from it (``ray start --head``), attached through
the ``RAY_ADDRESS`` variable as on a real cluster: the same table as local processes.

Slow: ``pytest -m slow tests/runs/test_ray_cluster.py``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from iteration_heads.runs.cluster_executors import make_executor
from iteration_heads.runs.sweep import SweepSpec, run_sweep
from iteration_heads.runs.sweep_results import collect

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

TINY = Path(__file__).parents[2] / "examples" / "sweeps" / "tiny.toml"
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"


def test_a_sweep_attached_to_a_running_ray_cluster_gives_the_local_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = SweepSpec.from_toml(TINY)
    with make_executor("local", jobs=2) as executor:
        run_sweep(spec, tmp_path / "local", executor=executor, log=lambda line: None)
    expected = collect(spec, tmp_path / "local").drop(columns=["seconds"])
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway cluster on this machine
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # socket paths: at most 107 bytes
    start = [RAY, "start", "--head", "--num-cpus", "2", "--include-dashboard", "false",
             "--disable-usage-stats", "--temp-dir", temp]  # fmt: skip
    started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        output = (started.stdout + started.stderr).splitlines()
        address = next(line.split("--address='")[1].split("'")[0] for line in output
                       if "--address='" in line)  # fmt: skip
        monkeypatch.setenv("RAY_ADDRESS", address)
        lines: list[str] = []
        import ray

        with make_executor("ray") as executor:  # attaches: the cluster's 2 CPUs, 2 at a time
            assert ray.get_runtime_context().gcs_address == address  # not a runtime of its own
            run_sweep(spec, tmp_path / "ray", executor=executor, log=lines.append)
        assert "(ray executor, 2 at a time)" in lines[0]
    finally:
        import ray

        ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
    pd.testing.assert_frame_equal(
        expected, collect(spec, tmp_path / "ray").drop(columns=["seconds"])
    )
