"""The inputs every intervention takes: a batch of sequences with their next-token targets (from
probes, a split or plain tensors), and checked head and position arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from iteration_heads.detection.probes import Probes, spread_over_lengths
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.transformer import model_config
from iteration_heads.tasks.data import IGNORE, Split

BATCH_SIZE = 1024
"""Default sequences per forward pass."""


@dataclass(frozen=True)
class Batch:
    """Token ids, next-token targets (``-100``: not scored), input lengths (may be unknown) and,
    when the batch came from :class:`~iteration_heads.detection.Probes`, the probes (positions of
    the inputs, EoI and chain of thought in any layout)."""

    tokens: Int[Tensor, "batch pos"]
    targets: Int[Tensor, "batch pos"]
    lengths: Int[Tensor, " batch"] | None = None
    probes: Probes | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def rows(self, index: slice | Tensor) -> Batch:
        """The sequences at ``index``."""
        lengths = None if self.lengths is None else self.lengths[index]
        probes = None if self.probes is None else self.probes.select(index)
        return Batch(self.tokens[index], self.targets[index], lengths, probes)

    def as_probes(self, what: str) -> Probes:
        """The batch as probes (the library's layout unless it came from probes).

        Example:
            >>> from iteration_heads import DataConfig, make_dataset
            >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
            >>> Batch(split.tokens, split.targets, split.lengths).as_probes("detection")
            Probes(n=32, width=11, lengths 1..4, input_start=1, source='custom')
        """
        if self.probes is not None:
            return self.probes
        return Probes(self.tokens, self.need_lengths(what), targets=self.targets)

    def as_data(self) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
        """``(tokens, targets[, lengths])``, as the functions of this module take it."""
        if self.lengths is None:
            return (self.tokens, self.targets)
        return (self.tokens, self.targets, self.lengths)

    def need_lengths(self, what: str) -> Int[Tensor, " batch"]:
        """The lengths, or a clear error saying ``what`` needs them."""
        if self.lengths is None:
            raise IterationHeadsError(
                f"{what} needs the input length of every sequence: pass a Split or "
                "(tokens, targets, lengths)"
            )
        return self.lengths


Data = Batch | Probes | Split | tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor] | None
"""Probes that carry targets (:meth:`~iteration_heads.detection.Probes.from_task` builds them for
any vocabulary), a :class:`~iteration_heads.tasks.Split`, ``(tokens, targets)`` or ``(tokens,
targets, lengths)``; None: the test split of the task a library model was trained on."""


def as_batch(model: torch.nn.Module, data: Data = None, *, n: int | None = None) -> Batch:
    """Resolve ``data`` to a :class:`Batch` (library layout: EoI at ``L+1``).

    None takes the test split of the task the model was trained on (from its metadata), as
    :meth:`~iteration_heads.detection.probes.Probes.from_model` does; ``n`` keeps at most that many
    sequences, spread over the lengths.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> as_batch(build_model(ModelConfig(d_model=32, max_len=4)), split, n=8).tokens.shape
        torch.Size([8, 11])
    """
    if data is None:
        try:
            model_config(model)
        except IterationHeadsError:
            raise IterationHeadsError(
                f"{type(model).__name__} was not built by iteration_heads, so there is no test "
                "split to use: pass data=Probes.from_task(...), a Split or (tokens, targets)"
            ) from None
        data = Probes.from_model(model)
    if isinstance(data, Batch):
        batch = data
    elif isinstance(data, Probes):
        if data.targets is None:
            raise IterationHeadsError(
                "these probes carry no targets: build them with Probes.from_task, "
                "Probes.from_split or Probes(..., targets=...)"
            )
        batch = Batch(data.tokens, data.targets, data.lengths, data)
    elif isinstance(data, Split):
        batch = Batch(data.tokens, data.targets, data.lengths)
    elif isinstance(data, tuple) and len(data) in (2, 3):
        tokens = integer_tensor(data[0], "tokens")
        targets = integer_tensor(data[1], "targets")
        lengths = integer_tensor(data[2], "lengths").long() if len(data) == 3 else None
        if lengths is not None and lengths.numel() and int(lengths.min()) < 1:
            raise IterationHeadsError(f"lengths: {int(lengths.min())}, expected lengths >= 1")
        if tokens.ndim != 2 or tokens.shape != targets.shape:
            raise IterationHeadsError(
                f"tokens and targets must both be [batch, pos], got shapes {tuple(tokens.shape)} "
                f"and {tuple(targets.shape)}"
            )
        if lengths is not None and lengths.shape != (tokens.shape[0],):
            raise IterationHeadsError(
                f"lengths must have shape [{tokens.shape[0]}], got {tuple(lengths.shape)}"
            )
        batch = Batch(tokens.long(), targets.long(), lengths)
    else:
        raise IterationHeadsError(
            f"data must be Probes, a Split, (tokens, targets) or (tokens, targets, lengths), got "
            f"{type(data).__name__}"
        )
    if len(batch) == 0:
        raise IterationHeadsError("data holds no sequence")
    d_vocab = getattr(getattr(model, "cfg", None), "d_vocab", None)
    if isinstance(d_vocab, int):
        check_token_ids(batch.tokens, d_vocab, "token")
        check_token_ids(batch.targets[batch.targets != IGNORE], d_vocab, "target")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise IterationHeadsError(f"n={n!r}, expected an integer >= 1 (or None: all)")
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
    if isinstance(n_ctx, int) and batch.tokens.shape[1] > n_ctx:
        raise IterationHeadsError(
            f"sequences of width {batch.tokens.shape[1]} exceed the model's n_ctx={n_ctx}"
        )
    if n is not None:
        if batch.lengths is None:
            index = torch.arange(min(n, len(batch)))
        else:
            index = spread_over_lengths(batch.lengths, n, 0)
        batch = batch.rows(index)
    return batch


def integer_tensor(values: Any, what: str) -> Tensor:
    """``values`` as a tensor of integers, or a clear error (float ids are never truncated).

    Example:
        >>> integer_tensor([[1, 2]], "tokens")
        tensor([[1, 2]])
        >>> integer_tensor(torch.tensor([[1.5, 2.0]]), "tokens")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: tokens must hold integers, got dtype torch.float32
    """
    try:
        tensor = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError):
        raise IterationHeadsError(
            f"{what} must be a tensor of integers, got {type(values).__name__}"
        ) from None
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise IterationHeadsError(f"{what} must hold integers, got dtype {tensor.dtype}")
    return tensor


def check_token_ids(ids: Tensor, d_vocab: int, what: str = "token") -> None:
    """A clear error when an id of ``ids`` is outside the model's vocabulary ``[0, d_vocab)``.

    Example:
        >>> check_token_ids(torch.tensor([[3, 16]]), 16)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: token id 16 outside the model's vocabulary [0, 16)
    """
    if ids.numel() == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= d_vocab:
        raise IterationHeadsError(
            f"{what} id {low if low < 0 else high} outside the model's vocabulary [0, {d_vocab})"
        )


def check_positions(positions: int | Sequence[int] | None, width: int | None) -> list[int] | None:
    """``positions`` as a sorted list (None stays None), or a clear error.

    Example:
        >>> check_positions([3, 1, 3], 10)
        [1, 3]
        >>> check_positions([12], 10)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: positions [12]: expected a non-empty list of 0..9
    """
    if positions is None:
        return None
    if isinstance(positions, bool) or not isinstance(positions, (int, Sequence, Tensor)):
        raise IterationHeadsError(f"positions {positions!r}: expected an int or a list of ints")
    values = [positions] if isinstance(positions, int) else list(positions)
    bad = [
        p
        for p in values
        if isinstance(p, bool) or not isinstance(p, int) or p < 0 or (width and p >= width)
    ]
    if bad or not values:
        limit = f"0..{width - 1}" if width else ">= 0"
        raise IterationHeadsError(f"positions {values!r}: expected a non-empty list of {limit}")
    return sorted(set(values))


def check_kind(kind: str, allowed: tuple[str, ...], what: str) -> None:
    """A clear error when ``kind`` is not one of ``allowed`` (``what`` names the option).

    Example:
        >>> check_kind("max", ("zero", "mean"), "ablation kind")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: unknown ablation kind 'max'; expected one of ['zero', 'mean']
    """
    if kind not in allowed:
        raise IterationHeadsError(f"unknown {what} {kind!r}; expected one of {list(allowed)}")


def paired(model: Any, clean: Data, corrupted: Data) -> tuple[Batch, Batch]:
    """Clean and corrupted batches of the same shape, or a clear error.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> a, b = paired(build_model(ModelConfig(d_model=32, max_len=4)), split, split)
        >>> a.tokens.shape == b.tokens.shape
        True
    """
    a, b = as_batch(model, clean), as_batch(model, corrupted)
    if a.tokens.shape != b.tokens.shape:
        raise IterationHeadsError(
            f"clean and corrupted batches must have the same shape [batch, pos], got "
            f"{tuple(a.tokens.shape)} and {tuple(b.tokens.shape)}"
        )
    return a, b


def scored_widths(targets: Int[Tensor, "batch pos"]) -> Int[Tensor, " batch"]:
    """One past the last scored position of each sequence: the positions its scores depend on.

    Example:
        >>> scored_widths(torch.tensor([[-100, 3, 4, -100], [-100, -100, 2, 7]])).tolist()
        [3, 4]
    """
    scored = targets != IGNORE
    if not bool(scored.any(1).all()):
        raise IterationHeadsError("a sequence has no scored target (targets all -100)")
    columns = torch.arange(targets.shape[1]).expand_as(targets)
    return (columns * scored).amax(1) + 1
