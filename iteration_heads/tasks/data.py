"""Datasets of chain-of-thought sequences for lengths ``min_len .. max_len`` (docs/paper.md §1-§2).

Every sequence is padded with EoS to one width (``2·max_len + 3`` with CoT). ``targets[i]`` is the
token that the prediction at position ``i`` must produce (the next token), or ``-100`` where
nothing is scored: with CoT the scored predictions are those at positions ``L+1 .. 2L+1``
(targets ``s_1 .. s_L`` and the first EoS); without CoT, ``L+1 .. L+2`` (``s_L`` and EoS).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from iteration_heads._io import strict_from_dict
from iteration_heads.errors import IterationHeadsError
from iteration_heads.memory import available_memory
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.tasks.task import Task, check_bool, check_choice, check_int

IGNORE = -100
"""Target value of positions that are not scored (PyTorch's ``ignore_index``)."""

BatchOrder = Literal["shuffled", "sorted"]
SAMPLERS = ("torch", "authors")
"""How :func:`make_dataset` draws the inputs (``DataConfig.sampler``)."""


@dataclass(frozen=True)
class DataConfig:
    """What data to generate. Defaults follow the paper (docs/paper.md §2).

    Example:
        >>> DataConfig(task="parity", max_len=8).n_train
        1024
    """

    task: str = "polynomial"  # a registered task name
    max_len: int = 16  # Lmax: input lengths min_len..max_len
    min_len: int = 1
    n_train: int = 1024  # training sequences per length
    n_test: int = 1024  # test sequences per length
    cot: bool = True  # False: the answer s_L comes right after EoI
    overlap: bool = True  # False: no test input sequence also appears in the training set
    # True: the EoS padding after the first EoS is scored too (loss and accuracy), as in the
    # authors' code; False: only s_1..s_L and the first EoS (docs/paper.md §1).
    score_padding: bool = False
    # "torch": train and test inputs drawn apart from a torch generator. "authors": the authors'
    # generator, numpy's default_rng(seed) drawing n_train + n_test inputs per length from
    # length 1 up, shuffled and split (authors_inputs); with seed 0 and 1024 + 1024, their data
    # files row for row (their data seed is 0 whatever the torch seed). Needs overlap=True.
    sampler: Literal["torch", "authors"] = "torch"
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or not self.task:
            raise IterationHeadsError(f"task={self.task!r}, expected the name of a task")
        minimums = {"max_len": None, "min_len": None, "n_train": 1, "n_test": 1, "seed": 0}
        for name, minimum in minimums.items():  # the lengths' range is checked below
            value = check_int(name, getattr(self, name), minimum=minimum)
            object.__setattr__(self, name, value)  # a numpy integer becomes an int
        for name in ("cot", "overlap", "score_padding"):
            check_bool(name, getattr(self, name))
        check_choice("sampler", self.sampler, SAMPLERS)
        if self.sampler == "authors" and not self.overlap:
            raise IterationHeadsError(
                "sampler='authors' with overlap=False: the authors' split lets a test input "
                "also be a training input; expected overlap=True"
            )
        if not 1 <= self.min_len <= self.max_len:
            raise IterationHeadsError(
                f"lengths min_len={self.min_len}, max_len={self.max_len}: "
                "expected 1 <= min_len <= max_len"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary; inverse of :meth:`from_dict`."""
        data = asdict(self)
        if self.sampler == "torch":  # configs (and run cache keys) from before the option
            del data["sampler"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        """Rebuild a config saved with :meth:`to_dict`; unknown keys are an error.

        Example:
            >>> DataConfig.from_dict(DataConfig(max_len=4).to_dict()) == DataConfig(max_len=4)
            True
        """
        return strict_from_dict(cls, data)


@dataclass(frozen=True)
class Split:
    """One split (train or test): token ids, targets and the input length of every sequence.

    Attributes:
        tokens: Token ids, EoS-padded to one width.
        targets: Next-token target of every position, ``-100`` where not scored.
        lengths: Input length ``L`` of every sequence.
        cot: Whether the sequences write every state (chain of thought).
        score_padding: Whether the EoS padding is scored (then sequences are never trimmed).
    """

    tokens: Int[Tensor, "n pos"]
    targets: Int[Tensor, "n pos"]
    lengths: Int[Tensor, " n"]
    cot: bool
    score_padding: bool = False

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def seq_lens(self) -> Int[Tensor, " n"]:
        """Number of tokens of each sequence that matter: up to its first EoS (all of the width
        when the padding is scored)."""
        if self.score_padding:
            return torch.full_like(self.lengths, self.tokens.shape[1])
        return 2 * self.lengths + 3 if self.cot else self.lengths + 4

    def select(self, index: Tensor) -> Split:
        """The sequences at ``index`` (an index or boolean tensor), trimmed to their width."""
        lengths = self.lengths[index]
        part = Split(self.tokens[index], self.targets[index], lengths, self.cot, self.score_padding)
        width = int(part.seq_lens.max()) if len(part) else 0
        return Split(
            part.tokens[:, :width], part.targets[:, :width], lengths, self.cot, self.score_padding
        )

    def for_length(self, length: int) -> Split:
        """The sequences of input length ``length``, trimmed to their own width.

        Example:
            >>> data = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8))
            >>> data.test.for_length(2).tokens.shape
            torch.Size([8, 7])
        """
        length = check_int("length", length, minimum=1)
        mask = self.lengths == length
        if not bool(mask.any()):
            present = sorted(set(self.lengths.tolist()))
            raise IterationHeadsError(f"no sequence of length {length}; lengths present: {present}")
        return self.select(mask)

    def batches(
        self,
        batch_size: int,
        *,
        order: BatchOrder = "shuffled",
        generator: torch.Generator | None = None,
    ) -> Iterator[tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]]:
        """Yield ``(tokens, targets)`` batches, each trimmed to its longest sequence.

        ``"shuffled"`` draws a fresh permutation of all sequences (all lengths mixed) from
        ``generator``; ``"sorted"`` is the authors' order: by length, unshuffled, so each batch
        holds one length.

        Example:
            >>> data = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8))
            >>> [t.shape[1] for t, _ in data.train.batches(8, order="sorted")]
            [5, 7, 9, 11]
        """
        batch_size = check_int("batch_size", batch_size, minimum=1)
        if order == "shuffled":
            perm = torch.randperm(len(self), generator=generator)
            chunks = list(perm.split(batch_size))
        elif order == "sorted":
            chunks = []
            for length in sorted(set(self.lengths.tolist())):
                idx = torch.nonzero(self.lengths == length).flatten()
                chunks.extend(idx.split(batch_size))
        else:
            raise IterationHeadsError(f"batch order {order!r}, expected 'shuffled' or 'sorted'")
        seq_lens = self.seq_lens
        for idx in chunks:
            width = int(seq_lens[idx].max())
            yield self.tokens[idx, :width], self.targets[idx, :width]


@dataclass(frozen=True)
class Dataset:
    """Train and test splits of one task, with the config and layout that made them."""

    config: DataConfig
    layout: TokenLayout
    train: Split
    test: Split

    @property
    def task(self) -> Task:
        """The task the data was generated for."""
        return self.layout.check_task(self.config.task)


def make_dataset(config: DataConfig, layout: TokenLayout | None = None) -> Dataset:
    """Generate train and test sequences for every length (vectorised, seeded).

    Args:
        config: Task, lengths, sizes, CoT or not, overlap policy, sampler, seed.
        layout: Vocabulary to encode with; defaults to :meth:`TokenLayout.for_task`.

    Example:
        >>> data = make_dataset(DataConfig(task="polynomial", max_len=8))
        >>> data.train.tokens.shape, data.test.tokens.shape
        (torch.Size([8192, 19]), torch.Size([8192, 19]))
        >>> data.layout.decode(data.train.for_length(2).tokens[0])
        ['<polynomial>', '1', '6', '<EoI>', '1', '7', '<EoS>']
    """
    if not isinstance(config, DataConfig):
        raise IterationHeadsError(f"config must be a DataConfig, got {type(config).__name__}")
    if layout is not None and not isinstance(layout, TokenLayout):
        raise IterationHeadsError(f"layout must be a TokenLayout, got {type(layout).__name__}")
    layout = layout or TokenLayout.for_task(config.task)
    task = layout.check_task(config.task)
    need, have = dataset_bytes(config), available_memory()
    if have is not None and need > have:
        raise IterationHeadsError(
            f"max_len={config.max_len} needs about {need / 1e9:.1f} GB for the dataset "
            f"({config.n_train} + {config.n_test} sequences per length, "
            f"{config.max_len - config.min_len + 1} lengths); this machine has "
            f"{have / 1e9:.1f} GB available"
        )
    if config.sampler == "authors":
        train_inputs, test_inputs = authors_inputs(task, config)
    else:
        generator = torch.Generator().manual_seed(config.seed)
        train_inputs, test_inputs = [], []
        for length in range(config.min_len, config.max_len + 1):
            if config.overlap:
                train_x = task.sample_inputs(config.n_train, length, generator=generator)
                test_x = task.sample_inputs(config.n_test, length, generator=generator)
            else:
                train_x, test_x = _disjoint_inputs(task, config, length, generator)
            train_inputs.append(train_x)
            test_inputs.append(test_x)
    width = TokenLayout.seq_len(config.max_len, cot=config.cot)
    return Dataset(
        config,
        layout,
        _encode_split(task, layout, train_inputs, width, config.cot, config.score_padding),
        _encode_split(task, layout, test_inputs, width, config.cot, config.score_padding),
    )


def dataset_bytes(config: DataConfig) -> int:
    """Bytes :func:`make_dataset` holds at its peak for ``config``: the token, target and length
    tensors (int64) of both splits, and one split's per-length parts while they are joined.

    An upper bound: without ``overlap`` short lengths may hold fewer sequences.

    Example:
        >>> dataset_bytes(DataConfig(max_len=8))  # 8192 sequences of 19 tokens per split
        7667712
        >>> round(dataset_bytes(DataConfig(max_len=1000)) / 1e9, 1)  # 1.02M sequences of 2003
        98.5
    """
    lengths = config.max_len - config.min_len + 1
    width = TokenLayout.seq_len(config.max_len, cot=config.cot)
    per_row = (2 * width + 1) * 8  # tokens and targets of one sequence, and its length
    train, test = config.n_train * lengths * per_row, config.n_test * lengths * per_row
    return train + test + max(train, test)


def encode(
    task: Task | str, inputs: Int[Tensor, "n length"], *, layout: TokenLayout, cot: bool = True
) -> Split:
    """Encode input sequences of one length as a :class:`Split` (tokens, targets, lengths).

    Example:
        >>> split = encode("parity", torch.tensor([[1, 0, 1]]), layout=TokenLayout.default())
        >>> TokenLayout.default().decode(split.tokens[0])
        ['<parity>', '1', '0', '1', '<EoI>', '1', '1', '0', '<EoS>']
        >>> split.targets[0].tolist()
        [-100, -100, -100, -100, 1, 1, 0, 12, -100]
    """
    if not isinstance(layout, TokenLayout):
        raise IterationHeadsError(f"layout must be a TokenLayout, got {type(layout).__name__}")
    check_bool("cot", cot)
    resolved = layout.check_task(task)
    if not isinstance(inputs, Tensor) or inputs.ndim != 2 or 0 in inputs.shape:
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise IterationHeadsError(f"inputs must be a tensor of shape [n, length>=1], got {shape}")
    return _encode_split(
        resolved, layout, [inputs], TokenLayout.seq_len(inputs.shape[1], cot=cot), cot
    )


def _encode_split(
    task: Task,
    layout: TokenLayout,
    inputs: list[Tensor],
    width: int,
    cot: bool,
    score_padding: bool = False,
) -> Split:
    tokens, targets, lengths = [], [], []
    for x in inputs:
        n, length = x.shape
        states = task.states(x)
        tok = torch.full((n, width), layout.eos, dtype=torch.long)
        tok[:, 0] = layout.task_token(task.name)
        tok[:, 1 : length + 1] = x
        tok[:, length + 1] = layout.eoi
        if cot:
            tok[:, length + 2 : 2 * length + 2] = states
            last_scored = 2 * length + 1
        else:
            tok[:, length + 2] = states[:, -1]
            last_scored = length + 2
        tgt = torch.full_like(tok, IGNORE)
        tgt[:, length + 1 : last_scored + 1] = tok[:, length + 2 : last_scored + 2]
        if score_padding:
            tgt[:, last_scored + 1 : width - 1] = layout.eos
        tokens.append(tok)
        targets.append(tgt)
        lengths.append(torch.full((n,), length, dtype=torch.long))
    return Split(torch.cat(tokens), torch.cat(targets), torch.cat(lengths), cot, score_padding)


def authors_inputs(task: Task, config: DataConfig) -> tuple[list[Tensor], list[Tensor]]:
    """Train and test inputs of every length ``min_len .. max_len`` as the authors' generator
    draws them: numpy's ``default_rng(config.seed)``; for each length from 1 up (shorter ones
    drawn and dropped, so that a length holds the same inputs whatever ``min_len``),
    ``n_train + n_test`` rows (inputs ``{0, 1}``: uniform floats > 0.5, others: integers of
    the task's range, as int32), shuffled, the first ``n_train`` for training.

    Example:
        >>> from iteration_heads.tasks.task import get_task
        >>> config = DataConfig(max_len=3, n_train=1024, n_test=1024, sampler="authors")
        >>> train, test = authors_inputs(get_task("polynomial"), config)
        >>> train[2][0].tolist(), [len(x) for x in train + test]  # their train_3.npy, row 0
        ([5, 6, 1], [1024, 1024, 1024, 1024, 1024, 1024])
    """
    low, high = min(task.input_values), max(task.input_values)
    if sorted(task.input_values) != list(range(low, high + 1)):
        raise IterationHeadsError(
            f"sampler='authors' draws a range of integers; task {task.name!r} has "
            f"input_values={task.input_values}, expected consecutive values"
        )
    rng = np.random.default_rng(config.seed)
    train, test = [], []
    for length in range(1, config.max_len + 1):
        n = config.n_train + config.n_test
        if (low, high) == (0, 1):
            rows = (rng.random((n, length)) > 0.5).astype(np.int32)
        else:
            rows = rng.integers(low, high + 1, size=(n, length), dtype=np.int32)
        rng.shuffle(rows)  # the permutation depends on the row count only
        if length >= config.min_len:
            inputs = torch.from_numpy(rows).long()
            train.append(inputs[: config.n_train])
            test.append(inputs[config.n_train :])
    return train, test


def _disjoint_inputs(
    task: Task, config: DataConfig, length: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Train and test inputs of one length with no test row present in the training set.

    When the input space is no larger than ``n_train + n_test`` it is enumerated, shuffled and
    split in the ratio ``n_train : n_test`` (so both splits are smaller than asked).
    """
    values = torch.tensor(task.input_values, dtype=torch.long)
    k, wanted = len(values), config.n_train + config.n_test
    if math.log(k) * length <= math.log(wanted):  # k**length <= wanted, without overflow
        space = k**length
        digits = torch.arange(space)[:, None] // (k ** torch.arange(length - 1, -1, -1)) % k
        rows = values[digits][torch.randperm(space, generator=generator)]
        n_train = max(1, min(space - 1, round(space * config.n_train / wanted)))
        return rows[:n_train], rows[n_train:]
    train = task.sample_inputs(config.n_train, length, generator=generator)
    test = torch.empty(0, length, dtype=torch.long)
    while len(test) < config.n_test:
        candidates = task.sample_inputs(2 * config.n_test, length, generator=generator)
        _, inverse = torch.unique(torch.cat([train, candidates]), dim=0, return_inverse=True)
        seen = torch.isin(inverse[len(train) :], inverse[: len(train)])
        test = torch.cat([test, candidates[~seen]])
    return train, test[: config.n_test]
