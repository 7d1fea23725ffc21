"""What an audit starts from: a folder (a library model, a shipped name, or a HuggingFace
checkpoint with its tokenizer) and a description of how the model writes the task (a text
template, or token ids), turned into a model and probes with targets.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from iteration_heads._io import CONFIG_FILE, METADATA_FILE, read_json
from iteration_heads.auditing.solving import MIN_PROBE_LEN, MIN_PROBES, check_token_layout
from iteration_heads.detection.encoding import TextEncoding, TokenEncoding
from iteration_heads.detection.probes import Encoding, Probes
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.checkpoint import load, model_directory
from iteration_heads.model.hf import load_hf_folder
from iteration_heads.model.precision import cast_model, dtype_named
from iteration_heads.tasks.task import Task, check_int, get_task

MAX_PROBE_LEN = 16
"""The longest probes an audit picks by itself (the paper's Lmax); the context may cap it."""


@dataclass(frozen=True)
class TaskWriting:
    """How a model writes a task: as text (``template``, read through its tokenizer) or in token
    ids (``symbol_tokens``, with ``eoi_token`` and optional ``bos``/``eos``/``task`` tokens).

    Example:
        >>> TaskWriting("parity", symbol_tokens=(40, 41), eoi_token=7).encoding(None)
        TokenEncoding(symbol_to_token=(40, 41), eoi_token=7, eos_token=None, bos_token=None, task_token=None)
    """

    task: str = "polynomial"
    template: str | None = None
    eoi_text: str = "="
    separator: str = " "
    symbols: tuple[str, ...] | None = None
    symbol_tokens: tuple[int, ...] | None = None
    eoi_token: int | None = None
    bos_token: int | None = None
    eos_token: int | None = None
    task_token: int | None = None

    def __post_init__(self) -> None:
        for name in ("eoi_token", "bos_token", "eos_token", "task_token"):
            check_int(name, getattr(self, name), minimum=0, none=True)
        if self.symbol_tokens is not None:
            if not isinstance(self.symbol_tokens, tuple | list):
                raise IterationHeadsError(
                    f"symbol_tokens={self.symbol_tokens!r}, expected a tuple of token ids"
                )
            for i, token in enumerate(self.symbol_tokens):
                check_int(f"symbol_tokens[{i}]", token, minimum=0)

    def encoding(self, tokenizer: Any) -> Encoding:
        """The encoding this describes (a text template needs the model's ``tokenizer``)."""
        if self.template is not None and self.symbol_tokens is not None:
            raise IterationHeadsError("give a text template or symbol tokens, not both")
        if self.template is not None:
            if tokenizer is None:
                raise IterationHeadsError(
                    "a text template needs the model's tokenizer, and the folder holds none: "
                    "save the tokenizer with the model, or give --symbol-tokens and --eoi-token"
                )
            text = TextEncoding(
                tokenizer, self.template, self.eoi_text, self.separator, self.symbols
            )
            check_token_layout(text, get_task(self.task).n_symbols)
            return text
        if self.symbol_tokens is None or self.eoi_token is None:
            raise IterationHeadsError(
                "say how the model writes the task: a text template (--template, with its "
                "tokenizer) or token ids (--symbol-tokens and --eoi-token)"
            )
        n_symbols = get_task(self.task).n_symbols
        if len(self.symbol_tokens) != n_symbols:
            raise IterationHeadsError(
                f"{len(self.symbol_tokens)} symbol tokens for task {self.task!r}, which has "
                f"{n_symbols} symbols (0..{n_symbols - 1})"
            )
        encoding = TokenEncoding(
            self.symbol_tokens, self.eoi_token, self.eos_token, self.bos_token, self.task_token
        )
        check_token_layout(encoding)
        return encoding


def longest_fitting(encoding: Encoding, task: Task, n_ctx: int, limit: int = MAX_PROBE_LEN) -> int:
    """The longest input length (up to ``limit``) whose probes fit a context of ``n_ctx``.

    Raises:
        IterationHeadsError: when not even probes of length
            :data:`~iteration_heads.auditing.solving.MIN_PROBE_LEN` fit.

    Example:
        >>> encoding = TokenEncoding(tuple(range(11)), eoi_token=11, eos_token=12, bos_token=13)
        >>> longest_fitting(encoding, get_task("polynomial"), 19)  # BOS x_1..x_8 EoI s_1..s_8 EoS
        8
    """
    n_ctx = check_int("n_ctx", n_ctx, minimum=1)
    limit = check_int("limit", limit, minimum=1)
    generator = torch.Generator().manual_seed(0)
    best = 0
    for length in range(1, limit + 1):
        sample = task.sample_inputs(1, length, generator=generator)
        if encoding.encode(task, sample).tokens.shape[1] > n_ctx:
            break
        best = length
    if best < MIN_PROBE_LEN:
        sample = task.sample_inputs(1, MIN_PROBE_LEN, generator=generator)
        width = encoding.encode(task, sample).tokens.shape[1]
        raise IterationHeadsError(
            f"the model's context holds {n_ctx} positions; probes of length {MIN_PROBE_LEN} (the "
            f"shortest an audit judges on) need {width}: the context is too short to audit"
        )
    return best


@dataclass(frozen=True)
class Subject:
    """A model to audit and its probes.

    Attributes:
        model: The TransformerLens bridge.
        probes: Probes with targets, in the model's own writing of the task.
        tokenizer: The HuggingFace tokenizer found with it (None for token-level models).
        source: ``"library"`` or ``"huggingface"``.
        path: The folder it came from.
        config: The model's own configuration (for reports).
    """

    model: Any
    probes: Probes
    tokenizer: Any
    source: str
    path: Path
    config: dict[str, Any]


def open_subject(
    path: str | os.PathLike[str],
    writing: TaskWriting | None = None,
    *,
    max_len: int | None = None,
    n_probes: int = 512,
    seed: int = 0,
    probes: Probes | None = None,
    dtype: str = "float32",
) -> Subject:
    """Load a model folder (or a shipped model's name), its weights cast to ``dtype``
    (:func:`~iteration_heads.model.precision.cast_model`), and build its probes.

    A library model probes its own test split (``writing`` may name another task); a
    HuggingFace folder needs ``writing`` (a template for its tokenizer, or token ids).
    ``max_len`` defaults to the longest probes that fit its context (at most 16). ``probes``:
    use these instead of building them (the checkpoints of one run share theirs). An audit
    judges on at least :data:`~iteration_heads.auditing.solving.MIN_PROBES` probes of length up
    to at least :data:`~iteration_heads.auditing.solving.MIN_PROBE_LEN`: fewer or shorter are
    refused.

    Example:
        >>> writing = TaskWriting(template="<s> {inputs} {eoi} {states} </s>")
        >>> subject = open_subject("tests/fixtures/gpt2_text_polynomial", writing, n_probes=64)
        >>> subject.source, subject.probes.max_len, len(subject.probes)
        ('huggingface', 8, 64)
        >>> open_subject("no/such/folder")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: model directory 'no/such/folder' does not exist and is not the name of a shipped model (...)
    """
    if max_len is not None:
        check_int("max_len", max_len, minimum=1)
        if max_len < MIN_PROBE_LEN:
            raise IterationHeadsError(
                f"max_len={max_len}: an audit needs probes of length >= {MIN_PROBE_LEN} to tell "
                "an iteration head from other heads"
            )
    check_int("n_probes", n_probes, minimum=1)
    if n_probes < MIN_PROBES:
        raise IterationHeadsError(
            f"n_probes={n_probes}: an audit needs at least {MIN_PROBES} probes for a verdict"
        )
    check_int("seed", seed, minimum=0)
    dtype_named(dtype)
    if writing is not None and not isinstance(writing, TaskWriting):
        raise IterationHeadsError(f"writing must be a TaskWriting, got {type(writing).__name__}")
    folder = model_directory(path)
    if not (folder / CONFIG_FILE).is_file():
        raise IterationHeadsError(
            f"{str(folder)!r} holds no {CONFIG_FILE}: expected a model folder (a library model "
            "or a HuggingFace checkpoint)"
        )
    if (folder / METADATA_FILE).is_file() and "layout" in read_json(folder / CONFIG_FILE):
        if writing is not None:  # a library model writes the task in its own layout
            given = [
                f.name
                for f in dataclasses.fields(TaskWriting)
                if f.name != "task" and getattr(writing, f.name) != f.default
            ]
            if given:
                raise IterationHeadsError(
                    f"{str(folder)!r} is a library model, which writes the task in its own token "
                    f"layout: {', '.join(given)} apply to HuggingFace folders only; leave them out"
                )
        if max_len is not None:
            raise IterationHeadsError(
                f"max_len={max_len}: a library model is probed on its own test lengths; leave "
                "max_len out"
            )
        model = cast_model(load(folder), dtype)
        own = None if writing is None else writing.task
        probes = probes or Probes.from_model(model, task=own, n=n_probes, seed=seed)
        config = read_json(folder / CONFIG_FILE)
        return Subject(model, probes, None, "library", folder, config)
    model, tokenizer = load_hf_folder(folder)
    cast_model(model, dtype)
    config = read_json(folder / CONFIG_FILE)
    if probes is not None:
        return Subject(model, probes, tokenizer, "huggingface", folder, config)
    encoding = (writing or TaskWriting()).encoding(tokenizer)
    task = get_task((writing or TaskWriting()).task)
    n_ctx = int(model.cfg.n_ctx)
    fitting = longest_fitting(encoding, task, n_ctx)
    if max_len is not None and max_len > fitting:
        raise IterationHeadsError(
            f"probes of length {max_len} do not fit the model's context of {n_ctx} positions "
            f"(the longest that fits: {fitting})"
        )
    probes = Probes.from_encoding(
        encoding, task, max_len=max_len or fitting, n=n_probes, seed=seed,
        source=f"{task.name} as the model writes it",
    )  # fmt: skip
    return Subject(model, probes, tokenizer, "huggingface", folder, config)


def parse_ints(text: str | None, what: str) -> tuple[int, ...] | None:
    """``"3,4,5"`` as ``(3, 4, 5)``, with a one-line error naming ``what``.

    Example:
        >>> parse_ints("3, 4,5", "--symbol-tokens")
        (3, 4, 5)
    """
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise IterationHeadsError(f"{what} {text!r}: expected comma-separated integers") from None


def parse_words(text: str | None) -> tuple[str, ...] | None:
    """``"zero,one"`` as ``("zero", "one")``.

    Example:
        >>> parse_words("zero,one")
        ('zero', 'one')
    """
    return None if text is None else tuple(text.split(","))
