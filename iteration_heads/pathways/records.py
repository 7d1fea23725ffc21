"""Prompts from a researcher's own data: one record (a JSON object) per studied prompt, as text
through any fast HuggingFace tokenizer or as token ids (the schema: docs/guide/pathways.md,
"Your own model and your own prompts").

A record holds ``text`` or ``tokens``; ``step`` (``{"char": C}`` or ``{"token": J}``): where the
answer starts, the studied position being the token before; and optionally ``answer``,
``corrupted``, ``segments``, ``label``, ``foils``, ``example``, ``info`` and, in token records,
``length`` (the prompt's own tokens; those after it are padding kept as given). Every fault is a
one-line error naming the record and the field. Spans are ``[start, end)`` like Python slices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.pathways.record_checks import RecordFault, RecordVocabulary
from iteration_heads.tasks.task import check_int

RECORD_FIELDS = tuple(
    "text tokens step answer corrupted segments label foils example info length".split()  # noqa: SIM905
)
"""The fields a record may hold."""

_SEGMENT_KEYS = ({"name", "span"}, {"name", "tokens"})


@dataclass
class _Row:
    tokens: list[int]
    corrupted: list[int] | None
    position: int
    answer: int
    segments: list[tuple[str, int, int]]
    label: str
    foils: list[int] | None
    example: int | None
    info: dict[str, Any] | None
    length: int = 0  # the prompt's own tokens (0: all of them)


def prompts_from_records(
    records: Sequence[Mapping[str, Any]],
    tokenizer: Any | None = None,
    *,
    prepend_bos: bool | None = None,
    source: str = "records",
    lines: Sequence[int] | None = None,
) -> Prompts:
    """:class:`Prompts` from records (one dict per studied prompt, the schema above).

    Text goes through ``tokenizer`` (a fast one: character offsets are needed) without special
    tokens; ``prepend_bos`` (default: when the tokenizer has a BOS token and the text does not
    already start with it) puts its BOS first.
    Token records are taken as given. Prompts of different lengths are right-padded (the
    tokenizer's pad token, else its EoS, else 0; segment -1). Errors name ``source`` and the
    record (its index, or its line when ``lines`` are given).

    Example:
        >>> records = [{"tokens": [0, 5, 6, 7], "step": {"token": 3}, "label": "copy",
        ...             "segments": [{"name": "facts", "tokens": [1, 3]}]}]
        >>> p = prompts_from_records(records)
        >>> p.position.tolist(), p.answer.tolist(), p.segments.tolist(), p.segment_names
        ([2], [7], [[-1, 0, 0, -1]], ('facts',))
        >>> prompts_from_records([{"tokens": [1, 2], "step": {"token": 1}, "anwser": 2}])
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: records record 0, field 'anwser': unknown field, expected one of text, tokens, step, answer, corrupted, segments, label, foils, example, info, length
    """
    if isinstance(records, str | bytes | Mapping) or not isinstance(records, Sequence):
        raise IterationHeadsError(
            f"records of type {type(records).__name__}, expected a list of dicts"
        )
    if not records:
        raise IterationHeadsError(f"no record in {source}, expected at least one")
    if lines is not None:
        if len(lines) != len(records):
            raise IterationHeadsError(f"{len(lines)} lines for {len(records)} records")
        for i, line in enumerate(lines):
            check_int(f"lines[{i}]", line, minimum=1)
    vocabulary = RecordVocabulary(tokenizer, prepend_bos)
    faults = [
        RecordFault(f"{source} record {i}" if lines is None else f"{source} line {lines[i]}")
        for i in range(len(records))
    ]
    rows = [_row(r, f, vocabulary) for r, f in zip(records, faults, strict=True)]
    return _assemble(rows, faults, vocabulary.pad)


def _row(record: Any, fault: RecordFault, vocabulary: RecordVocabulary) -> _Row:
    if not isinstance(record, Mapping):
        raise IterationHeadsError(f"{fault.name}: a {type(record).__name__}, expected an object")
    for key in record:
        if key not in RECORD_FIELDS:
            raise fault(str(key), "unknown field", f"one of {', '.join(RECORD_FIELDS)}")
    if ("text" in record) == ("tokens" in record):
        both = "both 'text' and" if "text" in record else "neither 'text' nor"
        raise fault("text", f"{both} 'tokens'", "exactly one of them")
    if "step" not in record:
        raise fault("step", "missing", "{'char': C} or {'token': J}")
    step = record["step"]
    if not isinstance(step, Mapping) or len(step) != 1 or next(iter(step)) not in ("char", "token"):
        raise fault("step", f"{step!r}", "{'char': C} or {'token': J}")
    if "text" in record:
        return _TextRecord(record, fault, vocabulary).row()
    return _token_row(record, fault, vocabulary)


class _TextRecord:
    def __init__(self, record: Mapping[str, Any], fault: RecordFault, vocabulary: RecordVocabulary):
        self.record, self.fault, self.vocabulary = record, fault, vocabulary
        self.text = record["text"]
        if not isinstance(self.text, str):
            raise fault("text", f"a {type(self.text).__name__}", "a string")
        if vocabulary.tokenizer is None:
            raise fault("text", "a text record without a tokenizer", "tokenizer=... or 'tokens'")
        ids, self.offsets = vocabulary.encode(self.text)
        own = vocabulary.auto_bos and bool(ids) and ids[:1] == vocabulary.bos
        self.bos = [] if own else vocabulary.bos  # a text may start with the BOS itself
        self.tokens = self.bos + ids

    def boundary(self, field: str, char: int, what: str) -> int:
        """The index (BOS included) of the token that starts at character ``char``."""
        for a, b in self.offsets:
            if a < char < b:
                raise self.fault(
                    field,
                    f"{what} {char} is inside the token {self.text[a:b]!r} (characters {a}-{b})",
                    "a token boundary",
                )
        return len(self.bos) + sum(a < char for a, _ in self.offsets)

    def row(self) -> _Row:
        record, fault, text = self.record, self.fault, self.text
        ((kind, value),) = record["step"].items()
        if kind == "char":
            char = fault.integer("step", value, "character")
            if char > len(text):
                raise fault("step", f"character {char} is past the text", f"<= {len(text)}")
            step = self.boundary("step", char, "character")
        else:
            step = _step_token(fault, value, len(self.tokens))
            shift = step - len(self.bos)
            char = self.offsets[shift][0] if 0 <= shift < len(self.offsets) else len(text)
        token = self.piece(text[:char])
        answer = _answer(record, fault, self.tokens, step, len(self.tokens), token)
        segments = [self.segment(s) for s in _list(record, fault, "segments", "segments")]
        return _finish(record, fault, self.tokens, self.corrupted(), step, answer, segments, token)

    def piece(self, before: str) -> Any:
        def token(field: str, value: Any, what: str) -> int:
            if isinstance(value, str):
                return self.vocabulary.one_token(self.fault, field, before, value)
            return self.vocabulary.token_id(self.fault, field, value, what)

        return token

    def corrupted(self) -> list[int] | None:
        corrupted = self.record.get("corrupted")
        if corrupted is None:
            return None
        text, fault = self.text, self.fault
        if isinstance(corrupted, Mapping) and set(corrupted) == {"text"}:
            new = corrupted["text"]
            if not isinstance(new, str):
                raise fault("corrupted", f"text {new!r}", "a string")
        elif isinstance(corrupted, Mapping) and set(corrupted) == {"span", "with"}:
            lo, hi = fault.span("corrupted", corrupted["span"], len(text), "span")
            if not isinstance(corrupted["with"], str):
                raise fault("corrupted", f"'with' {corrupted['with']!r}", "a string")
            new = text[:lo] + corrupted["with"] + text[hi:]
        else:
            raise fault(
                "corrupted", f"{corrupted!r}", "{'text': ...} or {'span': [S, E], 'with': ...}"
            )
        ids, _ = self.vocabulary.encode(new)
        if len(ids) + len(self.bos) != len(self.tokens):
            n = len(self.tokens) - len(self.bos)
            raise fault("corrupted", f"the corrupted text {new!r} is {len(ids)} tokens", f"{n}")
        return self.bos + ids

    def segment(self, segment: Any) -> tuple[str, int, int]:
        name = _segment_name(self.fault, segment)
        if set(segment) != {"name", "span"}:
            return _token_segment(self.fault, segment, name, len(self.tokens))
        lo, hi = self.fault.span("segments", segment["span"], len(self.text), f"{name!r} span")
        what = f"segment {name!r} [{lo}, {hi}]: character"
        return name, self.boundary("segments", lo, what), self.boundary("segments", hi, what)


def _step_token(fault: RecordFault, value: Any, length: int) -> int:
    step = fault.integer("step", value, "token")
    if step > length:
        raise fault("step", f"token {step} is past the end of {length} tokens", f"<= {length}")
    return step


def _answer(
    record: Mapping[str, Any],
    fault: RecordFault,
    tokens: list[int],
    step: int,
    end: int,
    token: Any,
) -> int:
    if "answer" not in record:
        if step >= end:
            raise fault("answer", "missing while the prompt ends at the step", "the answer")
        return tokens[step]
    answer: int = token("answer", record["answer"], "token")
    if step < end and tokens[step] != answer:
        raise fault(
            "answer",
            f"token {answer} while the prompt holds token {tokens[step]} at the step",
            "the same token (or no answer)",
        )
    return answer


def _list(record: Mapping[str, Any], fault: RecordFault, field: str, what: str) -> list[Any]:
    value = record.get(field, [])
    if not isinstance(value, list):
        raise fault(field, f"a {type(value).__name__}", f"a list of {what}")
    return value


def _finish(
    record: Mapping[str, Any],
    fault: RecordFault,
    tokens: list[int],
    corrupted: list[int] | None,
    step: int,
    answer: int,
    segments: list[tuple[str, int, int]],
    token: Any,
) -> _Row:
    if step == 0:
        raise fault("step", "no token before the step", "a step after the first token")
    foils = None
    if "foils" in record:
        foils = [token("foils", v, "token") for v in _list(record, fault, "foils", "tokens")]
        if not foils:
            raise fault("foils", "an empty list", "at least one foil token")
        if answer in foils:
            raise fault("foils", f"the answer {answer} is a foil", "tokens other than the answer")
    label = record.get("label", "all")
    if not isinstance(label, str):
        raise fault("label", f"{label!r}", "a string")
    example = record.get("example")
    if example is not None:
        example = fault.integer("example", example, "example")
    info = record.get("info")
    if info is not None and not isinstance(info, dict):
        raise fault("info", f"a {type(info).__name__}", "a JSON object")
    return _Row(tokens, corrupted, step - 1, answer, segments, label, foils, example, info)


def _segment_name(fault: RecordFault, segment: Any) -> str:
    if not isinstance(segment, Mapping) or set(segment) not in _SEGMENT_KEYS:
        raise fault("segments", f"{segment!r}", "{'name': ..., 'span': [S, E]} or 'tokens'")
    name = segment["name"]
    if not isinstance(name, str) or not name:
        raise fault("segments", f"segment name {name!r}", "a non-empty string")
    return name


def _token_segment(
    fault: RecordFault, segment: Any, name: str, length: int
) -> tuple[str, int, int]:
    if set(segment) != {"name", "tokens"}:
        raise fault("segments", f"segment {name!r} by characters", "token spans ('tokens')")
    return name, *fault.span("segments", segment["tokens"], length, f"{name!r} tokens")


def _token_row(record: Mapping[str, Any], fault: RecordFault, vocabulary: RecordVocabulary) -> _Row:
    values = record["tokens"]
    if not isinstance(values, list) or not values:
        raise fault("tokens", f"{values!r}"[:80], "a non-empty list of token ids")
    tokens = [vocabulary.token_id(fault, "tokens", v, "token") for v in values]
    end = len(tokens)
    if "length" in record:
        end = fault.integer("length", record["length"], "length", minimum=1)
        if end > len(tokens):
            raise fault("length", f"{end} past the {len(tokens)} tokens", f"<= {len(tokens)}")
    ((kind, value),) = record["step"].items()
    if kind != "token":
        raise fault("step", "a character in a token record", "{'token': J}")
    step = _step_token(fault, value, end)

    def token(field: str, value: Any, what: str) -> int:
        if isinstance(value, str):
            raise fault(field, f"text {value!r} in a token record", "a token id")
        return vocabulary.token_id(fault, field, value, what)

    answer = _answer(record, fault, tokens, step, end, token)
    corrupted = record.get("corrupted")
    if corrupted is not None:
        if not isinstance(corrupted, Mapping) or set(corrupted) != {"tokens"}:
            raise fault("corrupted", f"{corrupted!r}"[:80], "{'tokens': [...]} in a token record")
        if not isinstance(corrupted["tokens"], list):
            raise fault("corrupted", f"tokens {corrupted['tokens']!r}"[:80], "a list of token ids")
        corrupted = [
            vocabulary.token_id(fault, "corrupted", v, "token") for v in corrupted["tokens"]
        ]
        if len(corrupted) != len(tokens):
            raise fault("corrupted", f"{len(corrupted)} tokens", f"{len(tokens)} like 'tokens'")
    segments = [
        _token_segment(fault, s, _segment_name(fault, s), len(tokens))
        for s in _list(record, fault, "segments", "segments")
    ]
    row = _finish(record, fault, tokens, corrupted, step, answer, segments, token)
    row.length = end
    return row


def _all_or_none(rows: list[_Row], faults: list[RecordFault], field: str) -> bool:
    given = [getattr(r, field) is not None for r in rows]
    if all(given) or not any(given):
        return given[0]
    odd = given.index(not given[0])
    what = "given" if given[odd] else "missing"
    raise faults[odd](
        field,
        f"{what} while {faults[0].name} has {'one' if given[0] else 'none'}",
        "it in every record or in none",
    )


def _assemble(rows: list[_Row], faults: list[RecordFault], pad: int) -> Prompts:
    names: list[str] = []
    width = max(len(r.tokens) for r in rows)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, row in enumerate(rows):
        for name, lo, hi in row.segments:
            if name not in names:
                names.append(name)
            taken = segments[i, lo:hi]
            if bool((taken >= 0).any()):
                other = names[int(taken[taken >= 0][0])]
                what = f"segment {name!r} [{lo}, {hi}] overlaps {other!r}"
                raise faults[i]("segments", what, "disjoint spans")
            segments[i, lo:hi] = names.index(name)

    def padded(lists: list[list[int]], value: int, size: int) -> torch.Tensor:
        return torch.tensor([x + [value] * (size - len(x)) for x in lists], dtype=torch.long)

    corrupted = foils = example = None
    if _all_or_none(rows, faults, "corrupted"):
        corrupted = padded([r.corrupted or [] for r in rows], pad, width)
    if _all_or_none(rows, faults, "foils"):
        foils = padded([r.foils or [] for r in rows], -1, max(len(r.foils or []) for r in rows))
    if _all_or_none(rows, faults, "example"):
        example = torch.tensor([r.example for r in rows], dtype=torch.long)
    info = None
    if any(r.info is not None for r in rows):
        info = tuple(dict(r.info or {}) for r in rows)
    clean, labels = padded([r.tokens for r in rows], pad, width), tuple(r.label for r in rows)
    own = [r.length or len(r.tokens) for r in rows]
    lengths = torch.tensor(own) if min(own) < width else None
    position = torch.tensor([r.position for r in rows], dtype=torch.long)
    answer = torch.tensor([r.answer for r in rows], dtype=torch.long)
    return Prompts(
        clean,
        corrupted,
        position,
        answer,
        segments,
        tuple(names),
        labels,
        foils,
        example,
        info,
        lengths,
    )
