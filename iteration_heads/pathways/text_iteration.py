"""The paper's iterative tasks written as text, as prompt records (the schema of
:mod:`~iteration_heads.pathways.records`): the same prompts as
:func:`~iteration_heads.pathways.prompts.iteration_prompts` (one per chain-of-thought step
``s_t``, the input ``x_t`` it reads corrupted), for a model that reads the task through its
tokenizer, such as one trained elsewhere on ``"<s> 3 2 10 = 3 7 5 </s>"``.

The text comes from the audit's :class:`~iteration_heads.detection.encoding.TextEncoding` (the
template, the EoI marker, the symbols and their separator), so a model that the audit reads
through a template is analysed by the pathway analyses on the same text.
"""

from __future__ import annotations

from typing import Any

import torch

from iteration_heads.detection.encoding import TextEncoding
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.prompts import ITERATION_SEGMENTS
from iteration_heads.tasks.task import Task, check_int, get_task


def _encode(encoding: TextEncoding, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text`` and their character spans."""
    encoded = encoding.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(encoded["input_ids"]), [tuple(span) for span in encoded["offset_mapping"]]


def _token_at(offsets: list[tuple[int, int]], lo: int, hi: int) -> tuple[int, int]:
    """The first token covering characters ``lo..hi``: its index and its first character."""
    for i, (a, b) in enumerate(offsets):
        if a < hi and b > lo and b > a:
            return i, a
    raise IterationHeadsError(f"no token covers characters {lo}..{hi}")


def iteration_records(
    encoding: TextEncoding,
    task: str | Task = "polynomial",
    *,
    n: int = 32,
    max_len: int = 8,
    min_len: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Prompt records of ``n`` sequences of ``task`` (lengths ``min_len..max_len`` in turn,
    default ``max_len`` only) written by ``encoding``: one record per chain-of-thought step
    ``s_t``, studied where the model predicts ``s_t`` (its first token), corrupted by writing
    another symbol for the input ``x_t`` (one whose text has the same number of tokens, drawn
    with ``seed``), with the segments ``input`` and ``chain of thought``, the label ``step t``,
    the sequence as ``example``, and as ``foils`` the other symbols whose text is one token there
    (other than the answer's first token).

    Example:
        >>> from tokenizers import Tokenizer
        >>> from tokenizers.models import WordLevel
        >>> from tokenizers.pre_tokenizers import WhitespaceSplit
        >>> from transformers import PreTrainedTokenizerFast
        >>> words = ["<s>", "=", *map(str, range(11))]
        >>> core = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<s>"))
        >>> core.pre_tokenizer = WhitespaceSplit()
        >>> tokenizer = PreTrainedTokenizerFast(tokenizer_object=core)
        >>> encoding = TextEncoding(tokenizer, "<s> {inputs} {eoi} {states}")
        >>> records = iteration_records(encoding, n=1, max_len=3)
        >>> [(r["label"], r["text"][: r["step"]["char"]]) for r in records][:2]
        [('step 1', '<s> 5 10 4 = '), ('step 2', '<s> 5 10 4 = 5 ')]
    """
    task = get_task(task) if isinstance(task, str) else task
    if not isinstance(encoding, TextEncoding):
        raise IterationHeadsError(
            f"encoding of type {type(encoding).__name__}, expected a TextEncoding (a template "
            "read through a tokenizer)"
        )
    check_int("n", n, minimum=1)
    check_int("max_len", max_len, minimum=1)
    check_int("min_len", min_len, minimum=1, maximum=max_len, none=True)
    check_int("seed", seed, minimum=0)
    generator = torch.Generator().manual_seed(seed)
    lengths = list(range(min_len or max_len, max_len + 1))
    records: list[dict[str, Any]] = []
    for example in range(n):
        length = lengths[example % len(lengths)]
        inputs = task.sample_inputs(1, length, generator=generator)
        x = inputs[0].tolist()
        s = task.states(inputs)[0].tolist()
        text, spans = encoding.render(x, s)
        ids, offsets = _encode(encoding, text)
        input_span = [spans[0][0], spans[length - 1][1]]
        cot_span = [spans[length + 1][0], spans[-1][1]]
        for t in range(1, length + 1):
            answer_index, start = _token_at(offsets, *spans[length + t])
            lo, hi = spans[t - 1]
            order = torch.randperm(task.n_symbols - 1, generator=generator).tolist()
            corrupted = None
            for shift in order:
                value = (x[t - 1] + shift + 1) % task.n_symbols
                candidate = text[:lo] + encoding.symbol_text(value) + text[hi:]
                if len(_encode(encoding, candidate)[0]) == len(ids):
                    corrupted = {"span": [lo, hi], "with": encoding.symbol_text(value)}
                    break
            if corrupted is None:
                raise IterationHeadsError(
                    f"no other symbol written in as many tokens as {text[lo:hi]!r} in {text!r}: "
                    "the corruption would shift the positions"
                )
            prefix = text[start : spans[length + t][0]]  # e.g. the space a BPE token starts with
            answer = ids[answer_index]
            foils: list[str] = []
            seen = {answer}  # a foil is one token, not the answer's, and not another foil's
            for value in range(task.n_symbols):
                foil = prefix + encoding.symbol_text(value)
                written, _ = _encode(encoding, text[:start] + foil)
                if len(written) == answer_index + 1 and written[-1] not in seen:
                    seen.add(written[-1])
                    foils.append(foil)
            records.append(
                {
                    "text": text,
                    "step": {"char": start},
                    "corrupted": corrupted,
                    "segments": [
                        {"name": ITERATION_SEGMENTS[0], "span": input_span},
                        {"name": ITERATION_SEGMENTS[1], "span": cot_span},
                    ],
                    "label": f"step {t}",
                    "example": example,
                    "info": {"task": task.name, "length": length, "step": t},
                    "foils": foils,
                }
            )
    if not all(r["foils"] for r in records):  # foils in every record or in none
        for record in records:
            del record["foils"]
    return records
