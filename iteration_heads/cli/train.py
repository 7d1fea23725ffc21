"""``iteration-heads train``: train a model on an iterative task into a run directory, resume
it, or fine-tune a saved model (its resume checks: :mod:`~iteration_heads.cli.train_resume`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``train`` subcommand and its options (defaults: the library's recipe)."""
    from iteration_heads.tasks import DataConfig, list_tasks
    from iteration_heads.training import TrainConfig, recipe_model_config, recipe_train_config
    from iteration_heads.training.loop import OPTIMIZERS

    p = sub.add_parser(
        "train",
        help="train a model on an iterative task",
        description="Train a model on an iterative task into a run directory (checkpoints, "
        "history, the final model); --resume continues it, --init-from fine-tunes a saved "
        "model.",
    )
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
    g.add_argument("--device", default=t.device)
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, train_parser=p)


def run(args: argparse.Namespace) -> int:
    """Run ``iteration-heads train`` with parsed arguments; 0 once the run is saved. Ctrl-C
    raises ``KeyboardInterrupt`` carrying what the run kept (its last checkpoint)."""
    from iteration_heads.cli.train_resume import (
        check_resume_options,
        given_options,
        interrupted,
        one_line_warnings,
    )
    from iteration_heads.errors import IterationHeadsError
    from iteration_heads.model import ModelConfig, build_model, load, model_config
    from iteration_heads.tasks import DataConfig, TokenLayout, make_dataset
    from iteration_heads.training import (
        TrainConfig,
        history_summary,
        recipe_train_config,
        train,
        trainable_parameters,
    )
    from iteration_heads.training.budget import check_memory
    from iteration_heads.training.run_dir import check_resumable, check_run_folder, read_run_record

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
    print(format_summary(summary))
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    """The one line ``train`` prints at the end, from
    :func:`~iteration_heads.training.history_summary`.

    Example:
        >>> summary = {"epochs": 2, "first_epoch_accuracy": None,
        ...     "first_epoch_iteration_head": 2, "train_seconds": 1.2, "eval_seconds": 0.4,
        ...     "test": {"accuracy": 0.5, "iteration_peakiness": [0.1, 0.9],
        ...              "eoi_peakiness": [0.8, 0.2]}}
        >>> print(format_summary(summary))  # doctest: +NORMALIZE_WHITESPACE
        epoch 2: test accuracy (L>=4) 0.500; peakiness per layer: EoI [0.80, 0.20], iteration
        [0.10, 0.90]; accuracy >= 0.99 at epoch None, iteration head at epoch 2; 1 s training,
        0 s evaluation
    """
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
