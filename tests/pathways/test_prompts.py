"""Prompts for the pathway analyses: answers where the sequence has them, corruptions that
change exactly the answer's source, segments that cover the right tokens, and clear errors."""

from __future__ import annotations

import pytest
import torch

from iteration_heads import DataConfig, TokenLayout, make_dataset
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import (
    ITERATION_SEGMENTS,
    ONTOLOGY_SEGMENTS,
    Prompts,
    iteration_prompts,
    ontology_prompts,
)
from iteration_heads.tasks.ontology import OntologyConfig, make_ontology_problems


@pytest.fixture(scope="module")
def problems():
    return make_ontology_problems(OntologyConfig(hops=(1, 2, 3), distractors=2), 24, seed=3)


def test_ontology_prompts_answer_is_the_next_token_and_corruption_hits_its_source(problems):
    prompts = ontology_prompts(problems)
    rows = torch.arange(len(prompts))
    assert torch.equal(prompts.clean[rows, prompts.position + 1], prompts.answer)
    changed = prompts.corrupted != prompts.clean
    assert changed.sum(1).eq(1).all()  # one token swapped, same length
    vocab = problems.vocab
    for i in range(len(prompts)):
        at = int(changed[i].nonzero())
        assert at <= int(prompts.position[i])  # the source precedes the prediction
        before = vocab.names[int(prompts.clean[i, at])]
        after = vocab.names[int(prompts.corrupted[i, at])]
        assert before == vocab.names[int(prompts.answer[i])]  # the answer's own occurrence
        assert vocab.kind(before) == vocab.kind(after) and before != after
    assert set(prompts.labels) == {"decision", "copy", "induction"}


def test_ontology_segments_cover_facts_question_and_chain_of_thought(problems):
    prompts = ontology_prompts(problems, ("copy",))
    vocab = problems.vocab
    names = [[vocab.names[t] for t in row] for row in prompts.clean.tolist()]
    for row, segs in zip(names, prompts.segments.tolist(), strict=True):
        q, arrow = row.index("Q"), row.index("=>")
        assert all(s == ONTOLOGY_SEGMENTS.index("facts") for s in segs[1:q])
        assert all(s == ONTOLOGY_SEGMENTS.index("question") for s in segs[q:arrow])
        assert segs[0] == segs[arrow] == -1
        cot = [
            s
            for s, name in zip(segs[arrow + 1 :], row[arrow + 1 :], strict=True)
            if name != "<pad>"
        ]
        assert cot and all(s == ONTOLOGY_SEGMENTS.index("chain of thought") for s in cot)
    # copies read the facts: the corrupted token sits in the facts segment
    at = (prompts.corrupted != prompts.clean).int().argmax(1)
    assert prompts.segments[torch.arange(len(prompts)), at].eq(0).all()


def test_iteration_prompts_corrupt_the_input_the_step_reads():
    data = make_dataset(DataConfig(task="polynomial", max_len=5, n_train=4, n_test=16))
    layout = TokenLayout.default()
    prompts = iteration_prompts(data.test, layout, seed=1)
    assert len(prompts) == int(data.test.lengths.sum())
    rows = torch.arange(len(prompts))
    assert torch.equal(prompts.clean[rows, prompts.position + 1], prompts.answer)
    changed = (prompts.corrupted != prompts.clean).nonzero()
    steps = torch.tensor([int(label.split()[1]) for label in prompts.labels])
    assert torch.equal(changed[:, 0], rows) and torch.equal(changed[:, 1], steps)
    assert (prompts.corrupted[rows, steps] < layout.n_symbols).all()
    assert prompts.segment_names == ITERATION_SEGMENTS
    assert torch.equal(prompts.segments[rows, steps], torch.zeros_like(steps))
    # s_1 is predicted at EoI (no segment), every later step inside the chain of thought
    expected = torch.where(steps == 1, -1, ITERATION_SEGMENTS.index("chain of thought"))
    assert torch.equal(prompts.segments[rows, prompts.position], expected)
    assert iteration_prompts(data.test, layout, seed=1).corrupted.equal(prompts.corrupted)


