"""``iteration-heads sweep SPEC.toml``: a grid of runs described in TOML (axes over config
fields and seeds, named variants), trained into the run cache by local processes, SLURM or
Ray, and its table and heatmaps."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

from iteration_heads.cli.executor_options import (
    add_executor_options,
    check_executor_options,
    executor_from_args,
    executor_options,
)
from iteration_heads.cli.reproduce import folder_option
from iteration_heads.errors import IterationHeadsError


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
    """Run the ``sweep`` subcommand. Ctrl-C (or SIGTERM) stops the jobs and prints one line:
    what finished and the command that resumes; the exit status is 130 (143)."""
    from iteration_heads.runs.executors import LocalExecutor, available_cores
    from iteration_heads.runs.specs import finished
    from iteration_heads.runs.sweep import SweepSpec, dry_run, run_sweep
    from iteration_heads.runs.sweep_results import write_table

    spec = SweepSpec.from_toml(args.spec).on_device(args.device)
    if args.jobs is not None and args.jobs < 1:
        raise IterationHeadsError(f"--jobs {args.jobs}, expected an integer >= 1")
    if args.estimate and not args.dry_run:
        raise IterationHeadsError("--estimate goes with --dry-run")
    folder_option(args.runs, "--runs")
    folder_option(args.out, "--out")
    check_executor_options(args)  # what the real run checks, a dry run checks too
    if args.dry_run:
        slots = args.jobs or max(available_cores() // args.threads_per_run, 1)
        if args.executor == "local":  # the cores it needs (no worker starts)
            slots = LocalExecutor(args.jobs, threads_per_run=args.threads_per_run).slots
        local = args.executor == "local"
        print(dry_run(spec, args.runs, estimate=args.estimate, slots=slots, local=local))
        return 0
    command = sweep_command(args)
    signals: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    previous_int = signal.getsignal(signal.SIGINT)
    try:
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
        written = write_table(spec, args.runs, args.out, command=command)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C cannot cut the line
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cells = spec.cells()
        done = sum(finished(cell, args.runs) for cell in cells)
        name = "SIGTERM" if received == [signal.SIGTERM] else "interrupted"
        print(f"iteration-heads: {name}: {done} of {len(cells)} cells finished (a cell cut "
              f"short resumes from its checkpoint); resume with: {command}",
              file=sys.stderr, flush=True)  # fmt: skip
        return signals.get(received[0] if received else signal.SIGINT, 130)
    finally:  # as found: main() may run inside a longer process (a notebook, a test)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def sweep_command(args: argparse.Namespace) -> str:
    """The command line that runs this sweep again (recorded with its table; printed to resume
    it after Ctrl-C): it names the run cache (``--runs``), so a rerun reuses the runs, and the
    jobs (without ``--jobs``, the local executor's: one run per core).

    Example:
        >>> args = argparse.Namespace(spec=Path("s.toml"), jobs=2, executor="local",
        ...     threads_per_run=1, runs_per_job=1, batch_seeds=False, retry_failed=False,
        ...     device="auto", runs=Path("runs"), out=Path("out"))
        >>> sweep_command(args)
        'iteration-heads sweep s.toml --jobs 2 --runs runs --out out'
    """
    jobs = args.jobs
    if jobs is None and args.executor == "local":  # what the local executor chose
        from iteration_heads.runs.executors import available_cores

        jobs = max(available_cores() // args.threads_per_run, 1)
    options = [shlex.quote(str(args.spec)), f"--jobs {jobs}" if jobs else "",
               executor_options(args), "--batch-seeds" if args.batch_seeds else "",
               "--retry-failed" if args.retry_failed else "",
               f"--device {args.device}" if args.device != "auto" else "",
               f"--runs {shlex.quote(str(args.runs))}",
               f"--out {shlex.quote(str(args.out))}"]  # fmt: skip
    return "iteration-heads sweep " + " ".join(o for o in options if o)
