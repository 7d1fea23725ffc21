"""``iteration-heads pathways PATH``: Dutta et al.'s pathway analyses (docs/guide/pathways.md) on
any checkpoint (a HuggingFace folder with its tokenizer, a library model folder, or a shipped
name), on prompts from a JSON Lines file or generated PrOntoQA problems; text, JSON, or one
self-contained HTML report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iteration_heads.cli.common import DTYPE_CHOICES
from iteration_heads.cli.executor_options import add_executor_options
from iteration_heads.errors import IterationHeadsError

if TYPE_CHECKING:
    from iteration_heads.cli.pathway_runs import Opened
    from iteration_heads.pathways.cost import PathwaysPlan
    from iteration_heads.pathways.prompts import Prompts

ANALYSES = ("patching", "writers", "lens", "segments", "pruning", "checks", "flow")
"""The analyses, in the order they run: head patching per subtask, answer writers, the logit
lens and rift, segment knockouts, the pruning curve, noising / ablation checks against random
heads, and information-flow tracing."""

MAX_SHOTS, MAX_HOPS = 6, 5


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``pathways`` subcommand and its options."""
    p = sub.add_parser(
        "pathways",
        help="Dutta et al.'s pathway analyses of any model folder, as text or HTML",
        description="Run the pathway analyses (head patching per subtask, answer writers, logit "
        "lens, segment knockouts, pruning, causal checks against random heads, flow tracing) on "
        "a model folder: a HuggingFace checkpoint with its tokenizer, a library model, or a "
        "shipped name. Prompts come from a JSON Lines file (--prompts) or are generated "
        "(--ontology).",
    )
    p.add_argument("path", type=Path, help="model folder or shipped name")
    p.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="float32",
        help="the weights' dtype for the analyses (default float32); refused where the device "
        "has no fast kernels for it (float16 on most CPUs)",
    )
    g = p.add_argument_group("prompts (exactly one of --prompts and --ontology)")
    g.add_argument("--prompts", type=Path, help="a .jsonl file of prompts (docs/guide/pathways.md)")
    g.add_argument("--ontology", action="store_true", help="generated multi-hop problems")
    g.add_argument("--n", type=int, default=8, help="--ontology: problems (default 8)")
    g.add_argument("--hops", type=int, help="--ontology: hops of every problem (default: mixed)")
    g.add_argument("--shots", type=int, help="--ontology on a HuggingFace model: examples 0..6")
    g.add_argument(
        "--format",
        choices=["alpaca", "qa"],
        help="--ontology on a HuggingFace model: the prompt format the model was trained on "
        "(default alpaca: ### Input: / ### Response:)",
    )
    g.add_argument(
        "--distractors", type=int, help="--ontology on a HuggingFace model: facts off the chain"
    )
    g.add_argument("--seed", type=int, default=0, help="draws problems and random heads")
    g = p.add_argument_group("analyses")
    g.add_argument("--solved", choices=["step", "sequence"], help="keep only solved prompts")
    g.add_argument("--analyses", default=",".join(ANALYSES), help="comma list (default: all)")
    g.add_argument(
        "--prior",
        choices=["context-free"],
        help="the logit lens's prior token: the model's no-context prediction (default: the "
        "records' info.prior, else the lens is skipped)",
    )
    g.add_argument(
        "--centre",
        choices=["auto", "vocab", "foils"],
        default="auto",
        help="what answer writers' scores are centred on: the prompts' foils (tokens of the "
        "answer's kind) or the whole vocabulary (default auto: foils where the prompts have them)",
    )
    g.add_argument(
        "--mean",
        choices=["position", "sequence"],
        default="position",
        help="mean ablation's means over the prompts' own tokens (padding left out): per position "
        "(default) or one per head over whole sequences",
    )
    g.add_argument(
        "--method",
        choices=["auto", "exact", "attribution"],
        default="auto",
        help="head patching and pruning: one pass per head and prompt, or per set of kept heads "
        "(exact), first-order estimates from a few forward and backward passes per batch, the "
        "pruned circuit then checked exactly (attribution), or auto (exact while cheap)",
    )
    g.add_argument("--n-random", type=int, default=5, help="random head sets per check (5)")
    g.add_argument("--n-traced", type=int, default=8, help="prompts traced for the flow (8)")
    g = p.add_argument_group("exact head patching in shards")
    g.add_argument(
        "--shards",
        type=int,
        help="cut the exact head-patching sweep into this many runs of heads, run by --executor "
        "(each loads the model; the numbers are those of one process)",
    )
    g.add_argument("--jobs", type=int, help="shards at once (default: what the executor allows)")
    add_executor_options(p, "where shards run (with --shards)")
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print one JSON object")
    g.add_argument("--report", type=Path, help="write one self-contained HTML page")
    g.add_argument("--out-json", type=Path, help="also write the JSON object to this file")
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (passes, tokens, estimated time and peak memory of each analysis, "
        "timed on a few passes here) and exit without running the analyses",
    )
    p.set_defaults(func=run)


