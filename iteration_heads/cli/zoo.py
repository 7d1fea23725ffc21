"""``iteration-heads zoo``: the trained models shipped with the package, or ``--build``: retrain
them through the reproduction cache."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``zoo`` subcommand and its options."""
    p = sub.add_parser(
        "zoo",
        help="list the shipped trained models (or rebuild them)",
        description="The trained models shipped with the package and their figures; --build "
        "retrains them through the reproduction cache and installs them.",
    )
    p.add_argument(
        "--build",
        nargs="*",
        default=None,
        metavar="NAME",
        help="retrain these shipped models (all if none named) through the reproduction cache",
    )
    p.add_argument("--runs", type=Path, default=Path("runs/reproduce"), help="run cache")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (one thread each)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``iteration-heads zoo`` with parsed arguments."""
    from iteration_heads import zoo
    from iteration_heads.errors import IterationHeadsError

    if args.build is None:
        if args.jobs != 1 or args.runs != Path("runs/reproduce"):
            raise IterationHeadsError("--jobs and --runs go with --build (rebuild the models)")
        print(zoo.table())
        return 0
    for path in zoo.build(args.build or None, runs=args.runs, jobs=args.jobs):
        print(f"installed {path}")
    print(zoo.table())
    return 0
