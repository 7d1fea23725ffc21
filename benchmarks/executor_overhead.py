"""What each executor adds per sweep cell, measured against training the same cells in this
process in the same run.

For each executor (local processes, a local Ray runtime, submitit's local executor), one slot:
- start: seconds from making the executor to the result of a first no-op call (workers or
  runtime starting, the library imported);
- call: seconds of each later no-op call (scheduling and the round trip alone);
- per cell: (wall time of N tiny sweep cells through the executor, minus the same cells trained
  in this process) / N.

    python benchmarks/executor_overhead.py --cells 8 --json benchmarks/executor_overhead_results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from iteration_heads.runs.cluster_executors import make_executor
from iteration_heads.runs.scheduling import run_all, train_cells
from iteration_heads.runs.sweep import SweepSpec


def tiny_cells(n: int) -> list:
    """N tiny cells: copy task, d 16, Lmax 3, 32 sequences per length, 2 epochs."""
    spec = SweepSpec.from_dict({
        "fixed": {"data.task": "copy", "data.max_len": 3, "data.n_train": 32, "data.n_test": 32,
                  "model.d_model": 16, "train.epochs": 2, "train.eval_every": 1},
        "axes": {"seed": list(range(n))},
    })  # fmt: skip
    return spec.cells()


def measure(kind: str, cells: list, reference: float, calls: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp())
    options = {"folder": folder / "jobs"} if kind.startswith("slurm") else {}
    tick = time.perf_counter()
    with make_executor(kind, jobs=1, **options) as executor:
        executor.submit_all([(pow, (2, 3))])[0].result()
        start = time.perf_counter() - tick
        tick = time.perf_counter()
        for _ in range(calls):
            executor.submit_all([(pow, (2, 3))])[0].result()
        call = (time.perf_counter() - tick) / calls
        tick = time.perf_counter()
        run_all(cells, folder / "runs", executor=executor, log=lambda line: None)
        wall = time.perf_counter() - tick
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "start_seconds": round(start, 2),
        "call_seconds": round(call, 3),
        "cells_wall_seconds": round(wall, 2),
        "overhead_per_cell_seconds": round((wall - reference) / len(cells), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--calls", type=int, default=5, help="no-op calls timed after the first")
    parser.add_argument("--executors", nargs="+", default=["local", "ray", "slurm-local"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cells = tiny_cells(args.cells)
    folder = Path(tempfile.mkdtemp())
    train_cells(cells[:1], str(folder / "warm"))  # imports and first-call costs out of the way
    tick = time.perf_counter()
    train_cells(cells, str(folder / "runs"))
    reference = time.perf_counter() - tick
    shutil.rmtree(folder, ignore_errors=True)
    print(f"{len(cells)} tiny cells trained in this process: {reference:.2f} s (reference)")
    results = {}
    for kind in args.executors:
        results[kind] = measure(kind, cells, reference, args.calls)
        print(kind, results[kind])
    if args.json:
        args.json.write_text(json.dumps({
            "cells": len(cells),
            "in_process_seconds": round(reference, 2),
            "executors": results,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "command": "python benchmarks/executor_overhead.py --cells "
                       f"{args.cells} --json {args.json}",
        }, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
