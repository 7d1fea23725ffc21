"""Prompts as JSON Lines files: one record per studied prompt (the schema of
:mod:`~iteration_heads.pathways.records`), read through any tokenizer and written back as token
records, so that a file read back gives the same :class:`Prompts`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from iteration_heads._io import checked_output, read_jsonl_lines, write_output_text
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.pathways.records import prompts_from_records


def read_prompts(
    path: str | os.PathLike[str], tokenizer: Any | None = None, *, prepend_bos: bool | None = None
) -> Prompts:
    """The prompts of a JSON Lines file, one record per line (blank lines skipped); errors
    name the file and the line. Text records need ``tokenizer`` (a fast HuggingFace one);
    ``prepend_bos`` as in :func:`~iteration_heads.pathways.records.prompts_from_records`.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "p.jsonl"
        >>> _ = path.write_text('{"tokens": [0, 4, 5], "step": {"token": 2}}\\n\\n'
        ...                     '{"tokens": [0, 4], "step": {"token": 2}, "answer": 7}\\n')
        >>> p = read_prompts(path)
        >>> p.clean.tolist(), p.position.tolist(), p.answer.tolist()
        ([[0, 4, 5], [0, 4, 0]], [1, 1], [5, 7])
        >>> _ = path.write_text('{"tokens": [0, 4], "step": {"token": 3}}\\n')
        >>> read_prompts(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: '...p.jsonl' line 1, field 'step': token 3 is past the end of 2 tokens, expected <= 2
    """
    if not isinstance(path, str | os.PathLike):
        raise IterationHeadsError(f"path {path!r}, expected a file name")
    lines = read_jsonl_lines(Path(path))
    if not lines:
        raise IterationHeadsError(f"no record in {str(path)!r}, expected one JSON object a line")
    return prompts_from_records(
        [record for _, record in lines],
        tokenizer,
        prepend_bos=prepend_bos,
        source=repr(str(path)),
        lines=[number for number, _ in lines],
    )


def records_from_prompts(prompts: Prompts) -> list[dict[str, Any]]:
    """Token records of ``prompts``, which
    :func:`~iteration_heads.pathways.records.prompts_from_records` turns back into the same
    prompts: rows are written whole (padding included); ``length`` marks where a prompt's own
    tokens end (its ``lengths``, or its step where it stops before its answer); the first record names every segment in order (empty spans for the
    segments it lacks); foils lose their -1 padding (restored up to the longest list).

    Example:
        >>> import torch
        >>> p = Prompts(torch.tensor([[1, 2, 3]]), None, torch.tensor([1]), torch.tensor([3]),
        ...             torch.tensor([[-1, 0, 0]]), ("facts",), ("copy",))
        >>> records_from_prompts(p)
        [{'tokens': [1, 2, 3], 'step': {'token': 2}, 'answer': 3, 'segments': [{'name': 'facts', 'tokens': [1, 3]}], 'label': 'copy'}]
    """
    if not isinstance(prompts, Prompts):
        raise IterationHeadsError(f"prompts of type {type(prompts).__name__}, expected Prompts")
    names = prompts.segment_names
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise IterationHeadsError(
            f"segment names {list(names)}, expected distinct non-empty strings to write them"
        )
    records = []
    width = prompts.clean.shape[1]
    for i in range(len(prompts)):
        tokens = prompts.clean[i].tolist()
        step, answer = int(prompts.position[i]) + 1, int(prompts.answer[i])
        record: dict[str, Any] = {"tokens": tokens, "step": {"token": step}, "answer": answer}
        if prompts.lengths is not None and int(prompts.lengths[i]) < width:
            record["length"] = int(prompts.lengths[i])  # padding after it
        elif step < width and tokens[step] != answer:  # the prompt stops before its answer
            record["length"] = step
        if prompts.corrupted is not None:
            record["corrupted"] = {"tokens": prompts.corrupted[i].tolist()}
        segments = _runs(prompts.segments[i].tolist(), names, every=i == 0)
        if segments:
            record["segments"] = segments
        record["label"] = prompts.labels[i]
        if prompts.foils is not None:
            record["foils"] = [f for f in prompts.foils[i].tolist() if f >= 0]
        if prompts.example is not None:
            record["example"] = int(prompts.example[i])
        if prompts.info is not None:
            if not isinstance(prompts.info[i], dict):
                raise IterationHeadsError(
                    f"info of prompt {i} is a {type(prompts.info[i]).__name__}, expected a dict"
                )
            record["info"] = prompts.info[i]
        records.append(record)
    return records


def _runs(row: list[int], names: tuple[str, ...], every: bool) -> list[dict[str, Any]]:
    """Token spans of each segment of a row, by segment; with ``every``, an empty span for a
    segment the row lacks (so that the names and their order come back)."""
    runs: list[dict[str, Any]] = []
    for index, name in enumerate(names):
        spans = []
        for p, value in enumerate(row):
            if value == index and (p == 0 or row[p - 1] != index):
                spans.append([p, p + 1])
            elif value == index:
                spans[-1][1] = p + 1
        if every and not spans:
            spans = [[0, 0]]
        runs.extend({"name": name, "tokens": span} for span in spans)
    return runs


def write_prompts(prompts: Prompts, path: str | os.PathLike[str]) -> Path:
    """Write ``prompts`` as a JSON Lines file of token records (:func:`records_from_prompts`),
    atomically (an existing file is replaced whole; nothing is written on error); reading it
    back (:func:`read_prompts`) gives the same prompts.

    Example:
        >>> import tempfile, torch
        >>> p = Prompts(torch.tensor([[1, 2, 3]]), None, torch.tensor([2]), torch.tensor([9]),
        ...             torch.full((1, 3), -1), (), ("all",), info=({"hop": 2},))
        >>> path = write_prompts(p, Path(tempfile.mkdtemp()) / "out.jsonl")
        >>> path.read_text()
        '{"tokens": [1, 2, 3], "step": {"token": 3}, "answer": 9, "label": "all", "info": {"hop": 2}}\\n'
        >>> read_prompts(path).info
        ({'hop': 2},)
    """
    records = records_from_prompts(prompts)
    out = checked_output(path)
    lines = []
    for i, record in enumerate(records):
        try:
            lines.append(json.dumps(record, allow_nan=False) + "\n")
        except (TypeError, ValueError) as err:
            raise IterationHeadsError(
                f"info of prompt {i} is not JSON ({' '.join(str(err).split())[:120]}), expected "
                "JSON values (strings, finite numbers, lists, objects)"
            ) from None
        if record.get("info") is not None and json.loads(lines[-1])["info"] != record["info"]:
            raise IterationHeadsError(
                f"info of prompt {i} does not survive JSON ({record['info']!r:.80}), expected "
                "string keys and JSON values"
            )
    write_output_text(out, "".join(lines))
    return out
