"""Command line: ``iteration-heads train|eval|detect|audit|report|tasks|zoo|reproduce|sweep``.

Examples::

    iteration-heads zoo                       # the shipped trained models and their figures
    iteration-heads detect polynomial         # a shipped model by name, or a directory
    iteration-heads train --task polynomial --max-len 8 --d-model 64 --epochs 200 --out runs/poly
    iteration-heads eval runs/poly            # a readable table
    iteration-heads eval runs/poly --json     # one JSON object for scripts
    iteration-heads detect runs/poly          # EoI / iteration heads and a verdict
    iteration-heads audit hf_model --template "<s> {inputs} {eoi} {states} </s>"  # any model
    iteration-heads report runs/poly -o report.html   # one offline HTML page
    iteration-heads train --task parity --init-from polynomial --epochs 20 --out runs/ft
    iteration-heads train --task parity --init-from polynomial --trainable blocks.1.mlp ...
    iteration-heads reproduce emergence transfer --jobs 2   # the paper's experiments
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from iteration_heads import zoo
from iteration_heads._io import write_text
from iteration_heads.cli import audit as audit_command
from iteration_heads.cli import reproduce as reproduce_command
from iteration_heads.cli import sweep as sweep_command
from iteration_heads.cli.train_resume import (
    check_resume_options,
    given_options,
    interrupted,
    one_line_warnings,
)
from iteration_heads.detection import Probes, detect, steps_by_head
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.ontology import ONTOLOGY_EXPERIMENT
from iteration_heads.experiments.ontology_results import ontology_page
from iteration_heads.experiments.ontology_study import StudyOptions, study_ontology
from iteration_heads.interventions import verify
from iteration_heads.model import (
    ModelConfig,
    build_model,
    data_config,
    load,
    model_config,
    model_metadata,
)
from iteration_heads.tasks import DataConfig, TokenLayout, get_task, list_tasks, make_dataset
from iteration_heads.training import (
    TrainConfig,
    evaluate,
    history_summary,
    recipe_model_config,
    recipe_train_config,
    train,
    trainable_parameters,
)
from iteration_heads.training.budget import check_memory
from iteration_heads.training.loop import OPTIMIZERS
from iteration_heads.training.run_dir import check_resumable, check_run_folder, read_run_record
from iteration_heads.viz import write_report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``iteration-heads`` command; returns the exit status.

    Example:
        >>> main(["tasks"])  # doctest: +ELLIPSIS
        copy        s_t = x_t (binary)
        parity      s_t = s_{t-1} XOR x_t
        polynomial  s_t = s_{t-1} * x_t + 1 mod 11, x_t in 1..10, s_1 = x_1
        ...0
    """
    try:
        args = _parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt as err:  # Ctrl-C: one line (what was kept), no traceback
        detail = " ".join(str(err).split())
        print(f"iteration-heads: interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        return 130
    except IterationHeadsError as err:
        print(f"iteration-heads: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:  # the machine, not the input: still one line, no traceback
        print(f"iteration-heads: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1


class _Parser(argparse.ArgumentParser):
    """argparse whose errors (an unknown option, a value that is not a number) are the library's
    one-line error, which :func:`main` prints, instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        raise IterationHeadsError(f"{message}; see `{self.prog} --help`")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="iteration-heads",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model on an iterative task")
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    m, d, t = recipe_model_config(), DataConfig(), recipe_train_config()
    g = p.add_argument_group("data")
    g.add_argument("--task", default=d.task, help=f"registered task ({', '.join(list_tasks())})")
    g.add_argument("--max-len", type=int, default=d.max_len)
    g.add_argument("--min-len", type=int, default=d.min_len)
    g.add_argument("--n-train", type=int, default=d.n_train, help="training sequences per length")
    g.add_argument("--n-test", type=int, default=d.n_test, help="test sequences per length")
    g.add_argument(
        "--no-cot", action="store_true", help="answer right after EoI (no chain of thought)"
    )
    g.add_argument(
        "--no-overlap", action="store_true", help="no test input also in the training set"
    )
    g = p.add_argument_group("model")
    g.add_argument("--d-model", type=int, default=m.d_model)
    g.add_argument("--n-layers", type=int, default=m.n_layers)
    g.add_argument(
        "--n-heads", type=int, default=m.n_heads, help=f"heads per layer (the recipe: {m.n_heads})"
    )
    g.add_argument("--d-mlp", type=int, default=None, help="default 4·d_model")
    g.add_argument("--activation", default=m.activation)
    g.add_argument("--positional", choices=["learned", "frozen"], default=m.positional)
    g.add_argument(
        "--embedding-init", choices=["normal", "transformer_lens"], default=m.embedding_init
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"training length (default {t.epochs}; with --resume, the run's own: a larger "
        "value extends it)",
    )
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=t.optimizer)
    g.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"learning rate (default {t.lr}, the recipe; with --init-from {TrainConfig.lr}, the "
        "paper's fine-tuning)",
    )
    g.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help=f"optimiser steps of linear learning-rate warm-up (default {t.warmup_steps}, the "
        "recipe; with --init-from 0)",
    )
    g.add_argument("--weight-decay", type=float, default=t.weight_decay)
    g.add_argument("--batch-size", type=int, default=t.batch_size)
    g.add_argument("--batch-order", choices=["shuffled", "sorted"], default=t.batch_order)
    g.add_argument("--embedding-dropout", type=float, default=t.embedding_dropout)
    g.add_argument("--eval-every", type=int, default=t.eval_every)
    g.add_argument("--checkpoint-every", type=int, default=t.checkpoint_every)
    g.add_argument(
        "--stop-at-target",
        action="store_true",
        help="stop once accuracy >= 0.99 and an iteration head formed",
    )
    g.add_argument(
        "--trainable",
        nargs="+",
        default=None,
        metavar="SUBMODULE",
        help="train only these submodules, e.g. blocks.1.mlp (default: every parameter)",
    )
    g.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="fine-tune this saved model (directory or shipped name) instead of a new one; "
        "its model config replaces the model options",
    )
    g.add_argument("--seed", type=int, default=0, help="seeds data, initialisation and training")
    g.add_argument("--threads", type=int, default=None)
    g.add_argument("--device", default=t.device)
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train, train_parser=p)

    p = sub.add_parser("eval", help="per-length accuracy and attention metrics of a saved model")
    p.add_argument("directory", type=Path, help="model or run directory")
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_eval)

    p = sub.add_parser("detect", help="find EoI and iteration heads in a saved model")
    p.add_argument("directory", type=Path, help="model or run directory")
    p.add_argument(
        "--n-probes", type=int, default=None, help="at most this many test probes (default: all)"
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="also check the circuit causally: ablate it, and as many other heads (verify())",
    )
    p.add_argument(
        "--steps",
        action="store_true",
        help="also show where every head looks at each step: its weight on x_t, and the key it "
        "reads instead (alternative circuits; step_attention())",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_detect)

    audit_command.add_parser(sub)

    p = sub.add_parser(
        "report",
        help="one self-contained HTML report of a saved model or run (an ontology model: its "
        "pathway analyses)",
    )
    p.add_argument("directory", type=Path, help="model or run directory")
    p.add_argument("-o", "--out", type=Path, default=Path("report.html"), help="HTML file")
    p.add_argument(
        "--n-probes", type=int, default=256, help="test sequences for detection and interventions"
    )
    p.add_argument("--task", default=None, help="task to probe (default: the model's own)")
    p.add_argument("--length", type=int, default=None, help="probe length shown (default: Lmax)")
    p.set_defaults(func=_report)

    p = sub.add_parser("tasks", help="list the registered tasks")
    p.set_defaults(func=_tasks)

    p = sub.add_parser("zoo", help="list the shipped trained models (or rebuild them)")
    p.add_argument(
        "--build",
        nargs="*",
        default=None,
        metavar="NAME",
        help="retrain these shipped models (all if none named) through the reproduction cache",
    )
    p.add_argument("--runs", type=Path, default=Path("runs/reproduce"), help="run cache")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (one thread each)")
    p.set_defaults(func=_zoo)

    reproduce_command.add_parser(sub)
    sweep_command.add_parser(sub)
    return parser


def _train(args: argparse.Namespace) -> int:
    check_run_folder(args.out, args.resume)  # before anything is built or written
    if args.resume:  # options that differ from the run's, then the run's own files
        saved = read_run_record(args.out)
        TrainConfig.from_dict(saved["train"])
        check_resume_options(args.out, given_options(args.train_parser, args.argv), saved)
        check_resumable(args.out)
        mconfig = ModelConfig.from_dict(saved["model"])
        dconfig = DataConfig.from_dict(saved["data"])
        epochs = saved["train"].get("epochs") if args.epochs is None else args.epochs
        tconfig = TrainConfig.from_dict({**saved["train"], "epochs": epochs})
    else:
        dconfig = DataConfig(
            task=args.task,
            max_len=args.max_len,
            min_len=args.min_len,
            n_train=args.n_train,
            n_test=args.n_test,
            cot=not args.no_cot,
            overlap=not args.no_overlap,
            seed=args.seed,
        )
        mconfig = ModelConfig(
            layout=TokenLayout.for_task(dconfig.task),
            max_len=args.max_len,
            d_model=args.d_model,
            n_layers=args.n_layers,
            n_heads=args.n_heads,
            d_mlp_=args.d_mlp,
            activation=args.activation,
            positional=args.positional,
            embedding_init=args.embedding_init,
            seed=args.seed,
        )
        # a new model trains with the library's recipe, a fine-tuned one with the paper's Adam
        defaults = TrainConfig() if args.init_from is not None else recipe_train_config()
        tconfig = TrainConfig(
            epochs=TrainConfig.epochs if args.epochs is None else args.epochs,
            optimizer=args.optimizer,
            lr=defaults.lr if args.lr is None else args.lr,
            warmup_steps=defaults.warmup_steps if args.warmup_steps is None else args.warmup_steps,
            weight_decay=args.weight_decay,
            batch_size=args.batch_size,
            batch_order=args.batch_order,
            embedding_dropout=args.embedding_dropout,
            eval_every=args.eval_every,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
            device=args.device,
            threads=args.threads,
            stop_at_target=args.stop_at_target,
            trainable=tuple(args.trainable) if args.trainable else None,
        )
    if args.init_from is not None and not args.resume:
        model = load(args.init_from, device=tconfig.device)
        mconfig = model_config(model)
        if dconfig.task not in mconfig.layout.tasks:
            raise IterationHeadsError(
                f"--task {dconfig.task!r} is not in the layout of {args.init_from!r} "
                f"({list(mconfig.layout.tasks)})"
            )
        if dconfig.max_len > mconfig.max_len:
            raise IterationHeadsError(
                f"--max-len {dconfig.max_len} exceeds the max_len={mconfig.max_len} of "
                f"{args.init_from!r}"
            )
        check_memory(dconfig, mconfig, tconfig)
    else:  # when resuming, the checkpoint replaces these weights
        check_memory(dconfig, mconfig, tconfig)  # before anything is allocated
        model = build_model(mconfig, device=tconfig.device)
    trainable_parameters(model, tconfig.trainable)  # names checked before the run starts
    data = make_dataset(dconfig, mconfig.layout)
    try:
        with one_line_warnings():
            history = train(
                model, data, tconfig, out_dir=args.out, resume=args.resume, progress=not args.quiet
            )
    except KeyboardInterrupt:
        raise KeyboardInterrupt(interrupted(args.out)) from None
    summary = history_summary(history)
    print(f"saved to {args.out}")
    print(_format_summary(summary))
    return 0


def _format_summary(summary: dict[str, Any]) -> str:
    test = summary["test"]
    peaks = ", ".join(f"{v:.2f}" for v in test["iteration_peakiness"]) or "-"
    eoi = ", ".join(f"{v:.2f}" for v in test["eoi_peakiness"]) or "-"
    return (
        f"epoch {summary['epochs']}: test accuracy (L>=4) {test['accuracy']:.3f}; "
        f"peakiness per layer: EoI [{eoi}], iteration [{peaks}]; "
        f"accuracy >= 0.99 at epoch {summary['first_epoch_accuracy']}, "
        f"iteration head at epoch {summary['first_epoch_iteration_head']}; "
        f"{summary['train_seconds']:.0f} s training, {summary['eval_seconds']:.0f} s evaluation"
    )


def _eval(args: argparse.Namespace) -> int:
    model = load(args.directory)
    dconfig = data_config(model)
    data = make_dataset(dconfig, model_config(model).layout)
    result = evaluate(model, data.test if args.split == "test" else data.train)
    if args.json:
        record = {"task": dconfig.task, "split": args.split, **result.to_dict(per_head=True)}
        print(json.dumps(record))
    else:
        print(result.format(title=f"{args.directory} — task {dconfig.task}, {args.split} split"))
    return 0


def _detect(args: argparse.Namespace) -> int:
    model = load(args.directory)
    report = detect(model, n_probes=args.n_probes)
    checked = verify(model, report, n=args.n_probes) if args.verify else None
    steps = []
    if args.steps:
        steps = list(steps_by_head(model, Probes.from_model(model, n=args.n_probes)).values())
    if args.json:
        record = json.loads(report.to_json())
        if checked is not None:
            record["verification"] = checked.to_dict()
        if steps:
            record["steps"] = [found.to_dict() for found in steps]
        print(json.dumps(record, indent=2, default=str))
    else:
        print(report.format())
        if checked is not None:
            print()
            print(checked.format())
        for found in steps:
            print()
            print(found.format())
    return 0


def _report(args: argparse.Namespace) -> int:
    model = load(args.directory)
    if (model_metadata(model) or {}).get("task") == ONTOLOGY_EXPERIMENT:  # the pathways page
        if args.task is not None or args.length is not None:
            raise IterationHeadsError("--task and --length do not apply to an ontology model")
        if args.n_probes < 8:
            raise IterationHeadsError(f"--n-probes {args.n_probes}, expected an integer >= 8")
        options = StudyOptions(
            n_problems=args.n_probes // 8, n_reference=40, n_random=8, n_traced=10
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, ontology_page(study_ontology(model, options)))
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, self-contained)")
        return 0
    out = write_report(
        args.directory,
        args.out,
        n_probes=args.n_probes,
        task=args.task,
        length=args.length,
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, self-contained)")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    for name in list_tasks():
        print(f"{name:<11} {get_task(name).description}")
    return 0


def _zoo(args: argparse.Namespace) -> int:
    if args.build is None:
        if args.jobs != 1 or args.runs != Path("runs/reproduce"):
            raise IterationHeadsError("--jobs and --runs go with --build (rebuild the models)")
        print(zoo.table())
        return 0
    for path in zoo.build(args.build or None, runs=args.runs, jobs=args.jobs):
        print(f"installed {path}")
    print(zoo.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
