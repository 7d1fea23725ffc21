"""Memory: what is free, what a forward pass holds, and how many rows a pass runs at once —
sized to a memory budget, and on a CPU to a working set that stays in cache. Shared by the
data and training budgets, the interventions, the pathways and their cost models (which count
the same passes).

A pass of ``rows x width`` tokens holds about ``rows·width·(3·d_model + d_mlp +
2·n_heads·width)`` activations at its widest layer, plus its logits (every position, or one per
row), plus what an analysis caches (``cached`` vectors of ``d_model`` per position, e.g. one
layer's ``hook_z``; ``patterns`` attention patterns); with gradients every layer's activations
are kept for the backward pass (:func:`forward_bytes`). Two limits set the rows:

* memory: at most :data:`MEMORY_SHARE` of what is free where the model runs (its GPU's free
  memory, else this machine's available memory);
* on a CPU, speed: the largest single activation of the pass (an attention pattern, the MLP's
  hidden layer, the logits) within :data:`CPU_WORKING_SET` bytes. Larger passes spill the
  caches: on two cores, 2,048 rows of a 4-head model at width 61 ran a pruning curve in 27 s,
  128 rows in 14 s (``benchmarks/batch_rows.py``).

Example:
    >>> from iteration_heads import load
    >>> model = load("polynomial_paper")
    >>> rows_per_pass(model, 12) >= 1, rows_per_pass(model, 12, cap=8)
    (True, 8)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from iteration_heads._torch import device_of
from iteration_heads.errors import IterationHeadsError

CPU_WORKING_SET = 8 * 2**20
"""Bytes of the largest single activation of a pass on a CPU (about the last-level cache)."""

MEMORY_SHARE = 0.25
"""The share of free memory one pass may hold (the rest: the caller's kept results, the
allocator's slack, other processes)."""

MAX_ROWS = 4096
"""Rows per pass at most, whatever the budget allows."""


def element_bytes(model: Any) -> int:
    """Bytes of one number of the model's activations (its weights' dtype; 4 without weights).

    Example:
        >>> from iteration_heads import load
        >>> element_bytes(load("polynomial_paper"))
        4
    """
    for weight in model.parameters():
        if weight.is_floating_point():
            return int(weight.element_size())
    return 4


def forward_bytes(
    model: Any,
    rows: int,
    width: int,
    *,
    logits: str = "all",
    cached: float = 0.0,
    patterns: int = 0,
    grad: bool = False,
) -> int:
    """Bytes a forward pass of ``rows x width`` tokens holds at once (module docstring):
    ``logits`` at ``"all"`` positions or ``"one"`` per row, ``cached`` more activations of
    ``d_model`` numbers per position (e.g. ``n_layers`` for every layer's ``hook_z``),
    ``patterns`` attention patterns kept (layers), and with ``grad`` every layer's
    activations kept for a backward pass. Logits count 4 bytes a number (they are compared in
    float32 or wider), the rest the model's own dtype.

    Example:
        >>> from iteration_heads import load
        >>> model = load("polynomial_paper")
        >>> forward_bytes(model, 2, 10) < forward_bytes(model, 2, 10, grad=True)
        True
    """
    for name, value in (("rows", rows), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise IterationHeadsError(f"{name}={value!r}, expected an integer >= 0")
    if logits not in ("all", "one"):
        raise IterationHeadsError(f"logits={logits!r}, expected 'all' or 'one'")
    cfg = model.cfg
    d_model, n_heads, vocab = int(cfg.d_model), int(cfg.n_heads), int(cfg.d_vocab)
    d_mlp = int(getattr(cfg, "d_mlp", None) or 0)
    layer = 3 * d_model + d_mlp + 2 * n_heads * width
    numbers: float = rows * width * layer * (int(cfg.n_layers) if grad else 1)
    numbers += rows * width * (cached * d_model + patterns * n_heads * width)
    scores = rows * (width if logits == "all" else 1) * vocab
    return int(numbers * element_bytes(model) + scores * 4)


def largest_activation_bytes(model: Any, width: int, *, logits: str = "one") -> int:
    """Bytes of the largest single activation of one row of a pass at ``width``: an attention
    pattern, the MLP's hidden layer, the residual stream or the logits.

    Example:
        >>> from iteration_heads import load
        >>> model = load("polynomial_paper")
        >>> largest_activation_bytes(model, 8) < largest_activation_bytes(model, 80)
        True
    """
    cfg = model.cfg
    d_mlp = int(getattr(cfg, "d_mlp", None) or 0)
    biggest = max(int(cfg.n_heads) * width * width, width * d_mlp, width * int(cfg.d_model))
    scores = (width if logits == "all" else 1) * int(cfg.d_vocab) * 4
    return max(biggest * element_bytes(model), scores)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``psutil``, else ``/proc/meminfo``;
    None when neither can tell). :func:`~iteration_heads.tasks.data.make_dataset`, the training
    budget and the cost plans refuse work that does not fit.

    Example:
        >>> available_memory() > 0
        True
    """
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except (ImportError, OSError, AttributeError):
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def free_bytes(model: Any) -> int | None:
    """Bytes free where ``model`` runs (its GPU's free memory, else this machine's available
    memory; None when unknown).

    Example:
        >>> from iteration_heads import load
        >>> (free_bytes(load("polynomial_paper")) or 1) > 0
        True
    """
    device = device_of(model)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return available_memory()


def rows_per_pass(
    model: Any,
    width: int,
    *,
    logits: str = "one",
    cached: float = 0.0,
    patterns: int = 0,
    grad: bool = False,
    cap: int = MAX_ROWS,
) -> int:
    """Rows of ``width`` tokens per forward pass (module docstring): within
    :data:`MEMORY_SHARE` of the free memory by :func:`forward_bytes` (same options), on a CPU
    with the largest activation within :data:`CPU_WORKING_SET`, and at most ``cap``; at least 1.

    Example:
        >>> from iteration_heads import load
        >>> model = load("polynomial_paper")
        >>> rows_per_pass(model, 12, cap=16), rows_per_pass(model, 12, grad=True, cap=16)
        (16, 16)
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise IterationHeadsError(f"width={width!r}, expected an integer >= 1")
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise IterationHeadsError(f"cap={cap!r}, expected an integer >= 1")
    rows = cap
    free = free_bytes(model)
    if free is not None:
        one = forward_bytes(
            model, 1, width, logits=logits, cached=cached, patterns=patterns, grad=grad
        )
        rows = min(rows, int(MEMORY_SHARE * free) // max(one, 1))
    if device_of(model).type == "cpu":
        rows = min(rows, CPU_WORKING_SET // largest_activation_bytes(model, width, logits=logits))
    return max(1, rows)


def analysis_rows(model: Any, width: int, *, cap: int = MAX_ROWS) -> int:
    """Rows per pass of an analysis that keeps every layer's head outputs (``hook_z``) of its
    rows and scores one position per row: the default of the pathways' sweeps (head patching,
    noising, pruning, reference means). :func:`rows_per_pass` with those options.

    Example:
        >>> from iteration_heads import load
        >>> analysis_rows(load("polynomial_paper"), 12, cap=32)
        32
    """
    return rows_per_pass(model, width, cached=int(model.cfg.n_layers), cap=cap)


def batch_rows(batch_size: int | None, default: int) -> int:
    """``batch_size`` checked (an integer >= 1), or ``default`` when it is None.

    Example:
        >>> batch_rows(None, 64), batch_rows(8, 64)
        (64, 8)
        >>> batch_rows(0, 64)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: batch_size=0, expected an integer >= 1 or None (sized to the memory budget)
    """
    if batch_size is None:
        return default
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise IterationHeadsError(
            f"batch_size={batch_size!r}, expected an integer >= 1 or None (sized to the memory "
            "budget)"
        )
    return batch_size
