"""Positions and targets of probes: checked per sequence and per step, and probes chosen evenly
over their lengths.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.task import check_int


def step_positions(value: Tensor, lengths: Tensor, name: str) -> Tensor:
    """Per-step positions ``[batch, >= max L]`` as a long tensor ``[batch, max L]``, or a clear
    error.

    Example:
        >>> step_positions(torch.tensor([[1, 2, 9]]), torch.tensor([2]), "input_positions")
        tensor([[1, 2]])
    """
    tensor = torch.as_tensor(value)
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise IterationHeadsError(f"{name} must hold integer positions, got dtype {tensor.dtype}")
    if tensor.ndim != 2 or tensor.shape[0] != len(lengths) or tensor.shape[1] < int(lengths.max()):
        raise IterationHeadsError(
            f"{name} must have shape [{len(lengths)}, >= {int(lengths.max())}] (one row per "
            f"probe, one column per step), got {tuple(tensor.shape)}"
        )
    return tensor[:, : int(lengths.max())].long().cpu()


def checked_targets(targets: Tensor | None, shape: torch.Size) -> Tensor | None:
    """Integer targets of the tokens' shape (None stays None), or a clear error.

    Example:
        >>> checked_targets(torch.zeros(1, 3), torch.Size([1, 3]))
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: probe targets must be integer ids of the tokens' shape (1, 3), got shape (1, 3) and dtype torch.float32
    """
    if targets is None:
        return None
    targets = torch.as_tensor(targets)
    if targets.shape != shape or targets.dtype.is_floating_point:
        raise IterationHeadsError(
            f"probe targets must be integer ids of the tokens' shape {tuple(shape)}, "
            f"got shape {tuple(targets.shape)} and dtype {targets.dtype}"
        )
    return targets.long()


def per_sequence(value: Tensor | int, n: int, name: str) -> Tensor:
    """An int or a tensor of shape [n] as a long tensor of shape [n].

    Example:
        >>> per_sequence(3, 2, "eoi")
        tensor([3, 3])
    """
    if not isinstance(value, Tensor):  # a Python number: named as given
        check_int(name, value)
    tensor = torch.as_tensor(value)
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise IterationHeadsError(f"{name} must hold integer positions, got dtype {tensor.dtype}")
    if tensor.ndim == 0:
        return tensor.long().expand(n).clone()
    if tensor.shape != (n,):
        raise IterationHeadsError(
            f"{name} must be an int or a tensor of shape [{n}] (one per probe), "
            f"got shape {tuple(tensor.shape)}"
        )
    return tensor.long().cpu()


def spread_over_lengths(lengths: Int[Tensor, " batch"], n: int, seed: int = 0) -> Int[Tensor, " k"]:
    """Indices of at most ``n`` sequences, as evenly spread over the lengths as possible.

    Example:
        >>> lengths = torch.tensor([1, 1, 1, 2, 2, 3])
        >>> lengths[spread_over_lengths(lengths, 3)].tolist()  # one sequence of each length
        [1, 2, 3]
    """
    check_int("n", n, minimum=1)
    check_int("seed", seed, minimum=0)
    if n < 1:
        raise IterationHeadsError(f"n={n} probes, expected >= 1")
    values = sorted(set(lengths.tolist()))
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for i, length in enumerate(values):
        index = (lengths == length).nonzero().flatten()
        count = n // len(values) + (1 if i < n % len(values) else 0)
        chosen.append(index[torch.randperm(len(index), generator=generator)[:count]])
    return torch.cat(chosen).sort().values


def check_layout(
    lengths: Tensor, eoi: Tensor, inputs: Tensor, queries: Tensor, states: Tensor, width: int
) -> None:
    """Every position inside the sequences, and in order: inputs, EoI, then each state after
    its query (a clear error naming the sequence otherwise).

    Example:
        >>> steps = torch.tensor([[1, 2]])
        >>> check_layout(torch.tensor([2]), torch.tensor([2]), steps, steps + 2, steps + 3, 7)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: sequence 0: the last input must come before EoI
    """
    if not bool(((eoi >= 0) & (eoi < width)).all()):
        b = int(((eoi < 0) | (eoi >= width)).nonzero()[0])
        raise IterationHeadsError(
            f"sequence {b}: EoI position {int(eoi[b])} is outside the sequence "
            f"(positions 0..{width - 1})"
        )
    valid = torch.arange(inputs.shape[1])[None, :] < lengths[:, None]
    checks = [
        ("input x", inputs),
        ("state s", states),
        ("the query of s", queries),
    ]
    for label, pos in checks:
        bad = valid & ((pos < 0) | (pos >= width))
        if bool(bad.any()):
            b, t = (int(v) for v in bad.nonzero()[0])
            raise IterationHeadsError(
                f"sequence {b}: {label}_{t + 1} at position {int(pos[b, t])} does not fit in "
                f"the probe (positions 0..{width - 1})"
            )
    last_input = inputs.gather(1, (lengths - 1)[:, None])[:, 0]
    order = [
        (last_input < eoi, "the last input must come before EoI"),
        (states[:, 0] > eoi, "the first state must come after EoI"),
        (
            (queries < states)[valid.nonzero(as_tuple=True)].all()
            if valid.any()
            else torch.tensor(True),
            "each query must come before its state",
        ),
    ]
    for ok, message in order:
        if not bool(ok.all()):
            b = int((~ok).nonzero()[0]) if ok.ndim else 0
            raise IterationHeadsError(f"sequence {b}: {message}")