def parse_analyses(text: str) -> list[str]:
    """``"writers,lens"`` as ``["writers", "lens"]``, checked and put in running order.

    Example:
        >>> parse_analyses("flow, writers")
        ['writers', 'flow']
    """
    given = [word.strip() for word in text.split(",") if word.strip()]
    unknown = [word for word in given if word not in ANALYSES]
    if unknown or not given:
        raise IterationHeadsError(
            f"--analyses {text!r}: unknown {unknown or 'empty list'}; expected a comma list of "
            f"{', '.join(ANALYSES)}"
        )
    return [name for name in ANALYSES if name in given]


def _check_args(args: argparse.Namespace) -> None:
    """Every check that needs no model, before any work."""
    if (args.prompts is None) == (not args.ontology):
        raise IterationHeadsError(
            "give exactly one of --prompts FILE.jsonl and --ontology (got "
            f"{'both' if args.ontology else 'neither'})"
        )
    if args.prompts is not None:
        for option in ("hops", "shots", "format", "distractors"):
            if getattr(args, option) is not None:
                raise IterationHeadsError(f"--{option} applies to --ontology, not to --prompts")
        if args.prompts.suffix != ".jsonl":
            raise IterationHeadsError(f"--prompts {str(args.prompts)!r}: expected a .jsonl file")
        if not args.prompts.is_file():
            raise IterationHeadsError(f"--prompts {str(args.prompts)!r}: no such file")
    bounds = {"n": (1, 10_000), "seed": (0, 2**31 - 1), "n_random": (1, 1000),
              "n_traced": (1, 10_000), "hops": (1, MAX_HOPS), "shots": (0, MAX_SHOTS),
              "distractors": (0, 10)}  # fmt: skip
    for name, (low, high) in bounds.items():
        value = getattr(args, name)
        if value is not None and not low <= value <= high:
            option = "--" + name.replace("_", "-")
            raise IterationHeadsError(f"{option} {value}: expected an integer in {low}..{high}")
    args.chosen = parse_analyses(args.analyses)
    _check_shards(args)
    if getattr(args, "dry_run", False):
        for option in ("report", "out_json"):
            if getattr(args, option) is not None:
                raise IterationHeadsError(
                    f"--dry-run writes nothing: drop --{option.replace('_', '-')} (it applies to "
                    "a real run)"
                )
    for option in ("report", "out_json"):
        path = getattr(args, option)
        if path is None:
            continue
        if path.is_dir():
            raise IterationHeadsError(f"--{option.replace('_', '-')} {str(path)!r} is a folder")
        if not path.parent.is_dir():
            raise IterationHeadsError(
                f"--{option.replace('_', '-')} {str(path)!r}: folder {str(path.parent)!r} does "
                "not exist"
            )


def _check_shards(args: argparse.Namespace) -> None:
    """``--shards``, ``--jobs`` and the executor's options: given together, and only where the
    exact head-patching sweep runs."""
    from iteration_heads.cli.executor_options import check_executor_options

    shards, jobs = getattr(args, "shards", None), getattr(args, "jobs", None)
    for option, value in (("--shards", shards), ("--jobs", jobs)):
        if value is not None and not 1 <= value <= 100_000:
            raise IterationHeadsError(f"{option} {value}: expected an integer in 1..100000")
    check_executor_options(args)
    if shards is None:
        if jobs is not None or args.executor != "local":
            raise IterationHeadsError("--jobs and --executor apply to --shards: give --shards N")
        return
    if "patching" not in args.chosen or args.method == "attribution":
        raise IterationHeadsError(
            "--shards cuts the exact head-patching sweep: give --analyses with patching and "
            f"--method exact or auto (got --analyses {args.analyses}, --method {args.method})"
        )
    if getattr(args, "dtype", "float32") != "float32":
        raise IterationHeadsError("--shards runs float32 weights (each shard loads the model)")


