"""``iteration-heads sweep SPEC.toml``: a grid of runs described in TOML (axes over config
fields and seeds), trained in local processes into the run cache, and its table."""

from __future__ import annotations

import argparse
from pathlib import Path

from iteration_heads.cli.reproduce import folder_option
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.sweep import SweepSpec, dry_run, run_sweep, write_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``sweep`` subcommand and its options."""
    p = sub.add_parser(
        "sweep",
        help="train a grid of runs from a TOML spec (local processes) and write its table",
        description="A grid of runs: [axes] over data./model./train. fields and seed, [fixed] "
        "settings, [[exclude]] and [[include]] rules. Finished cells are skipped on a rerun.",
    )
    p.add_argument("spec", type=Path, help="the sweep spec (TOML)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    p.add_argument("--collect", action="store_true", help="only write the table of the cells")
    p.add_argument("--retry-failed", action="store_true", help="train failed cells again")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (one thread each)")
    p.add_argument("--runs", type=Path, default=Path("runs/sweeps"), help="run cache")
    p.add_argument("--out", type=Path, default=Path("runs/sweeps"), help="where the table goes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the ``sweep`` subcommand."""
    spec = SweepSpec.from_toml(args.spec)
    if args.jobs < 1:
        raise IterationHeadsError(f"--jobs {args.jobs}, expected an integer >= 1")
    folder_option(args.runs, "--runs")
    folder_option(args.out, "--out")
    if args.dry_run:
        print(dry_run(spec, args.runs))
        return 0
    if not args.collect:
        run_sweep(spec, args.runs, jobs=args.jobs, retry_failed=args.retry_failed)
    print(f"wrote {write_table(spec, args.runs, args.out)} and its .md")
    return 0