def test_select_and_group_keep_rows_aligned(problems):
    prompts = ontology_prompts(problems)
    copies = prompts.group("copy")
    assert set(copies.labels) == {"copy"} and len(copies) == prompts.labels.count("copy")
    mask = torch.tensor([label == "copy" for label in prompts.labels])
    assert torch.equal(prompts.select(mask).corrupted, copies.corrupted)


def test_bad_prompts_get_one_line_errors(problems):
    good = ontology_prompts(problems, ("copy",))
    with pytest.raises(IterationHeadsError, match="no prompt labelled 'answer'"):
        good.group("answer")
    with pytest.raises(IterationHeadsError, match="expected names from"):
        ontology_prompts(problems, ("jump",))
    with pytest.raises(IterationHeadsError, match="is outside"):
        Prompts(
            good.clean,
            None,
            good.position + 100,
            good.answer,
            good.segments,
            good.segment_names,
            good.labels,
        )
    with pytest.raises(IterationHeadsError, match="corrupted tokens of shape"):
        Prompts(
            good.clean,
            good.clean[:, :3],
            good.position,
            good.answer,
            good.segments,
            good.segment_names,
            good.labels,
        )
    with pytest.raises(IterationHeadsError, match="needs corrupted prompts"):
        Prompts(
            good.clean,
            None,
            good.position,
            good.answer,
            good.segments,
            good.segment_names,
            good.labels,
        ).need_corrupted("patching")
    data = make_dataset(DataConfig(task="copy", max_len=3, n_train=2, n_test=2, cot=False))
    with pytest.raises(IterationHeadsError, match="chain-of-thought split"):
        iteration_prompts(data.test, TokenLayout.default())


def test_lengths_mark_the_padding_of_every_builder(problems, tmp_path) -> None:
    from iteration_heads.pathways import prompts_from_records, read_prompts, write_prompts

    prompts = ontology_prompts(problems)  # problems of 1..3 hops: padded with <pad> (0)
    own = prompts.own_positions()
    assert bool((prompts.clean[~own] == 0).all()) and bool((prompts.clean[own] != 0).all())
    assert int(prompts.lengths.min()) < prompts.clean.shape[1]  # some padding exists
    data = make_dataset(DataConfig(task="copy", max_len=4, n_train=2, n_test=8))
    steps = iteration_prompts(data.test, data.layout)
    lengths = data.test.lengths[steps.example]
    assert steps.lengths.tolist() == (2 * lengths + 3).tolist()  # task, x, EoI, s, EoS
    # records: the reader's padding is not the prompts' own; lengths survive a round trip
    records = [{"tokens": [5, 6, 7, 8], "step": {"token": 3}},
               {"tokens": [5, 6], "step": {"token": 1}}]  # fmt: skip
    read = prompts_from_records(records)
    assert read.lengths.tolist() == [4, 2] and read.clean[1].tolist() == [5, 6, 0, 0]
    again = read_prompts(write_prompts(read, tmp_path / "p.jsonl"))
    assert again.lengths.tolist() == [4, 2] and torch.equal(again.clean, read.clean)
    assert prompts_from_records(records[:1]).lengths is None  # nothing padded
    assert read.select([1]).lengths.tolist() == [2]


def test_bad_lengths_and_empty_selections_are_one_line() -> None:
    base = dict(clean=torch.zeros(2, 3, dtype=torch.long), corrupted=None,
                position=torch.tensor([1, 1]), answer=torch.tensor([0, 0]),
                segments=torch.zeros(2, 3, dtype=torch.long), segment_names=("s",),
                labels=("a", "b"))  # fmt: skip
    with pytest.raises(IterationHeadsError, match="length 1 of prompt 0, expected 2..3"):
        Prompts(**base, lengths=torch.tensor([1, 3]))
    with pytest.raises(IterationHeadsError, match="length 4 of prompt 1"):
        Prompts(**base, lengths=torch.tensor([3, 4]))
    with pytest.raises(IterationHeadsError, match=r"lengths of shape \(3,\)"):
        Prompts(**base, lengths=torch.tensor([3, 3, 3]))
    with pytest.raises(IterationHeadsError, match="no prompts selected"):
        Prompts(**base).select([])