def run(args: argparse.Namespace) -> int:
    """Run ``iteration-heads pathways`` with parsed arguments."""
    _check_args(args)
    from iteration_heads._io import write_output_text
    from iteration_heads._results import plain
    from iteration_heads.cli.pathway_runs import open_model, run_analyses, studied_prompts
    from iteration_heads.pathways.solved import solved_prompts
    from iteration_heads.viz.pathway_report import write_pathway_report

    opened = open_model(args.path, getattr(args, "dtype", "float32"))
    prompts, source = studied_prompts(args, opened)
    if args.dry_run:
        return _dry_run(args, opened, prompts, source)
    summary = [
        f"{args.path}: {opened.source} model, {opened.model.cfg.n_layers} layers x "
        f"{opened.model.cfg.n_heads} heads; {len(prompts)} prompts ({source})"
    ]
    kept: dict[str, float] | None = None
    if args.solved is not None:
        prompts, kept = solved_prompts(opened.model, prompts, by=args.solved)
        summary.append(
            f"kept the prompts solved by {args.solved} ({len(prompts)}): "
            + ", ".join(f"{k} {v:.2f}" for k, v in kept.items())
        )
    plan_of(args, opened.model, prompts, timed=False).check_fits()  # before any work
    if not args.json:
        print("\n".join(summary), flush=True)
    results, skipped = run_analyses(opened.model, prompts, args)
    record = {
        "model": str(args.path),
        "source": opened.source,
        "prompts": {"n": len(prompts), "from": source, "labels": sorted(set(prompts.labels))},
        "solved": kept,
        "results": {k: v.to_dict() for k, v in results.items()},
        "skipped": skipped,
    }
    text = json.dumps(plain(record), default=str)
    if args.json:
        print(text)
    else:
        for key, result in results.items():
            print(f"\n== {key}\n{result.format()}")
        for key, reason in skipped.items():
            print(f"skipped {key}: {reason}")
    if args.out_json is not None:
        write_output_text(args.out_json, text + "\n")
        print(f"wrote {args.out_json}", file=sys.stderr if args.json else sys.stdout)
    if args.report is not None:
        out = write_pathway_report(
            args.report, results, title=f"pathways: {args.path}", summary=summary,
            skipped=skipped, names=opened.names,
        )  # fmt: skip
        where = sys.stderr if args.json else sys.stdout
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, self-contained)", file=where)
    return 0


def plan_of(args: argparse.Namespace, model: Any, prompts: Prompts, *, timed: bool) -> PathwaysPlan:
    """The :class:`~iteration_heads.pathways.cost.PathwaysPlan` of these arguments (``timed``:
    with the model timed here, for ``--dry-run``; else counts and memory only)."""
    from iteration_heads.auditing.cost import ForwardTiming
    from iteration_heads.pathways.cost import plan_pathways

    return plan_pathways(
        model, prompts, args.chosen, n_random=args.n_random, n_traced=args.n_traced,
        seed=args.seed, method=args.method, prior=args.prior,
        solved=args.solved if timed else None,
        timing=None if timed else ForwardTiming(0.0, 0.0),
    )  # fmt: skip


def _dry_run(args: argparse.Namespace, opened: Opened, prompts: Prompts, source: str) -> int:
    """Print the plan of the run (text or ``--json``); run no analysis."""
    model = opened.model
    plan = plan_of(args, model, prompts, timed=True)
    if args.json:
        print(plan.to_json())
        return 0
    print(
        f"{args.path}: {opened.source} model, {model.cfg.n_layers} layers x "
        f"{model.cfg.n_heads} heads; {len(prompts)} prompts ({source}); dry run: nothing runs"
    )
    print(plan.format())
    return 0
