"""DataConfig(sampler="authors"): the authors' data files, row for row.

The pinned rows and sums were read from the files that the authors' own generator writes
(``data_processing(problem=..., n_len=8)`` of facebookresearch/pal, src/cot, numpy's
``default_rng(0)``, 2048 inputs per length split in half), run once outside this repository."""

import pytest
import torch

from iteration_heads import DataConfig, IterationHeadsError, make_dataset
from iteration_heads.tasks import Task, TokenLayout
from iteration_heads.tasks.data import authors_inputs

AUTHORS = {"sampler": "authors", "n_train": 1024, "n_test": 1024}


def states(split, length):
    """Input and state tokens of each sequence of ``length`` (the authors' files hold
    ``<task> x_1..x_L EoI s_1..s_L``)."""
    tokens = split.for_length(length).tokens
    return tokens[:, 1 : length + 1], tokens[:, length + 2 : 2 * length + 2]


def test_polynomial_data_is_the_authors_files():
    data = make_dataset(DataConfig(task="polynomial", max_len=8, **AUTHORS))
    train_sums = [5591, 11059, 16863, 22599, 28184, 33920, 38985, 44843]
    test_sums = [5882, 11303, 16862, 22543, 28394, 33669, 39688, 44975]
    train_states = [5591, 11177, 16079, 21302, 26168, 31730, 36934, 41337]
    for length in range(1, 9):
        for split, sums, state_sums in ((data.train, train_sums, train_states),
                                        (data.test, test_sums, None)):  # fmt: skip
            x, s = states(split, length)
            assert x.shape == (1024, length)  # their counts: 1024 + 1024 per length
            assert int(x.sum()) == sums[length - 1]
            if state_sums:
                assert int(s.sum()) == state_sums[length - 1]
    x, s = states(data.train, 3)
    assert x[:2].tolist() == [[5, 6, 1], [1, 10, 1]] and s[:2].tolist() == [[5, 9, 10], [1, 0, 1]]
    x, s = states(data.test, 8)
    assert x[0].tolist() == [1, 2, 4, 9, 6, 9, 7, 7] and s[0].tolist() == [1, 3, 2, 8, 5, 2, 4, 7]


def test_parity_data_is_the_authors_files_and_min_len_keeps_each_length():
    data = make_dataset(DataConfig(task="parity", max_len=5, **AUTHORS))
    x, s = states(data.train, 5)
    assert x[:2].tolist() == [[1, 1, 0, 0, 1], [1, 1, 1, 0, 0]]
    assert s[:2].tolist() == [[1, 0, 0, 0, 1], [1, 0, 1, 1, 1]]
    assert states(data.test, 2)[0][:2].tolist() == [[1, 0], [1, 1]]
    later = make_dataset(DataConfig(task="parity", max_len=5, min_len=4, **AUTHORS))
    assert sorted(set(later.train.lengths.tolist())) == [4, 5]
    assert torch.equal(states(later.train, 5)[0], x)


def test_sorted_batches_are_the_authors_loader_batches():
    """Their loader: the training rows sorted by length, in file order, batches of 256, none
    dropped; every row padded with EoS to 2·Lmax + 3 tokens, the padding scored."""
    config = DataConfig(task="polynomial", max_len=4, score_padding=True, **AUTHORS)
    data = make_dataset(config)
    batches = list(data.train.batches(256, order="sorted"))
    assert len(batches) == 16 and all(t.shape == (256, 11) for t, _ in batches)
    first, targets = batches[0]
    assert torch.equal(first, data.train.for_length(1).tokens[:256])
    assert torch.equal(batches[5][0], data.train.for_length(2).tokens[256:512])
    # L = 1: the EoI at index 2 predicts s_1, every later position EoS but the last (no target)
    assert torch.equal(targets[:, 2], first[:, 3]) and (targets[:, 3:10] == data.layout.eos).all()
    assert (targets[:, [0, 1, 10]] == -100).all()


def test_defaults_keep_their_keys_and_bad_values_are_refused():
    assert "sampler" not in DataConfig().to_dict()
    config = DataConfig(**AUTHORS)
    assert config.to_dict()["sampler"] == "authors"
    assert DataConfig.from_dict(config.to_dict()) == config
    with pytest.raises(IterationHeadsError, match="sampler 'numpy', expected one of"):
        DataConfig(sampler="numpy")
    with pytest.raises(IterationHeadsError, match="expected overlap=True"):
        DataConfig(sampler="authors", overlap=False)
    gaps = Task("gaps", n_symbols=5, input_values=(0, 2, 4), update=lambda s, x: (s + x) % 5)
    with pytest.raises(IterationHeadsError, match="expected consecutive values"):
        authors_inputs(gaps, DataConfig(task="gaps", max_len=2, **AUTHORS))
    theirs = make_dataset(DataConfig(max_len=3, **AUTHORS), TokenLayout.default()).train.tokens
    library = DataConfig(max_len=3, n_train=1024, n_test=1024)  # the torch sampler
    for other in (library, DataConfig(max_len=3, seed=1, **AUTHORS)):
        assert not torch.equal(make_dataset(other).train.tokens, theirs)
