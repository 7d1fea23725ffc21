"""The paper's tasks written as text (``iteration_records``): the prompts land where the audit's
text encoding puts the chain of thought, corruptions keep every position, and the pathway
analyses on the GPT-2 trained elsewhere on text find its iteration heads by head patching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import FIXTURES, fixture_tokenizer, tiny_bpe

from iteration_heads import get_task
from iteration_heads.cli import main
from iteration_heads.detection.encoding import TextEncoding
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import ITERATION_SEGMENTS, iteration_records, prompts_from_records

TEXT_MODEL = FIXTURES / "gpt2_text_polynomial"
TEMPLATE = "<s> {inputs} {eoi} {states} </s>"


@pytest.fixture(scope="module")
def encoding() -> TextEncoding:
    return TextEncoding(fixture_tokenizer(), TEMPLATE)


def test_steps_are_where_the_text_encoding_puts_the_chain_of_thought(encoding) -> None:
    records = iteration_records(encoding, n=6, max_len=5, min_len=3, seed=1)
    prompts = prompts_from_records(records, encoding.tokenizer)
    assert prompts.segment_names == ITERATION_SEGMENTS
    task = get_task("polynomial")
    row = 0
    for example in range(6):
        mine = [r for r in records if r["example"] == example]
        length = len(mine)
        assert length == [3, 4, 5][example % 3]
        symbols = mine[0]["text"].split()[1 : length + 1]
        inputs = torch.tensor([[int(v) for v in symbols]])
        encoded = encoding.encode(task, inputs)
        states = task.states(inputs)[0]
        for t in range(length):
            assert int(prompts.position[row]) == int(encoded.queries[0, t])
            assert int(prompts.answer[row]) == int(encoded.tokens[0, encoded.queries[0, t] + 1])
            assert encoding.tokenizer.decode([int(prompts.answer[row])]) == str(int(states[t]))
            # the corruption changes x_t only, in place
            changed = (prompts.clean[row] != prompts.corrupted[row]).nonzero().flatten().tolist()
            assert changed == [int(encoded.inputs[0, t])]
            assert prompts.labels[row] == f"step {t + 1}" and int(prompts.example[row]) == example
            foils = prompts.foils[row][prompts.foils[row] >= 0]
            assert len(foils) == task.n_symbols - 1 and int(prompts.answer[row]) not in foils
            row += 1
    assert row == len(prompts)


def test_same_seed_same_records_and_a_bpe_with_spaces_inside_tokens() -> None:
    bpe = TextEncoding(tiny_bpe(), "{inputs} {eoi} {states}")
    one = iteration_records(bpe, n=3, max_len=4, seed=5)
    assert one == iteration_records(bpe, n=3, max_len=4, seed=5)
    assert one != iteration_records(bpe, n=3, max_len=4, seed=6)
    prompts = prompts_from_records(one, bpe.tokenizer, prepend_bos=False)
    assert (prompts.clean != prompts.corrupted).sum(1).tolist() == [1] * len(prompts)


def test_bad_arguments_are_one_line(encoding) -> None:
    with pytest.raises(IterationHeadsError, match="expected a TextEncoding"):
        iteration_records("<s> {inputs} {eoi} {states}")  # type: ignore[arg-type]
    with pytest.raises(IterationHeadsError, match="min_len=9"):
        iteration_records(encoding, max_len=4, min_len=9)
    with pytest.raises(IterationHeadsError, match="unknown task"):
        iteration_records(encoding, "no such task")


def test_pathways_finds_the_iteration_heads_of_the_gpt2_trained_on_text(
    encoding, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "polynomial.jsonl"
    records = iteration_records(encoding, n=24, max_len=8, min_len=4)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    status = main([
        "pathways", str(TEXT_MODEL), "--prompts", str(path), "--analyses", "patching", "--json",
    ])  # fmt: skip
    out, err = capsys.readouterr()
    assert status == 0, err
    patching = json.loads(out)["results"]["patching"]
    assert patching["aggregate"] == "ratio"
    scores = torch.tensor(patching["kl_ratio"]["all"])  # layer x head
    top = scores.flatten().argsort(descending=True)[:2]
    assert {divmod(int(i), scores.shape[1]) for i in top} == {(1, 0), (1, 1)}
