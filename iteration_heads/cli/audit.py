"""``iteration-heads audit PATH``: the three-layer verdict on a model folder (a library model,
a shipped name, or a HuggingFace checkpoint with its tokenizer), or on every checkpoint of a
run folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from iteration_heads.cli.common import DTYPE_CHOICES
from iteration_heads.errors import IterationHeadsError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``audit`` subcommand and its options."""
    p = sub.add_parser(
        "audit",
        help="audit any model folder for iteration heads: found, used, position route",
        description="Audit a model folder (a library model, a shipped name, or a HuggingFace "
        "checkpoint with config.json, weights and, for text, its tokenizer), or every "
        "checkpoint of a run folder (checkpoint-<step> subfolders).",
    )
    p.add_argument("path", type=Path, help="model folder, shipped name, or run folder")
    p.add_argument(
        "--task", default="polynomial", help="task (default polynomial; `iteration-heads tasks`)"
    )
    g = p.add_argument_group("the chain of thought as text (read through the folder's tokenizer)")
    g.add_argument("--template", help='e.g. "<s> {inputs} {eoi} {states} </s>"')
    g.add_argument("--eoi-text", default="=", help="the end-of-input marker (default '=')")
    g.add_argument("--separator", default=" ", help="between symbols (default one space)")
    g.add_argument("--symbols", help="symbol texts, comma-separated (default 0,1,2,...)")
    g = p.add_argument_group("the chain of thought in token ids")
    g.add_argument("--symbol-tokens", help="token id of every symbol 0,1,..., comma-separated")
    g.add_argument("--eoi-token", type=int)
    g.add_argument("--bos-token", type=int)
    g.add_argument("--eos-token", type=int)
    g.add_argument("--task-token", type=int)
    g = p.add_argument_group("probes and output")
    g.add_argument(
        "--max-len", type=int, help="longest probes, >= 3 (default: what fits, up to 16)"
    )
    g.add_argument("--n-probes", type=int, default=512, help="probes, >= 16 (default 512)")
    g.add_argument("--no-route", action="store_true", help="skip the position route")
    g.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="float32",
        help="one model: the weights' dtype for the audit (default float32); refused where the "
        "device has no fast kernels for it (float16 on most CPUs)",
    )
    g.add_argument("--json", action="store_true", help="print one JSON object")
    g.add_argument("--report", type=Path, help="one model: write a self-contained HTML report")
    g.add_argument("--figure", type=Path, help="run folders: write the curves as HTML")
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (passes, tokens, estimated time and peak memory of each stage, "
        "timed on a few passes here; for a run folder, of every checkpoint) and exit without "
        "auditing",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``iteration-heads audit`` with parsed arguments.

    Exit status: 0 with a verdict; 3 (:data:`~iteration_heads.auditing.EXIT_UNSOLVED`) when the
    model does not solve its probes (the verdict then says so and concludes nothing about
    heads); 2 for bad input.
    """
    from iteration_heads._io import CONFIG_FILE, checked_output
    from iteration_heads.auditing import (
        EXIT_UNSOLVED,
        TaskWriting,
        audit,
        audit_checkpoints,
        open_subject,
    )
    from iteration_heads.auditing.solving import MIN_PROBE_LEN, MIN_PROBES
    from iteration_heads.auditing.sources import parse_ints, parse_words
    from iteration_heads.model.checkpoint import model_directory
    from iteration_heads.viz import checkpoint_curves, save_html, write_audit_report

    for option, value, least in (
        ("--n-probes", args.n_probes, MIN_PROBES),
        ("--max-len", args.max_len, MIN_PROBE_LEN),
    ):
        if value is not None and value < least:
            raise IterationHeadsError(f"{option} {value}: an audit needs >= {least} for a verdict")
    folder = model_directory(args.path)
    many = not (folder / CONFIG_FILE).is_file() and any(folder.glob(f"*/{CONFIG_FILE}"))
    if many and args.report is not None:
        raise IterationHeadsError(
            f"--report does not apply to {str(folder)!r}, a run folder of checkpoints: it reports "
            "on one model (audit one checkpoint-<step> folder for it)"
        )
    if not many and args.figure is not None:
        raise IterationHeadsError(
            f"--figure does not apply to {str(folder)!r}, a single model: it draws the curves of "
            "a run folder's checkpoints"
        )
    dtype = getattr(args, "dtype", "float32")
    if many and dtype != "float32":
        raise IterationHeadsError(
            f"--dtype {dtype} applies to one model, not to {str(folder)!r}, a run folder of "
            "checkpoints (audit one checkpoint-<step> folder for it)"
        )
    if many and args.no_route:
        raise IterationHeadsError(
            f"--no-route does not apply to {str(folder)!r}, a run folder of checkpoints: its "
            "audit runs no position route"
        )
    for option in ("report", "figure"):
        if args.dry_run and getattr(args, option) is not None:
            raise IterationHeadsError(f"--dry-run writes nothing: drop --{option}")
    report = None if args.report is None else checked_output(args.report)  # before any work
    figure = None if args.figure is None else checked_output(args.figure)
    writing = TaskWriting(
        task=args.task,
        template=args.template,
        eoi_text=args.eoi_text,
        separator=args.separator,
        symbols=parse_words(args.symbols),
        symbol_tokens=parse_ints(args.symbol_tokens, "--symbol-tokens"),
        eoi_token=args.eoi_token,
        bos_token=args.bos_token,
        eos_token=args.eos_token,
        task_token=args.task_token,
    )
    if many and args.dry_run:
        from iteration_heads.auditing.checkpoint_cost import plan_checkpoints

        planned = plan_checkpoints(folder, writing, n_probes=args.n_probes, max_len=args.max_len)
        print(planned.to_json() if args.json else planned.format())
        return 0
    if many:
        result = audit_checkpoints(folder, writing, n_probes=args.n_probes, max_len=args.max_len)
        print(json.dumps(result.to_dict(), default=str) if args.json else result.format())
        if figure is not None:
            print(f"wrote {save_html(checkpoint_curves(result), figure)}")
        return 0
    subject = open_subject(
        folder, writing, max_len=args.max_len, n_probes=args.n_probes, dtype=dtype
    )
    from iteration_heads.auditing.cost import ForwardTiming, plan_audit

    timing = None if args.dry_run else ForwardTiming(0.0, 0.0)  # a real run: memory only
    plan = plan_audit(subject.model, subject.probes, route=not args.no_route, timing=timing)
    if args.dry_run:
        print(plan.to_json() if args.json else plan.format())
        return 0
    plan.check_fits()
    found = audit(subject.model, subject.probes, route=not args.no_route)
    print(found.to_json() if args.json else found.format())
    if report is not None:
        out = write_audit_report(subject, found, report)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, self-contained)")
    return 0 if found.solves_probes else EXIT_UNSOLVED
