import time

import pytest
import torch
from helpers import python_states, tiny_data

from iteration_heads import DataConfig, IterationHeadsError, TokenLayout, make_dataset
from iteration_heads.tasks import IGNORE, encode


@pytest.mark.parametrize("task", ["copy", "parity", "polynomial"])
@pytest.mark.parametrize("cot", [True, False])
def test_layout_and_targets_of_every_sequence(task, cot):
    data = tiny_data(task, cot=cot, n_train=16, n_test=16)
    layout = data.layout
    split = data.train
    width = TokenLayout.seq_len(6, cot=cot)
    assert split.tokens.shape == (16 * 6, width)
    for tokens, targets, length in zip(
        split.tokens.tolist(), split.targets.tolist(), split.lengths.tolist(), strict=True
    ):
        xs = tokens[1 : length + 1]
        states = python_states(task, xs)
        answer = states if cot else states[-1:]
        expected = [layout.task_token(task), *xs, layout.eoi, *answer, layout.eos]
        assert tokens[: len(expected)] == expected
        assert all(t == layout.eos for t in tokens[len(expected) :])  # EoS padding
        scored = [i for i, t in enumerate(targets) if t != IGNORE]
        # predictions at L+1 .. (2L+1 | L+2) are scored; their targets are the next tokens
        assert scored == list(range(length + 1, len(expected) - 1))
        assert [targets[i] for i in scored] == expected[length + 2 :]


def test_seeded_and_sized():
    a = make_dataset(DataConfig(max_len=8, seed=3))
    b = make_dataset(DataConfig(max_len=8, seed=3))
    c = make_dataset(DataConfig(max_len=8, seed=4))
    assert torch.equal(a.train.tokens, b.train.tokens) and torch.equal(a.test.tokens, b.test.tokens)
    assert not torch.equal(a.train.tokens, c.train.tokens)
    assert len(a.train) == len(a.test) == 8 * 1024
    assert torch.bincount(a.train.lengths).tolist() == [0] + [1024] * 8


def test_generation_is_fast():
    tick = time.perf_counter()
    data = make_dataset(DataConfig(max_len=32))
    elapsed = time.perf_counter() - tick
    assert len(data.train) == 32 * 1024
    # generous bound, only to catch an accidental per-sequence Python loop
    assert elapsed < 5, elapsed


@pytest.mark.parametrize("task", ["parity", "polynomial"])
def test_no_overlap_split_is_disjoint(task):
    data = make_dataset(DataConfig(task=task, max_len=12, n_train=300, n_test=300, overlap=False))
    for length in range(1, 13):
        train = data.train.for_length(length).tokens[:, 1 : length + 1]
        test = data.test.for_length(length).tokens[:, 1 : length + 1]
        train_rows = {tuple(r) for r in train.tolist()}
        assert not any(tuple(r) in train_rows for r in test.tolist())
        assert len(test) > 0 and len(train) > 0
    # large input spaces keep the requested sizes
    assert len(data.test.for_length(12)) == 300


def test_overlapping_split_overlaps_for_short_lengths():
    data = make_dataset(DataConfig(task="parity", max_len=3))
    train = {tuple(r) for r in data.train.for_length(3).tokens.tolist()}
    assert len(train) == 8  # all 2^3 inputs appear, so the test set overlaps


def test_batches_shuffled_and_sorted():
    data = tiny_data(n_train=32)
    gen = torch.Generator().manual_seed(0)
    shuffled = list(data.train.batches(16, generator=gen))
    assert sum(len(t) for t, _ in shuffled) == len(data.train)
    # every sequence exactly once, and lengths mixed within batches (not the sorted order)
    seen = torch.cat([t for t, _ in shuffled])
    assert sorted(map(tuple, seen[:, :5].tolist())) == sorted(
        map(tuple, data.train.tokens[:, :5].tolist())
    )
    eoi_columns = [set((t == data.layout.eoi).nonzero()[:, 1].tolist()) for t, _ in shuffled]
    assert max(len(c) for c in eoi_columns) > 1
    sorted_batches = list(data.train.batches(16, order="sorted"))
    assert [t.shape[1] for t, _ in sorted_batches] == [5, 5, 7, 7, 9, 9, 11, 11, 13, 13, 15, 15]
    # each sorted batch holds one length
    assert all(
        len(set((t[:, 1:] == data.layout.eoi).nonzero()[:, 1].tolist())) == 1
        for t, _ in sorted_batches
    )
    again = list(data.train.batches(16, generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(shuffled, again, strict=True))
    with pytest.raises(IterationHeadsError, match="batch order 'random'"):
        next(data.train.batches(16, order="random"))  # type: ignore[arg-type]


def test_encode_and_bad_configs():
    split = encode("polynomial", torch.tensor([[2, 3]]), layout=TokenLayout.default())
    assert split.tokens.tolist() == [[15, 2, 3, 11, 2, 7, 12]]
    with pytest.raises(IterationHeadsError, match="min_len=5, max_len=3"):
        DataConfig(min_len=5, max_len=3)
    with pytest.raises(IterationHeadsError, match="unknown task"):
        make_dataset(DataConfig(task="nope"))
    with pytest.raises(IterationHeadsError, match="has no token in this layout"):
        make_dataset(DataConfig(task="polynomial"), TokenLayout.for_tasks(["parity"]))


def test_score_padding_scores_eos_padding_and_is_never_trimmed():
    data = tiny_data(n_train=4, n_test=4, score_padding=True)
    layout = data.layout
    short = data.train.for_length(2)
    assert short.tokens.shape[1] == 15  # the whole width is kept
    targets = short.targets[0].tolist()
    # s_1, s_2, EoS as usual, then every EoS padding target up to the last prediction
    assert targets[3:6] == short.tokens[0, 4:7].tolist()
    assert targets[6:14] == [layout.eos] * 8 and targets[14] == IGNORE
    assert {t.shape[1] for t, _ in data.train.batches(4, order="sorted")} == {15}
