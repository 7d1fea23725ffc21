"""Bad-input cases: natural-language PrOntoQA prompts through a tokenizer, and prompts from JSON Lines (see base.py)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import fixture_tokenizer, tiny_bpe

from bad_cases.base import Case, api
from iteration_heads.pathways import (
    prompts_from_records,
    read_prompts,
    records_from_prompts,
    write_prompts,
)

TEXT = "Every wumpus is a cat. Rex is a wumpus. Rex is a"
END = {"char": len(TEXT)}
GOOD = {"text": TEXT, "step": END, "answer": " cat"}
TOKENS = {"tokens": [0, 5, 6], "step": {"token": 2}}

FILES: dict[str, list[object]] = {
    "text.jsonl": [GOOD],
    "typo.jsonl": [{**GOOD, "anwser": " cat"}],
    "no_step.jsonl": [{"text": TEXT, "answer": " cat"}],
    "long_answer.jsonl": [GOOD, {**GOOD, "answer": " impus"}],
    "inside.jsonl": [{**GOOD, "step": {"char": TEXT.index("wumpus") + 2}}],
    "corrupt_length.jsonl": [{**GOOD, "corrupted": {"span": [23, 26], "with": "Max"}}],
    "cut_segment.jsonl": [{**GOOD, "segments": [{"name": "facts", "span": [0, 3]}]}],
    "overlap.jsonl": [
        {
            **GOOD,
            "segments": [{"name": "facts", "span": [0, 22]}, {"name": "q", "tokens": [2, 4]}],
        }
    ],
    "bool_step.jsonl": [{**GOOD, "step": {"char": True}}],
    "negative_step.jsonl": [{**GOOD, "step": {"char": -3}}],
    "past_end.jsonl": [{**TOKENS, "step": {"token": 7}}],
    "vocab.jsonl": [{**TOKENS, "tokens": [0, 5, 99999]}],
    "foil_answer.jsonl": [{**GOOD, "foils": [" dog", " cat"]}],
    "some_foils.jsonl": [{**GOOD, "foils": [" dog"]}, GOOD],
    "some_corrupted.jsonl": [GOOD, {**GOOD, "corrupted": {"text": TEXT}}],
    "mismatch.jsonl": [{**GOOD, "step": {"char": 5}, "answer": " cat"}],
    "float_token.jsonl": [{**TOKENS, "tokens": [0, 5.0, 6]}],
    "both.jsonl": [{**GOOD, "tokens": [1, 2]}],
    "neither.jsonl": [{"step": END, "answer": " cat"}],
    "text_answer.jsonl": [{**TOKENS, "answer": " cat"}],
    "char_step.jsonl": [{**TOKENS, "step": {"char": 2}}],
    "int_label.jsonl": [{**GOOD, "label": 7}],
    "list_info.jsonl": [{**GOOD, "info": ["hop", 2]}],
    "negative_example.jsonl": [{**GOOD, "example": -1}],
    "long_length.jsonl": [{**TOKENS, "length": 9}],
    "not_object.jsonl": [["text", TEXT]],
    "empty_foils.jsonl": [{**GOOD, "foils": []}],
    "span_past.jsonl": [{**GOOD, "corrupted": {"span": [40, 400], "with": "x"}}],
    "unnamed.jsonl": [{**GOOD, "segments": [{"name": "", "span": [0, 22]}]}],
    "stops.jsonl": [{**TOKENS, "step": {"token": 3}}],
    "short_corrupted.jsonl": [{**TOKENS, "corrupted": {"tokens": [0, 5]}}],
    "step_zero.jsonl": [{**TOKENS, "step": {"token": 0}}],
}


def prepare(work: Path, namespace: dict) -> None:
    folder = work / "prompts"
    folder.mkdir()
    for name, records in FILES.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "bad_json.jsonl").write_text(json.dumps(GOOD) + '\n{"text": "x",\n' + "{}\n")
    (folder / "blank.jsonl").write_text("\n \n")
    namespace.update(
        bpe_tokenizer=tiny_bpe(),
        word_tokenizer=fixture_tokenizer(),
        read_prompts=read_prompts,
        write_prompts=write_prompts,
        prompts_from_records=prompts_from_records,
        records_from_prompts=records_from_prompts,
        TEXT_RECORD=GOOD,
    )


def read(description: str, name: str, tokenizer: str = "bpe_tokenizer") -> Case:
    return api("text prompts", description, f"read_prompts('prompts/{name}', {tokenizer})")


CASES: list[Case] = [
    read("misspelt field", "typo.jsonl"),
    read("no step", "no_step.jsonl"),
    read("text without a tokenizer", "text.jsonl", "None"),
    read("answer of two tokens or more", "long_answer.jsonl"),
    read("step inside a token", "inside.jsonl"),
    read("corruption of another token length", "corrupt_length.jsonl"),
    read("segment that cuts a token", "cut_segment.jsonl"),
    read("overlapping segments", "overlap.jsonl"),
    read("bool for a character", "bool_step.jsonl"),
    read("negative character", "negative_step.jsonl"),
    read("step past the end", "past_end.jsonl"),
    read("token outside the vocabulary", "vocab.jsonl"),
    read("answer among the foils", "foil_answer.jsonl"),
    read("foils in some records only", "some_foils.jsonl"),
    read("corruption in some records only", "some_corrupted.jsonl"),
    read("answer unlike the text at the step", "mismatch.jsonl"),
    read("float token id", "float_token.jsonl"),
    read("both text and tokens", "both.jsonl"),
    read("neither text nor tokens", "neither.jsonl"),
    read("text answer in a token record", "text_answer.jsonl"),
    read("character step in a token record", "char_step.jsonl"),
    read("number for a label", "int_label.jsonl"),
    read("list for info", "list_info.jsonl"),
    read("negative example", "negative_example.jsonl"),
    read("length past the tokens", "long_length.jsonl"),
    read("line that is not an object", "not_object.jsonl"),
    read("empty foils", "empty_foils.jsonl"),
    read("corrupted span past the text", "span_past.jsonl"),
    read("empty segment name", "unnamed.jsonl"),
    read("prompt that stops without an answer", "stops.jsonl"),
    read("corrupted tokens of another length", "short_corrupted.jsonl"),
    read("nothing before the step", "step_zero.jsonl"),
    read("invalid JSON line", "bad_json.jsonl"),
    read("file of blank lines", "blank.jsonl"),
    read("missing file", "none.jsonl"),
    read("text records through a tokenizer's name", "typo.jsonl", "'gpt2'"),
    api(
        "text prompts",
        "prepend_bos as a string",
        "prompts_from_records([TEXT_RECORD], bpe_tokenizer, prepend_bos='yes')",
    ),
    api(
        "text prompts",
        "answer of two words",
        "prompts_from_records([{'text': '1 2 =', 'step': {'char': 5}, 'answer': ' 3 4'}], "
        "word_tokenizer)",
    ),
    api(
        "text prompts", "one record, not a list", "prompts_from_records(TEXT_RECORD, bpe_tokenizer)"
    ),
    api("text prompts", "no record", "prompts_from_records([], bpe_tokenizer)"),
    api(
        "text prompts",
        "write something else than prompts",
        "write_prompts([TEXT_RECORD], 'p.jsonl')",
    ),
    api("text prompts", "write into a folder", "write_prompts(steps, 'prompts')"),
    api("text prompts", "records of a dictionary", "records_from_prompts({'clean': tokens})"),
]
