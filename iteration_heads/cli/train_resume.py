"""What ``iteration-heads train`` needs beyond its options: which options a command line gave,
how they differ from the run it resumes, and what an interrupted run kept."""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iteration_heads._io import RUN_FILE
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model import ModelConfig
from iteration_heads.tasks import DataConfig
from iteration_heads.training import TrainConfig
from iteration_heads.training.resume import checkpoints

ALLOWED_ON_RESUME = {"out", "resume", "epochs", "quiet", "init_from"}
"""Options that may differ from the run's when resuming (``--epochs`` extends it)."""

TRAIN_FIELDS = (
    "optimizer", "lr", "warmup_steps", "weight_decay", "batch_size", "batch_order",
    "embedding_dropout", "eval_every", "checkpoint_every", "seed", "threads", "device",
)  # fmt: skip
"""Options named as the :class:`~iteration_heads.TrainConfig` field they set."""
MODEL_FIELDS = ("max_len", "d_model", "n_layers", "n_heads", "activation", "positional",
                "embedding_init", "seed")  # fmt: skip
DATA_FIELDS = ("task", "max_len", "min_len", "n_train", "n_test", "seed")


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, Any]:
    """The options of the ``train`` command line ``argv`` that were given (not defaults), by
    destination, parsed by ``parser`` (the ``train`` subparser; its defaults are dropped).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> _ = parser.add_argument("--lr", type=float, default=0.1)
        >>> _ = parser.add_argument("--seed", type=int, default=0)
        >>> given_options(parser, ["train", "--lr", "0.5"])
        {'lr': 0.5}
    """
    tokens = list(argv)
    tokens = tokens[tokens.index("train") + 1 :] if "train" in tokens else tokens
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    defaults = set(parser._defaults)  # set_defaults: the command's function
    parser._defaults = {}
    given = vars(parser.parse_args(tokens))
    return {k: v for k, v in given.items() if k not in defaults}


def _option(dest: str) -> str:
    return {"d_mlp": "--d-mlp", "no_cot": "--no-cot", "no_overlap": "--no-overlap"}.get(
        dest, "--" + dest.replace("_", "-")
    )


def resume_conflicts(given: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """The options of ``given`` (:func:`given_options`) whose value differs from the run
    record ``record`` (``run.json``), as ``--option value (the run: value)``.

    Example:
        >>> record = {"model": ModelConfig().to_dict(), "data": DataConfig().to_dict(),
        ...           "train": TrainConfig().to_dict()}
        >>> resume_conflicts({"lr": 0.5, "epochs": 2000, "seed": 0}, record)
        ['--lr 0.5 (the run: 0.0003)']
    """
    model = ModelConfig.from_dict(record["model"])
    data = DataConfig.from_dict(record["data"])
    train = TrainConfig.from_dict(record["train"])
    differences = []
    for dest, value in given.items():
        if dest in ALLOWED_ON_RESUME:
            continue
        runs: list[Any] = []  # what the run has for this option, in each config it sets
        if dest in DATA_FIELDS:
            runs.append(getattr(data, dest))
        if dest in MODEL_FIELDS and "init_from" not in given:  # fine-tuned: the model's own
            runs.append(getattr(model, dest))
        if dest in TRAIN_FIELDS:
            runs.append(getattr(train, dest))
        flags = {"no_cot": not data.cot, "no_overlap": not data.overlap,
                 "stop_at_target": train.stop_at_target}  # fmt: skip
        if dest in flags:
            runs.append(flags[dest])
        if dest == "d_mlp" and "init_from" not in given:
            runs.append(model.d_mlp_)
        if dest == "trainable":
            value = tuple(value) if value else None
            runs.append(train.trainable)
        different = [run for run in runs if run != value]
        if different:
            theirs = different[0]
            if isinstance(value, bool):  # a flag: given here, not when the run started
                differences.append(f"{_option(dest)} (the run: without it)")
                continue
            shown = " ".join(value) if isinstance(value, tuple) else value
            if dest == "trainable":
                theirs = "every parameter" if theirs is None else " ".join(theirs)
            differences.append(f"{_option(dest)} {shown} (the run: {theirs})")
    return differences


def check_resume_options(run: Path, given: dict[str, Any], record: dict[str, Any]) -> None:
    """Refuse, in one line, to resume ``run`` with options that differ from its record, or
    with fewer ``--epochs`` than it has.

    Example:
        >>> record = {"model": ModelConfig().to_dict(), "data": DataConfig().to_dict(),
        ...           "train": TrainConfig().to_dict()}
        >>> check_resume_options(Path("R"), {"d_model": 64, "task": "parity"}, record)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: cannot resume 'R' with options that differ from the run's: --d-model 64 (the run: 128), --task parity (the run: polynomial); resume without them (the run keeps its own), or train into a new folder
    """
    saved_epochs = record["train"].get("epochs", 0)
    if given.get("epochs") is not None and given["epochs"] < saved_epochs:
        raise IterationHeadsError(
            f"cannot resume {str(run)!r} with --epochs {given['epochs']}: the run is "
            f"{saved_epochs} epochs long; resume without --epochs, or with more"
        )
    differences = resume_conflicts(given, record)
    if differences:
        raise IterationHeadsError(
            f"cannot resume {str(run)!r} with options that differ from the run's: "
            f"{', '.join(differences)}; resume without them (the run keeps its own), or train "
            "into a new folder"
        )


def interrupted(run: Path) -> str:
    """What an interrupted ``train`` kept in ``run``, and how to continue it.

    Example:
        >>> interrupted(Path("no/such/run"))
        'nothing was saved in no/such/run (the run had not started)'
    """
    found = checkpoints(run) if (run / RUN_FILE).is_file() else []
    if not found:
        return f"nothing was saved in {run} (the run had not started)"
    return (
        f"{run} keeps its checkpoint of epoch {found[0][0]}; continue with: iteration-heads "
        f"train --out {shlex.quote(str(run))} --resume"
    )


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Inside the block, warnings (a damaged checkpoint skipped, a torn history line dropped)
    print as one line each, ``iteration-heads: warning: ...``, not Python's two.

    Example:
        >>> import contextlib, io, warnings
        >>> err = io.StringIO()
        >>> with contextlib.redirect_stderr(err), one_line_warnings():
        ...     warnings.warn("skipped a damaged checkpoint")
        >>> err.getvalue()
        'iteration-heads: warning: skipped a damaged checkpoint\\n'
    """

    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        print(f"iteration-heads: warning: {' '.join(str(message).split())}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield
