"""Before any conclusion about heads: is the task written so that the model can read it, and does
the model solve its probes?

An audit on probes the model cannot do (a wrong token id, a missing BOS, the template of another
model) finds no iteration heads for a reason that has nothing to do with iteration. So an audit
first refuses token layouts that collide (:func:`check_token_layout`), then measures the model's
accuracy on the chain of thought of its probes (:func:`probe_accuracy`) and compares it with
chance (:func:`chance_accuracy`): below :func:`needed_accuracy`, the verdict says that the model
does not solve these probes instead of concluding about heads.
"""

from __future__ import annotations

from typing import Any

import torch

from iteration_heads.detection.encoding import TextEncoding, TokenEncoding
from iteration_heads.detection.probes import Encoding, Probes
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import as_batch
from iteration_heads.interventions.scores import run_scored
from iteration_heads.tasks.task import check_int

SOLVED_FRACTION = 0.5
"""A model solves its probes when its token accuracy covers at least this fraction of the way
from chance to 1 (see :func:`needed_accuracy`)."""

MIN_SEQUENCE_ACCURACY = 0.1
"""...and gets at least this fraction of its probes right as a whole chain of thought: a wrong
writing of the task can leave the token accuracy high (the model copies or guesses most states)
while no chain is right, and an ablation from 0.000 to 0.000 says nothing about heads."""

MIN_PROBES = 16
"""An audit judges on at least this many probes: fewer make the ablation and the peakiness
anecdotes (``iteration-heads audit`` refuses ``--n-probes`` below it; :func:`audit` says that it
cannot judge)."""

MIN_PROBE_LEN = 3
"""An audit judges on probes of at least this length: at one step every head that attends to
the only input is "peaked", and at two the iteration head is hard to tell from a head that
attends to a fixed offset (``--max-len`` below it is refused)."""


def check_token_layout(encoding: Encoding | None, n_symbols: int | None = None) -> None:
    """Refuse a writing of the task in which two roles share one token id (or one text): the
    EoI marker equal to BOS, EoS, the task token or a symbol's token, two symbols with one id
    (``n_symbols``: the task's, for a text encoding whose symbols are the default ``0, 1, ...``).

    Example:
        >>> check_token_layout(TokenEncoding(tuple(range(11)), eoi_token=11, bos_token=12))
        >>> check_token_layout(TokenEncoding(tuple(range(11)), eoi_token=11, bos_token=11))
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: token layout: 11 is both the EoI token and the BOS token: every role (each symbol, EoI, BOS, EoS, task) needs its own token id
    """
    check_int("n_symbols", n_symbols, minimum=1, none=True)
    if isinstance(encoding, TokenEncoding):
        roles: list[tuple[str, Any]] = [
            ("EoI token", encoding.eoi_token),
            ("BOS token", encoding.bos_token),
            ("EoS token", encoding.eos_token),
            ("task token", encoding.task_token),
        ]
        roles += [(f"token of symbol {v}", t) for v, t in enumerate(encoding.symbol_to_token)]
        what = "token id"
    elif isinstance(encoding, TextEncoding):
        roles = [("EoI text", encoding.eoi_text)]
        n = len(encoding.symbols) if encoding.symbols is not None else (n_symbols or 0)
        roles += [(f"text of symbol {v}", encoding.symbol_text(v)) for v in range(n)]
        what = "text"
    else:
        return
    seen: dict[Any, str] = {}
    for role, value in roles:
        if value is None:
            continue
        if value in seen:
            raise IterationHeadsError(
                f"token layout: {value!r} is both the {seen[value]} and the {role}: every role "
                f"(each symbol, EoI, BOS, EoS, task) needs its own {what}"
            )
        seen[value] = role


def check_vocabulary(model: Any, probes: Probes) -> None:
    """Refuse probes holding a token id outside the model's vocabulary.

    Example:
        >>> from iteration_heads import load
        >>> model = load("polynomial_paper")
        >>> probes = Probes.from_task(
        ...     "polynomial", symbol_to_token={v: v for v in range(11)}, eoi_token=99, max_len=4
        ... )
        >>> check_vocabulary(model, probes)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: the probes hold token id 99, outside the model's vocabulary of 16 tokens (0..15): check the token ids
    """
    d_vocab = int(model.cfg.d_vocab)
    largest = int(probes.tokens.max())
    if largest >= d_vocab or int(probes.tokens.min()) < 0:
        bad = largest if largest >= d_vocab else int(probes.tokens.min())
        raise IterationHeadsError(
            f"the probes hold token id {bad}, outside the model's vocabulary of {d_vocab} tokens "
            f"(0..{d_vocab - 1}): check the token ids"
        )


def chance_accuracy(probes: Probes) -> float:
    """The token accuracy of a guess that does not read the probe: one over the task's number of
    symbols (each state is one of them), or over the distinct target tokens without a task.

    Example:
        >>> ids = {v: v for v in range(11)}
        >>> probes = Probes.from_task("polynomial", symbol_to_token=ids, eoi_token=11, max_len=4)
        >>> chance_accuracy(probes)
        0.09090909090909091
    """
    if probes.task is not None:
        return 1.0 / int(probes.task.n_symbols)
    if probes.targets is None:
        raise IterationHeadsError("chance accuracy needs probes with targets")
    scored = probes.targets[probes.targets != -100]
    return 1.0 / max(1, int(torch.unique(scored).numel()))


def needed_accuracy(chance: float) -> float:
    """The token accuracy a model needs to count as solving its probes: halfway from chance to
    1, ``chance + SOLVED_FRACTION * (1 - chance)`` (0.55 for 11 symbols, 0.75 for 2).

    Why halfway: a model that solves its task reaches 0.95 or more (the shipped models and the
    test fixtures score 1.00); a wrong writing of the task (a BOS id as EoI, a symbol's id as
    EoI, a missing BOS) leaves the model reading sequences it was never trained on, and a GPT-2
    trained on polynomial iteration then scores 0.13 to 0.34, with no probe right as a whole.

    Example:
        >>> round(needed_accuracy(1 / 11), 3), needed_accuracy(0.5)
        (0.545, 0.75)
    """
    valid = isinstance(chance, int | float) and not isinstance(chance, bool)
    if not valid or not 0.0 < chance <= 1.0:
        raise IterationHeadsError(f"chance={chance!r}, expected a number in (0, 1]")
    return chance + SOLVED_FRACTION * (1.0 - chance)


def probe_accuracy(model: Any, probes: Probes, *, batch_size: int = 512) -> tuple[float, float]:
    """``(token accuracy, sequence accuracy)`` of ``model`` on the chain of thought of
    ``probes`` (argmax at every scored position, averaged per length over lengths >= 4 as
    training logs it).

    Example:
        >>> from iteration_heads import load
        >>> model = load("polynomial_paper")
        >>> probe_accuracy(model, Probes.from_model(model, n=64))
        (1.0, 1.0)
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if probes.targets is None:
        raise IterationHeadsError(
            "auditing needs probes with targets (to score and to ablate): build them with "
            "Probes.from_task, Probes.from_text or Probes(..., targets=...)"
        )
    scores = run_scored(model, as_batch(model, probes), batch_size=batch_size)
    return scores.mean("token_accuracy"), scores.mean("accuracy")
