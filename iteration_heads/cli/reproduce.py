"""``iteration-heads reproduce EXPERIMENT ...``: the paper's experiments (run specs, seeds, a
shared run cache) and the multi-hop study ``ontology`` (Dutta et al.'s analyses)."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from iteration_heads.cli.common import HelpFormatter
from iteration_heads.cli.executor_options import (
    add_executor_options,
    check_executor_options,
    executor_from_args,
    executor_options,
)
from iteration_heads.errors import IterationHeadsError

ONTOLOGY_DESCRIPTION = (
    "Dutta et al.'s pathway analyses on the 4-layer ontology model, claim by claim "
    "(trains it first if runs/ has no finished run)"
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``reproduce`` subcommand and its options."""
    from iteration_heads.experiments import EXPERIMENTS
    from iteration_heads.experiments.ontology import ONTOLOGY_EXPERIMENT

    p = sub.add_parser(
        "reproduce",
        help="reproduce the paper's experiments; results go to docs/results/",
        description="Reproduce the paper's experiments (run specs, seeds, a shared run cache); "
        "results go to --out.\n\nexperiments:\n" + textwrap.indent(experiment_list(width=86), "  "),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "experiments",
        nargs="*",
        metavar="EXPERIMENT",
        help=f"one or more of {[*EXPERIMENTS, ONTOLOGY_EXPERIMENT]}, or all",
    )
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: each experiment's")
    p.add_argument("--epochs", type=int, default=None, help="training budget (see each experiment)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (one thread each)")
    p.add_argument(
        "--runs",
        type=Path,
        default=Path("runs/reproduce"),
        help="run cache (default runs/reproduce)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("docs/results"),
        help="results directory (default docs/results)",
    )
    p.add_argument(
        "--extend",
        action="store_true",
        help="keep the other seeds of the results already in --out (runs trained earlier, "
        "perhaps elsewhere): e.g. --seeds 3 4 --extend adds two seeds to results over 0-2",
    )
    p.add_argument(
        "--arm",
        choices=("paper", "recipe", "both", "authors"),
        default="both",
        help="train the paper's model and optimiser as the authors ran them (paper), the "
        "library's recipe (recipe) or both (default); docs/results.md judges each claim on the "
        "paper arm. authors: the paper arm with every ingredient of the authors' code (their "
        "block, initialisation, data and batch order)",
    )
    p.add_argument(
        "--rejudge",
        action="store_true",
        help="train nothing: judge the results already in --out again with the current claims "
        "(their runs, command and times kept), for when a claim's wording or judgement changed",
    )
    add_executor_options(p)
    p.set_defaults(func=run)


def folder_option(path: Path, option: str) -> None:
    """A clear error when a folder option names something that is not a folder."""
    if path.exists() and not path.is_dir():
        raise IterationHeadsError(f"{option} {str(path)!r} is a file; expected a folder")


def experiment_list(width: int | None = None) -> str:
    """One line per experiment, its name and what it shows (``reproduce --list``); wrapped to
    ``width`` columns under a hanging indent when given (``reproduce --help``).

    Example:
        >>> print(experiment_list())  # doctest: +ELLIPSIS
        emergence       ...
        ontology        Dutta et al.'s pathway analyses on the 4-layer ontology model, ...
        >>> max(map(len, experiment_list(width=60).splitlines())) <= 60
        True
    """
    from iteration_heads.experiments import EXPERIMENTS
    from iteration_heads.experiments.ontology import ONTOLOGY_EXPERIMENT

    described = [(e.name, e.description) for e in EXPERIMENTS.values()]
    lines = [
        f"{name:<15} {text}"
        for name, text in [*described, (ONTOLOGY_EXPERIMENT, ONTOLOGY_DESCRIPTION)]
    ]
    if width is None:
        return "\n".join(lines)
    return "\n".join(textwrap.fill(line, width, subsequent_indent=" " * 16) for line in lines)


def run(args: argparse.Namespace) -> int:
    """Run the ``reproduce`` subcommand."""
    from iteration_heads.experiments import EXPERIMENTS, get_experiment, reproduce
    from iteration_heads.experiments.extending import earlier_runs
    from iteration_heads.experiments.ontology import ONTOLOGY_EXPERIMENT
    from iteration_heads.experiments.ontology_results import reproduce_ontology
    from iteration_heads.experiments.results_page import write_summary

    if args.list or not args.experiments:
        print(experiment_list())
        return 0
    names = [*EXPERIMENTS, ONTOLOGY_EXPERIMENT] if args.experiments == ["all"] else args.experiments
    for name in names:  # every name checked before anything runs
        if name != ONTOLOGY_EXPERIMENT:
            get_experiment(name)
    study = ONTOLOGY_EXPERIMENT in names
    names = [name for name in names if name != ONTOLOGY_EXPERIMENT]
    if (
        study
        and not names
        and (args.seeds or args.epochs is not None or args.extend or args.arm != "both")
    ):
        raise IterationHeadsError(
            "--seeds, --epochs, --extend and --arm do not apply to ontology (one model, trained "
            "to its target)"
        )
    if args.rejudge:
        return rejudge_only(args, names, study)
    if args.jobs < 1:
        raise IterationHeadsError(f"--jobs {args.jobs}, expected an integer >= 1")
    if args.epochs is not None and args.epochs < 1:
        raise IterationHeadsError(f"--epochs {args.epochs}, expected an integer >= 1")
    bad_seeds = [seed for seed in args.seeds or [] if seed < 0]
    if bad_seeds:
        raise IterationHeadsError(f"--seeds {bad_seeds}, expected integers >= 0")
    folder_option(args.runs, "--runs")
    folder_option(args.out, "--out")
    arms = ["paper", "recipe"] if args.arm == "both" else [args.arm]
    if args.extend:  # checked before an executor starts
        for name in names:
            for arm in arms:
                earlier_runs(get_experiment(name), args.out, args.seeds, args.epochs, arm)
    options = []
    if args.seeds:
        options.append("--seeds " + " ".join(map(str, args.seeds)))
    if args.epochs is not None:
        options.append(f"--epochs {args.epochs}")
    if args.extend:
        options.append("--extend")
    options.append(f"--jobs {args.jobs}")
    options.append(executor_options(args))
    if names:
        with executor_from_args(args, args.jobs, args.runs) as executor:
            reproduce(
                names,
                seeds=args.seeds,
                epochs=args.epochs,
                jobs=args.jobs,
                executor=executor,
                runs_per_job=args.runs_per_job,
                runs=args.runs,
                out=args.out,
                command_options=" ".join(o for o in options if o),
                extend=args.extend,
                arms=arms,
            )
    if study:
        reproduce_ontology(args.runs, args.out)
        write_summary(args.out)
    return 0


def rejudge_only(args: argparse.Namespace, names: list[str], study: bool) -> int:
    """``reproduce --rejudge``: the written results judged again, nothing trained."""
    from iteration_heads.experiments import rejudge

    check_executor_options(args)  # a cluster option without its executor, in its own words
    training = {"--seeds": args.seeds, "--epochs": args.epochs, "--extend": args.extend,
                "--jobs": args.jobs != 1}  # fmt: skip
    given = [option for option, value in training.items() if value]
    given += [executor_options(args)] if executor_options(args) else []
    if given or study:
        what = ", ".join(given + ["ontology"] * study)
        raise IterationHeadsError(
            f"--rejudge trains nothing and judges the paper's experiments only; drop {what}"
        )
    folder_option(args.out, "--out")
    rejudge(names, args.out, ["paper", "recipe"] if args.arm == "both" else [args.arm])
    return 0
