"""``iteration-heads sweep SPEC.toml``: a grid of runs described in TOML (axes over config
fields and seeds, named variants), trained into the run cache by local processes, SLURM or
Ray, and its table and heatmaps."""

from __future__ import annotations

import argparse
from pathlib import Path

from iteration_heads.cli.executor_options import (
    add_executor_options,
    executor_from_args,
    executor_options,
)
from iteration_heads.cli.reproduce import folder_option
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.executors import available_cores
from iteration_heads.experiments.sweep import SweepSpec, dry_run, run_sweep
from iteration_heads.experiments.sweep_results import write_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``sweep`` subcommand and its options."""
    p = sub.add_parser(
        "sweep",
        help="train a grid of runs from a TOML spec (local, SLURM or Ray) and write its table",
        description="A grid of runs: [axes] over data./model./train. fields and seed, [fixed] "
        "settings, [variants], [[exclude]] and [[include]] rules, and the heatmaps of [figure]. "
        "Finished cells are skipped on a rerun; a failed cell is recorded with its error.",
    )
    p.add_argument("spec", type=Path, help="the sweep spec (TOML)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="with --dry-run: the cost of each cell, timed here on a few steps of each shape",
    )
    p.add_argument("--collect", action="store_true", help="only write the table and figures")
    p.add_argument("--retry-failed", action="store_true", help="train failed cells again")
    p.add_argument(
        "--jobs", type=int, default=None, help="runs at once (default: what the cores allow)"
    )
    p.add_argument(
        "--batch-seeds",
        action="store_true",
        help="train the seeds of one configuration stacked in one process (torch.func.vmap; "
        "equal to separate runs; pays off on a GPU)",
    )
    p.add_argument("--no-progress", action="store_true", help="no live progress bar")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where runs train unless the spec sets train.device (auto: CUDA when present; "
        "with --jobs > 1 several runs share the GPU)",
    )
    p.add_argument("--runs", type=Path, default=Path("runs/sweeps"), help="run cache")
    p.add_argument("--out", type=Path, default=Path("runs/sweeps"), help="where the table goes")
    add_executor_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the ``sweep`` subcommand."""
    spec = SweepSpec.from_toml(args.spec).on_device(args.device)
    if args.jobs is not None and args.jobs < 1:
        raise IterationHeadsError(f"--jobs {args.jobs}, expected an integer >= 1")
    if args.estimate and not args.dry_run:
        raise IterationHeadsError("--estimate goes with --dry-run")
    folder_option(args.runs, "--runs")
    folder_option(args.out, "--out")
    if args.dry_run:
        slots = args.jobs or max(available_cores() // args.threads_per_run, 1)
        print(dry_run(spec, args.runs, estimate=args.estimate, slots=slots))
        return 0
    if not args.collect:
        with executor_from_args(args, args.jobs, args.runs) as executor:
            run_sweep(
                spec,
                args.runs,
                executor=executor,
                runs_per_job=args.runs_per_job,
                batch_seeds=args.batch_seeds,
                retry_failed=args.retry_failed,
                progress=not args.no_progress,
            )
    options = [str(args.spec), f"--jobs {args.jobs}" if args.jobs else "",
               executor_options(args), "--batch-seeds" if args.batch_seeds else "",
               f"--out {args.out}"]  # fmt: skip
    command = "iteration-heads sweep " + " ".join(o for o in options if o)
    written = write_table(spec, args.runs, args.out, command=command)
    print("wrote " + ", ".join(str(path) for path in written))
    return 0
