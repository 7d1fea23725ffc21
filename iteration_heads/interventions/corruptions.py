"""Corrupted copies of chain-of-thought sequences: clean and corrupted runs differ by one thing
the task controls (one input ``x_k``, the length ``L`` so that EoI moves, or the task itself).
Activation and path patching (:mod:`~iteration_heads.interventions.patching`,
:mod:`~iteration_heads.interventions.paths`) and the position shift use them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.data import IGNORE, Split, encode
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.tasks.task import Task, get_task

CorruptionKind = Literal["input", "length", "task"]
CORRUPTION_KINDS: tuple[str, ...] = ("input", "length", "task")


def corrupt(
    data: Split,
    kind: CorruptionKind,
    *,
    task: str | Task,
    layout: TokenLayout | None = None,
    position: int | None = None,
    shift: int = 1,
    other_task: str | Task | None = None,
    seed: int = 0,
) -> Split:
    """Corrupted copies of chain-of-thought sequences (library layout), as wide as ``data``.

    * ``"input"``: change one input ``x_k`` (``k = position``, 1-based; None: random per
      sequence) to another value, and recompute the states;
    * ``"length"``: the length becomes ``L + shift`` (EoI moves by ``shift``); the first
      inputs are kept, new ones drawn;
    * ``"task"``: the same inputs under ``other_task`` (task token and states; default
      ``"parity"`` for polynomial, else ``"polynomial"``); an input outside the other task's
      alphabet ``A`` becomes ``A[x mod |A|]``.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset
        >>> clean = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test.for_length(3)
        >>> bad = corrupt(clean, "length", task="polynomial", shift=-1)
        >>> bad.tokens.shape == clean.tokens.shape, bad.lengths.unique().tolist()
        (True, [2])
    """
    if kind not in CORRUPTION_KINDS:
        raise IterationHeadsError(
            f"unknown corruption {kind!r}; expected one of {list(CORRUPTION_KINDS)}"
        )
    if not data.cot:
        raise IterationHeadsError("corruptions need chain-of-thought sequences (cot=True)")
    task = get_task(task)
    layout = layout or TokenLayout.for_task(task)
    generator = torch.Generator().manual_seed(seed)
    width = data.tokens.shape[1]
    new_task = task
    if kind == "task":
        default = "parity" if task.name == "polynomial" else "polynomial"
        new_task = get_task(other_task or default)
        if new_task.name == task.name:
            raise IterationHeadsError(f"other_task {new_task.name!r} is the task itself")
    tokens = data.tokens.clone()
    targets = data.targets.clone()
    lengths = data.lengths.clone()
    for length in sorted(set(data.lengths.tolist())):
        index = (data.lengths == length).nonzero().flatten()
        inputs = data.tokens[index, 1 : length + 1].clone()
        if kind == "input":
            values = torch.tensor(task.input_values)
            if len(values) < 2:
                raise IterationHeadsError(
                    f"task {task.name!r} has one input value: cannot change it"
                )
            if position is not None and not 1 <= position <= length:
                raise IterationHeadsError(
                    f"position={position}: sequences of length {length} have inputs 1..{length}"
                )
            k = (
                torch.full((len(index),), position - 1)
                if position is not None
                else torch.randint(0, length, (len(index),), generator=generator)
            )
            rows = torch.arange(len(index))
            old = inputs[rows, k]
            step = torch.randint(1, len(values), (len(index),), generator=generator)
            where = (values[None, :] == old[:, None]).float().argmax(1)
            inputs[rows, k] = values[(where + step) % len(values)]
        if kind == "task" and not bool(
            torch.isin(inputs, torch.tensor(new_task.input_values)).all()
        ):
            values = torch.tensor(new_task.input_values)
            inputs = values[inputs % len(values)]
        new_length = length + shift if kind == "length" else length
        if kind == "length":
            if new_length < 1 or TokenLayout.seq_len(new_length) > width:
                raise IterationHeadsError(
                    f"length {length} + shift {shift} = {new_length} does not fit sequences of "
                    f"width {width} (lengths 1..{(width - 3) // 2}); select other lengths"
                )
            extra = task.sample_inputs(len(index), max(0, shift), generator=generator)
            inputs = torch.cat([inputs, extra], 1)[:, :new_length]
        split = encode(new_task, inputs, layout=layout)
        if int(split.tokens.max()) >= layout.d_vocab or int(split.tokens[:, 1:].max()) > layout.eos:
            raise IterationHeadsError(f"task {new_task.name!r} yields states outside the layout")
        pad = width - split.tokens.shape[1]
        tokens[index] = F.pad(split.tokens, (0, pad), value=layout.eos)
        targets[index] = F.pad(split.targets, (0, pad), value=IGNORE)
        lengths[index] = new_length
    return Split(tokens, targets, lengths, True)
