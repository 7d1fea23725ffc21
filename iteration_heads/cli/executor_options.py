"""Where runs train, as command-line options shared by ``sweep`` and ``reproduce``: local
processes (default), SLURM through submitit, or Ray."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from iteration_heads.errors import IterationHeadsError

if TYPE_CHECKING:
    from iteration_heads.runs.executors import Executor


def add_executor_options(parser: argparse.ArgumentParser, title: str = "where runs train") -> None:
    """Add ``--executor`` and its options under ``title`` (``--jobs`` is the command's own)."""
    from iteration_heads.runs.cluster_executors import EXECUTORS

    group = parser.add_argument_group(title)
    group.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local processes (default), a SLURM cluster or submitit's local stand-in "
        '(pip install "iteration-heads[slurm]"), or Ray (pip install "iteration-heads[ray]")',
    )
    group.add_argument("--threads-per-run", type=int, default=1, help="threads of each run")
    group.add_argument(
        "--runs-per-job", type=int, default=1, help="runs trained one after another per job"
    )
    group.add_argument("--partition", default=None, help="SLURM partition")
    group.add_argument("--time-min", type=int, default=60, help="SLURM time limit per job")
    group.add_argument("--mem-gb", type=float, default=None, help="SLURM memory per job")
    group.add_argument(
        "--gpus-per-run", type=float, default=0, help="GPUs per run (Ray takes fractions)"
    )
    group.add_argument(
        "--ray-address", default=None, help="a Ray cluster (default: $RAY_ADDRESS, else local)"
    )
    group.add_argument(
        "--jobs-folder", type=Path, default=None, help="submitit's job files (default RUNS/jobs)"
    )


def executor_options(args: argparse.Namespace) -> str:
    """The executor options as they were given, for the command recorded with results.

    Example:
        >>> executor_options(argparse.Namespace(executor="local", threads_per_run=1,
        ...                                     runs_per_job=1))
        ''
    """
    options = []
    if args.executor != "local":
        options.append(f"--executor {args.executor}")
    if args.threads_per_run != 1:
        options.append(f"--threads-per-run {args.threads_per_run}")
    if args.runs_per_job != 1:
        options.append(f"--runs-per-job {args.runs_per_job}")
    return " ".join(options)


def check_executor_options(args: argparse.Namespace) -> None:
    """A one-line error for an executor option out of range or given to an executor that
    ignores it; checked by a dry run as by a real one.

    Example:
        >>> check_executor_options(argparse.Namespace(executor="local", threads_per_run=0,
        ...     runs_per_job=1, time_min=60, gpus_per_run=0, mem_gb=None, partition=None,
        ...     ray_address=None))
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: --threads-per-run 0, expected >= 1
    """
    for option in ("threads_per_run", "runs_per_job", "time_min"):
        value = getattr(args, option)
        if value < 1:
            raise IterationHeadsError(f"--{option.replace('_', '-')} {value}, expected >= 1")
    if not math.isfinite(args.gpus_per_run) or args.gpus_per_run < 0:
        raise IterationHeadsError(f"--gpus-per-run {args.gpus_per_run}, expected a number >= 0")
    if args.mem_gb is not None and (not math.isfinite(args.mem_gb) or args.mem_gb <= 0):
        raise IterationHeadsError(f"--mem-gb {args.mem_gb}, expected a number > 0")
    cluster_only = {"partition": args.partition, "mem_gb": args.mem_gb}
    if args.executor == "local":
        given = [k for k, v in {**cluster_only, "ray_address": args.ray_address}.items() if v]
        if given or args.gpus_per_run:
            raise IterationHeadsError(
                f"options {given or ['gpus_per_run']} need --executor slurm or ray"
            )
    if args.executor not in ("local", "ray") and int(args.gpus_per_run) != args.gpus_per_run:
        raise IterationHeadsError(f"--gpus-per-run {args.gpus_per_run}: SLURM takes whole GPUs")


def executor_from_args(args: argparse.Namespace, jobs: int | None, runs: Path) -> Executor:
    """The executor the options describe, ``jobs`` runs at once (None: what it allows), its
    options checked first (:func:`check_executor_options`)."""
    from iteration_heads.runs.cluster_executors import make_executor

    check_executor_options(args)
    if args.executor == "local":
        return make_executor("local", jobs=jobs, threads_per_run=args.threads_per_run)
    if args.executor == "ray":
        options = {"address": args.ray_address, "gpus_per_run": args.gpus_per_run}
        return make_executor("ray", jobs=jobs, threads_per_run=args.threads_per_run, **options)
    gpus = int(args.gpus_per_run)
    return make_executor(
        args.executor,
        jobs=jobs,
        threads_per_run=args.threads_per_run,
        folder=args.jobs_folder or runs / "jobs",
        partition=args.partition,
        time_min=args.time_min,
        mem_gb=args.mem_gb,
        gpus_per_run=gpus,
    )
