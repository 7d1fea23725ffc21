"""Corrupted copies of chain-of-thought sequences: clean and corrupted runs differ by one thing
the task controls (one input ``x_k``, the length ``L`` so that EoI moves, or the task itself).
Splits (library layout) and probes built from a task (any vocabulary, token or text) alike.
Activation and path patching (:mod:`~iteration_heads.interventions.patching`,
:mod:`~iteration_heads.interventions.paths`) and the position shift use them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from iteration_heads.detection.probes import Probes
from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.data import IGNORE, Split, encode
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.tasks.task import Task, check_int, get_task

CorruptionKind = Literal["input", "length", "task"]
CORRUPTION_KINDS: tuple[str, ...] = ("input", "length", "task")


def corrupt(
    data: Split | Probes,
    kind: CorruptionKind,
    *,
    task: str | Task | None = None,
    layout: TokenLayout | None = None,
    position: int | None = None,
    shift: int = 1,
    other_task: str | Task | None = None,
    seed: int = 0,
) -> Split | Probes:
    """Corrupted copies of chain-of-thought sequences, as wide as ``data``.

    * ``"input"``: change one input ``x_k`` (``k = position``, 1-based; None: random per
      sequence) to another value, and recompute the states;
    * ``"length"``: the length becomes ``L + shift`` (EoI moves by ``shift``); the first
      inputs are kept, new ones drawn;
    * ``"task"`` (splits only): the same inputs under ``other_task`` (task token and states;
      default ``"parity"`` for polynomial, else ``"polynomial"``); an input outside the other
      task's alphabet ``A`` becomes ``A[x mod |A|]``.

    ``data`` is a :class:`~iteration_heads.tasks.Split` in the library layout (``task`` names
    its task) or :class:`~iteration_heads.detection.Probes` built from a task, in any
    vocabulary (re-encoded with their own encoding; ``task`` defaults to theirs).

    Example:
        >>> from iteration_heads import DataConfig, Probes, make_dataset
        >>> clean = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test.for_length(3)
        >>> bad = corrupt(clean, "length", task="polynomial", shift=-1)
        >>> bad.tokens.shape == clean.tokens.shape, bad.lengths.unique().tolist()
        (True, [2])
        >>> probes = Probes.from_task("polynomial", symbol_to_token={v: 20 + v for v in range(11)},
        ...                           eoi_token=1, bos_token=0, max_len=3, n=3)
        >>> changed = corrupt(probes, "input", position=1)
        >>> changed.tokens[:, 1].ne(probes.tokens[:, 1]).all().item(), changed.source
        (True, 'polynomial in a foreign vocabulary, input corrupted')
    """
    check_int("position", position, minimum=0, none=True)
    check_int("shift", shift)
    check_int("seed", seed, minimum=0)
    if kind not in CORRUPTION_KINDS:
        raise IterationHeadsError(
            f"unknown corruption {kind!r}; expected one of {list(CORRUPTION_KINDS)}"
        )
    generator = torch.Generator().manual_seed(seed)
    if isinstance(data, Probes):
        return _corrupt_probes(data, kind, task, position, shift, generator)
    if not isinstance(data, Split):
        raise IterationHeadsError(f"data must be a Split or Probes, got {type(data).__name__}")
    if not data.cot:
        raise IterationHeadsError("corruptions need chain-of-thought sequences (cot=True)")
    if task is None:
        raise IterationHeadsError("corrupting a Split needs task= (the task it was made of)")
    task = get_task(task)
    layout = layout or TokenLayout.for_task(task)
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
        if kind == "task":
            if not bool(torch.isin(inputs, torch.tensor(new_task.input_values)).all()):
                values = torch.tensor(new_task.input_values)
                inputs = values[inputs % len(values)]
        else:
            inputs = changed_inputs(task, inputs, kind, position, shift, generator)
            if TokenLayout.seq_len(inputs.shape[1]) > width:
                raise IterationHeadsError(
                    f"length {length} + shift {shift} = {inputs.shape[1]} does not fit sequences "
                    f"of width {width} (lengths 1..{(width - 3) // 2}); select other lengths"
                )
        split = encode(new_task, inputs, layout=layout)
        if int(split.tokens.max()) >= layout.d_vocab or int(split.tokens[:, 1:].max()) > layout.eos:
            raise IterationHeadsError(f"task {new_task.name!r} yields states outside the layout")
        pad = width - split.tokens.shape[1]
        tokens[index] = F.pad(split.tokens, (0, pad), value=layout.eos)
        targets[index] = F.pad(split.targets, (0, pad), value=IGNORE)
        lengths[index] = inputs.shape[1]
    return Split(tokens, targets, lengths, True)


def changed_inputs(
    task: Task,
    inputs: Int[Tensor, "n L"],
    kind: CorruptionKind,
    position: int | None,
    shift: int,
    generator: torch.Generator,
) -> Int[Tensor, "n L2"]:
    """Input sequences of one length with one input changed (``"input"``) or ``shift`` inputs
    added or dropped at the end (``"length"``).

    Example:
        >>> from iteration_heads import get_task
        >>> g = torch.Generator().manual_seed(0)
        >>> changed_inputs(get_task("parity"), torch.tensor([[1, 0, 1]]), "input", 2, 1, g)
        tensor([[1, 1, 1]])
    """
    n, length = inputs.shape
    if kind == "input":
        values = torch.tensor(task.input_values)
        if len(values) < 2:
            raise IterationHeadsError(f"task {task.name!r} has one input value: cannot change it")
        if position is not None and not 1 <= position <= length:
            raise IterationHeadsError(
                f"position={position}: sequences of length {length} have inputs 1..{length}"
            )
        k = (
            torch.full((n,), position - 1)
            if position is not None
            else torch.randint(0, length, (n,), generator=generator)
        )
        rows = torch.arange(n)
        inputs = inputs.clone()
        step = torch.randint(1, len(values), (n,), generator=generator)
        where = (values[None, :] == inputs[rows, k][:, None]).float().argmax(1)
        inputs[rows, k] = values[(where + step) % len(values)]
        return inputs
    new_length = length + shift
    if new_length < 1:
        raise IterationHeadsError(
            f"length {length} + shift {shift} = {new_length}: select longer sequences"
        )
    extra = task.sample_inputs(n, max(0, shift), generator=generator)
    return torch.cat([inputs, extra], 1)[:, :new_length]


def _corrupt_probes(
    probes: Probes,
    kind: CorruptionKind,
    task: str | Task | None,
    position: int | None,
    shift: int,
    generator: torch.Generator,
) -> Probes:
    if kind == "task":
        raise IterationHeadsError(
            "task corruption needs the library layout (a Split): probes in a foreign vocabulary "
            "have no token for another task"
        )
    resolved = get_task(task) if task is not None else probes.task
    if probes.inputs is None or resolved is None:
        raise IterationHeadsError(
            "these probes were built from tokens, not from a task: build them with "
            "Probes.from_task, Probes.from_text or Probes.from_split(..., task=...) to corrupt them"
        )
    rows: list[Tensor] = [torch.empty(0)] * len(probes)
    for length in sorted(set(probes.lengths.tolist())):
        index = (probes.lengths == length).nonzero().flatten()
        new = changed_inputs(
            resolved,
            probes.inputs[index, :length],
            kind,
            position,
            shift,
            generator,
        )
        for i, row in zip(index.tolist(), new, strict=True):
            rows[i] = row
    return probes.with_inputs(rows, task=resolved, source=f"{probes.source}, {kind} corrupted")
