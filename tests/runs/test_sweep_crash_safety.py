"""A sweep killed with SIGKILL at random instants (while a cell trains, in a cell's final save,
while the table is written) resumes to the same table and results as an uninterrupted sweep,
and leaves no temporary file under its runs or its output folder.

Each sweep is ``iteration-heads sweep SPEC --jobs 1`` run in a process forked from a fork
server that imported the library once, its cells trained in that process (an in-process
executor stands for the one worker of ``--jobs 1``, whose start would cost an import of torch
per kill)."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pandas as pd
from helpers import temporaries
from sweep_helpers import InlineExecutor, write_spec

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["iteration_heads", "iteration_heads.experiments"])
KILLS = 12


def sweep_child(spec: str, runs: str, out: str) -> None:
    """``iteration-heads sweep SPEC --jobs 1 --runs RUNS --out OUT``, cells trained here."""
    import threading

    from tqdm import tqdm

    from iteration_heads.cli import main
    from iteration_heads.cli import sweep as command

    tqdm.set_lock(threading.RLock())  # no named semaphore left behind by a kill

    command.executor_from_args = lambda args, jobs, runs: InlineExecutor()
    code = main(["sweep", spec, "--jobs", "1", "--runs", runs, "--out", out, "--no-progress"])
    os._exit(code)


def sweep(spec: Path, runs: Path, out: Path) -> multiprocessing.Process:
    process = CONTEXT.Process(target=sweep_child, args=(str(spec), str(runs), str(out)))
    process.start()
    return process


def in_final_save(runs: Path) -> bool:
    """Whether a cell is in its final save: its final model written, its wall.json not yet."""
    return any((d / "model.safetensors").exists() and not (d / "wall.json").exists()
               for d in runs.glob("*-*") if d.is_dir())  # fmt: skip


def comparable(out: Path) -> pd.DataFrame:
    """The sweep's table without wall-clock figures."""
    table = pd.read_csv(out / "crash.csv")
    return table.drop(columns=[c for c in table.columns if "seconds" in c])


def test_a_sweep_killed_at_random_instants_resumes_to_the_same_table(tmp_path) -> None:
    spec = write_spec(tmp_path, name="crash", epochs=4, seeds="[0, 1, 2]")
    reference = tmp_path / "reference"
    for folder in (reference, tmp_path / "timed"):  # the first also starts the fork server
        tick = time.perf_counter()
        first = sweep(spec, folder / "runs", folder / "out")
        first.join(120)
        assert first.exitcode == 0
    duration = time.perf_counter() - tick
    rng, landed, final, rounds, start = random.Random(0), 0, 0, 0, time.perf_counter()
    while landed < KILLS or final < 2:
        runs, out = tmp_path / f"runs{rounds}", tmp_path / f"out{rounds}"
        while True:  # kill this sweep again and again until it ends
            process = sweep(spec, runs, out)
            if rng.random() < 0.3:  # in a cell's final save
                deadline = time.perf_counter() + duration
                while not in_final_save(runs) and time.perf_counter() < deadline:
                    time.sleep(0.0005)
                time.sleep(rng.uniform(0.0, 0.01))
            else:
                time.sleep(rng.uniform(0.0, duration))
            if process.exitcode is None:
                os.kill(process.pid, signal.SIGKILL)
            process.join(60)
            if process.exitcode == 0:
                break
            assert process.exitcode == -signal.SIGKILL, process.exitcode
            landed += 1
            final += in_final_save(runs)
        rounds += 1
        pd.testing.assert_frame_equal(comparable(out), comparable(reference / "out"))
        curves = [pd.read_csv(folder / "crash.curves.csv") for folder in (out, reference / "out")]
        pd.testing.assert_frame_equal(*curves)
        assert temporaries(runs) == [] and temporaries(out) == []
        assert not list(runs.glob("*.error.json")) and not list(runs.glob("*.traceback.txt"))
    print(f"{landed} kills ({final} in a final save) over {rounds} sweeps in "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip
