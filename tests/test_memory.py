"""Rows per forward pass sized to a memory budget (iteration_heads.memory): the budget holds,
the working set on a CPU holds, and the analyses give the same numbers whatever the batch."""

from __future__ import annotations

import pytest
import torch

from iteration_heads import DataConfig, IterationHeadsError, make_dataset, zoo
from iteration_heads.memory import (
    CPU_WORKING_SET,
    MAX_ROWS,
    MEMORY_SHARE,
    analysis_rows,
    batch_rows,
    element_bytes,
    forward_bytes,
    largest_activation_bytes,
    rows_per_pass,
)
from iteration_heads.pathways import head_patching, iteration_prompts, noising_check, pruning_curve


@pytest.fixture(scope="module")
def model():
    return zoo.load("polynomial_paper")


@pytest.fixture(scope="module")
def prompts():
    data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=6, seed=3))
    return iteration_prompts(data.test, data.layout)


@pytest.mark.parametrize("free", [10**5, 10**6, 10**7, 10**9])
def test_a_pass_holds_at_most_its_share_of_free_memory(model, monkeypatch, free):
    monkeypatch.setattr("iteration_heads.memory.available_memory", lambda: free)
    for width in (4, 12, 40):
        for options in ({}, {"cached": 4.0, "patterns": 2}, {"grad": True, "logits": "all"}):
            rows = rows_per_pass(model, width, **options)
            assert 1 <= rows <= MAX_ROWS
            held = forward_bytes(model, rows, width, **{"logits": "one", **options})
            assert rows == 1 or held <= MEMORY_SHARE * free
            more = forward_bytes(model, rows + 1, width, **{"logits": "one", **options})
            limited_by_cache = (rows + 1) * largest_activation_bytes(
                model, width, logits=options.get("logits", "one")
            ) > CPU_WORKING_SET
            assert rows == MAX_ROWS or more > MEMORY_SHARE * free or limited_by_cache


def test_on_a_cpu_the_largest_activation_stays_in_the_working_set(model):
    for width in (8, 64, 256):
        rows = rows_per_pass(model, width)
        assert rows == 1 or rows * largest_activation_bytes(model, width) <= CPU_WORKING_SET
    assert rows_per_pass(model, 256) < rows_per_pass(model, 8)  # wider rows, fewer of them


def test_a_pass_at_half_precision_counts_two_bytes_a_number(model):
    half = zoo.load("polynomial_paper").to(torch.bfloat16)
    assert (element_bytes(model), element_bytes(half)) == (4, 2)
    assert forward_bytes(half, 8, 12, logits="one") < forward_bytes(model, 8, 12, logits="one")


def test_the_analyses_give_the_same_numbers_whatever_the_batch(model, prompts):
    sized = head_patching(model, prompts, method="exact")
    for batch in (5, 4096):
        other = head_patching(model, prompts, method="exact", batch_size=batch)
        for label, values in sized.kl_ratio.items():
            assert torch.allclose(values, other.kl_ratio[label], atol=1e-6)
    check = noising_check(model, prompts, [(1, 0)], n_random=2)
    again = noising_check(model, prompts, [(1, 0)], n_random=2, batch_size=3)
    assert check.to_dict() == again.to_dict()
    ranking = [(1, 0), (0, 0)]
    curve = pruning_curve(model, prompts, ranking, prompts.clean, n_random=1)
    small = pruning_curve(model, prompts, ranking, prompts.clean, n_random=1, batch_size=5)
    assert torch.equal(curve.agreement, small.agreement)


def test_analysis_rows_is_the_default_of_the_sweeps(model):
    assert analysis_rows(model, 12) == rows_per_pass(model, 12, cached=2)
    assert analysis_rows(model, 12, cap=3) == 3


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "8"])
def test_a_bad_batch_size_or_width_is_refused_in_one_line(model, bad):
    with pytest.raises(IterationHeadsError, match="expected an integer >= 1") as raised:
        batch_rows(bad, 64)
    assert "\n" not in str(raised.value)
    with pytest.raises(IterationHeadsError, match="width="):
        rows_per_pass(model, bad)
    with pytest.raises(IterationHeadsError, match="cap="):
        rows_per_pass(model, 4, cap=bad)
