"""Solved prompts: greedy step accuracy under teacher forcing, exact match of whole sequences,
and the prompts (or sequences) kept, with fractions that match a hand count."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import tiny_model

from iteration_heads import DataConfig, make_dataset, zoo
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import iteration_prompts
from iteration_heads.pathways.solved import sequence_accuracy, solved_prompts, step_accuracy


@pytest.fixture(scope="module")
def setting():
    data = make_dataset(DataConfig(max_len=4, n_train=2, n_test=6))
    prompts = iteration_prompts(data.test, data.layout)
    rows = [r for r, n in enumerate(data.test.lengths.tolist()) for _ in range(n)]
    prompts = dataclasses.replace(prompts, example=torch.tensor(rows))
    # plant wrong answers: every third prompt's answer moved to another symbol
    wrong = torch.arange(len(prompts)) % 3 == 0
    answer = torch.where(wrong, (prompts.answer + 1) % data.layout.n_symbols, prompts.answer)
    planted = dataclasses.replace(prompts, answer=answer, foils=None)
    return zoo.load("polynomial_paper"), planted, wrong


def test_step_accuracy_is_the_greedy_answer_by_hand(setting):
    model, prompts, wrong = setting
    with torch.no_grad():
        logits = model(prompts.clean)
    hand = logits[torch.arange(len(prompts)), prompts.position].argmax(-1) == prompts.answer
    found = step_accuracy(model, prompts, batch_size=5)  # batches of another size: same answer
    assert torch.equal(found, hand) and torch.equal(found, ~wrong)  # the model solves the rest


def test_fractions_kept_by_step_equal_a_hand_count(setting):
    model, prompts, wrong = setting
    kept, fractions = solved_prompts(model, prompts)
    assert len(kept) == int((~wrong).sum())
    assert fractions["all"] == pytest.approx(float((~wrong).float().mean()))
    for label in set(prompts.labels):
        rows = torch.tensor([x == label for x in prompts.labels])
        assert fractions[label] == pytest.approx(float((~wrong[rows]).float().mean()))
    assert torch.equal(kept.answer, prompts.answer[~wrong])


def test_sequences_are_kept_whole_only_when_every_step_is_right(setting):
    model, prompts, wrong = setting
    found = sequence_accuracy(model, prompts)
    broken = set(prompts.example[wrong].tolist())
    assert found.sequences == {s: s not in broken for s in set(prompts.example.tolist())}
    assert found.exact_match == pytest.approx(1 - len(broken) / len(found.sequences))
    assert "exact match" in found.format() and found.to_dict()["n_sequences"] == len(
        set(prompts.example.tolist())
    )
    if len(broken) < len(found.sequences):
        kept, fractions = solved_prompts(model, prompts, by="sequence")
        assert set(kept.example.tolist()).isdisjoint(broken)
        assert fractions["all"] == pytest.approx(len(kept) / len(prompts))


def test_a_model_that_fails_keeps_few_and_none_is_one_line(setting):
    _, prompts, _ = setting
    model = tiny_model()  # untrained
    right = step_accuracy(model, prompts)
    assert float(right.float().mean()) < 0.5
    everything_wrong = dataclasses.replace(prompts, answer=(prompts.answer + 100) % 16)
    everything_wrong = everything_wrong.select(~step_accuracy(model, everything_wrong))
    with pytest.raises(IterationHeadsError, match=r"solves none of the \d+ prompts"):
        solved_prompts(model, everything_wrong)


def test_bad_options_are_one_line(setting):
    model, prompts, _ = setting
    with pytest.raises(IterationHeadsError, match="by='word'"):
        solved_prompts(model, prompts, by="word")  # type: ignore[arg-type]
    with pytest.raises(IterationHeadsError, match="needs prompts with `example`"):
        solved_prompts(model, dataclasses.replace(prompts, example=None), by="sequence")
    with pytest.raises(IterationHeadsError, match="batch_size"):
        step_accuracy(model, prompts, batch_size=0)
    with pytest.raises(IterationHeadsError, match="must be Prompts"):
        step_accuracy(model, prompts.clean)  # type: ignore[arg-type]
