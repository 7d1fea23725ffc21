"""Running a model over sequences of mixed widths at the cost of what is read: passes planned
by width (and first layer), blocks before a resumed layer skipped, only the positions needed
unembedded, and prompts that read several positions of one sequence run on it once
(:class:`SharedSequences`). Shared by detection, the interventions and the pathways.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads._torch import (
    FINAL_NORM_HOOK,
    attached_hooks,
    device_of,
    evaluating,
    run_to_the_end,
)
from iteration_heads.errors import IterationHeadsError

FORWARD_OVERHEAD_FLOPS = 3e9
"""The fixed cost of one forward pass (Python, hooks, allocation), in floating-point operations
of matrix products: about 30 ms on two CPU cores. The planner merges groups of rows while the
computation a merge wastes costs less than this."""


def plan_passes(
    starts: Int[Tensor, " rows"],
    widths: Int[Tensor, " rows"],
    n_layers: int,
    overhead: float,
    max_rows: int,
) -> list[tuple[Int[Tensor, " chunk"], int, int]]:
    """Group rows into forward passes ``(rows, first layer, width)``: each pass runs from the
    smallest first layer and to the largest width of its rows. The groups of equal
    ``(start, width)``, sorted one way or the other, are cut where the total cost — rows × width
    × layers run, plus ``overhead`` per pass — is least; passes hold at most ``max_rows`` rows.

    Example:
        >>> starts, widths = torch.tensor([0, 0, 2, 2]), torch.tensor([5, 9, 5, 5])
        >>> [(rows.tolist(), s, w) for rows, s, w in plan_passes(starts, widths, 4, 0.0, 8)]
        [([0], 0, 5), ([1], 0, 9), ([2, 3], 2, 5)]
        >>> [(rows.tolist(), s, w) for rows, s, w in plan_passes(starts, widths, 4, 1e6, 8)]
        [([0, 1, 2, 3], 0, 9)]
    """
    keys = sorted({(int(s), int(w)) for s, w in zip(starts.tolist(), widths.tolist(), strict=True)})
    members: dict[tuple[int, int], list[int]] = {key: [] for key in keys}
    for row, key in enumerate(zip(starts.tolist(), widths.tolist(), strict=True)):
        members[key].append(row)
    best: tuple[float, list[list[tuple[int, int]]]] | None = None
    for order in (keys, sorted(keys, key=lambda k: (k[1], k[0]))):
        cost, cuts = _cheapest_cuts(order, members, n_layers, overhead)
        if best is None or cost < best[0]:
            best = (cost, cuts)
    assert best is not None
    passes = []
    for group in best[1]:
        rows = torch.tensor([row for key in group for row in members[key]])
        start, width = min(k[0] for k in group), max(k[1] for k in group)
        passes += [(part, start, width) for part in rows.split(max_rows)]
    return passes


def passes_by_width(
    widths: Int[Tensor, " rows"], d_model: int, max_rows: int
) -> list[tuple[Int[Tensor, " chunk"], int]]:
    """Rows grouped into forward passes ``(rows, width)`` that all start at the embeddings:
    :func:`plan_passes` with one pass's fixed cost (:data:`FORWARD_OVERHEAD_FLOPS`) in token
    units of a model of width ``d_model``.

    Example:
        >>> [(rows.tolist(), w) for rows, w in passes_by_width(torch.tensor([5, 9, 5]), 512, 8)]
        [([0, 2, 1], 9)]
    """
    overhead = FORWARD_OVERHEAD_FLOPS / (24 * d_model**2)
    planned = plan_passes(torch.zeros_like(widths), widths, 1, overhead, max_rows)
    return [(rows, width) for rows, _, width in planned]


def _cheapest_cuts(
    order: list[tuple[int, int]],
    members: dict[tuple[int, int], list[int]],
    n_layers: int,
    overhead: float,
) -> tuple[float, list[list[tuple[int, int]]]]:
    """Cut ``order`` into contiguous groups of least total cost (dynamic programme)."""
    cost = [0.0] + [float("inf")] * len(order)
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        rows, start, width = 0, n_layers, 0
        for begin in range(end - 1, -1, -1):
            rows += len(members[order[begin]])
            start, width = min(start, order[begin][0]), max(width, order[begin][1])
            total = cost[begin] + rows * width * (n_layers - start) + overhead
            if total < cost[end]:
                cost[end], cut[end] = total, begin
    groups, end = [], len(order)
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return cost[-1], groups[::-1]


@dataclass(frozen=True)
class SharedSequences:
    """Prompts read at one position each, grouped by the sequence they read: prompts that study
    several steps of one sequence share it, and a forward pass that treats every row alike
    (clean, or with the same heads ablated on every row) runs it once and reads each prompt's
    position from it. Sequences end after their last studied position (attention is causal).

    Attributes:
        tokens: The distinct sequences ``[u, pos]``.
        widths: Each sequence's last studied position + 1.
        inverse: The sequence of each prompt.
        position: Each prompt's studied position.

    Example:
        >>> tokens = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8], [1, 2, 3, 4]])
        >>> shared = shared_sequences(tokens, torch.tensor([1, 3, 2]))
        >>> shared.tokens.tolist(), shared.widths.tolist(), shared.inverse.tolist()
        ([[1, 2, 3, 4], [5, 6, 7, 8]], [3, 4], [1, 1, 0])
    """

    tokens: Int[Tensor, "u pos"]
    widths: Int[Tensor, " u"]
    inverse: Int[Tensor, " n"]
    position: Int[Tensor, " n"]

    def plan(
        self, variants: int, max_rows: int, d_model: int
    ) -> list[tuple[Int[Tensor, " rows"], Int[Tensor, " rows"], int]]:
        """Forward passes ``(variant, sequence, width)`` running every sequence once per
        variant, grouped by width (:func:`plan_passes`), at most ``max_rows`` rows a pass.

        Example:
            >>> shared = shared_sequences(torch.tensor([[1, 2, 3], [4, 5, 6]]), torch.tensor([0, 2]))
            >>> [(v.tolist(), s.tolist(), w) for v, s, w in shared.plan(2, 8, 512)]
            [([0, 1, 0, 1], [0, 0, 1, 1], 3)]
        """
        job_variant = torch.arange(variants).repeat_interleave(len(self.tokens))
        job_seq = torch.arange(len(self.tokens)).repeat(variants)
        planned = passes_by_width(self.widths[job_seq], d_model, max_rows)
        return [(job_variant[jobs], job_seq[jobs], width) for jobs, width in planned]

    def scored_in(
        self, seq: Int[Tensor, " rows"], width: int
    ) -> tuple[Bool[Tensor, "rows width"], Int[Tensor, " m"], Int[Tensor, " m"], Int[Tensor, " m"]]:
        """For a pass over the sequences ``seq`` cut at ``width``: the positions to score
        (every prompt's of each row), and for each prompt of those rows its row in the pass,
        its index and the index of its logits among the scored positions (row-major order, as
        :func:`scored_logits` returns them).

        Example:
            >>> tokens = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8], [1, 2, 3, 4]])
            >>> shared = shared_sequences(tokens, torch.tensor([1, 3, 2]))
            >>> at, row, prompt, index = shared.scored_in(torch.tensor([1, 0]), 4)
            >>> at.int().tolist(), row.tolist(), prompt.tolist(), index.tolist()
            ([[0, 1, 0, 1], [0, 0, 1, 0]], [0, 0, 1], [0, 1, 2], [0, 1, 2])
        """
        rows = len(seq)
        row, prompt = (self.inverse[None, :] == seq[:, None]).nonzero(as_tuple=True)
        at = torch.zeros(rows, width, dtype=torch.bool)
        at[row, self.position[prompt]] = True
        slot = at.flatten().cumsum(0).reshape(rows, width) - 1
        return at, row, prompt, slot[row, self.position[prompt]]


def shared_sequences(tokens: Int[Tensor, "n pos"], position: Int[Tensor, " n"]) -> SharedSequences:
    """The distinct sequences of ``tokens`` read at ``position`` (:class:`SharedSequences`).

    Raises:
        IterationHeadsError: shapes that do not match, or a position outside the sequences.

    Example:
        >>> shared = shared_sequences(torch.tensor([[1, 2], [1, 2]]), torch.tensor([0, 1]))
        >>> shared.tokens.tolist(), shared.widths.tolist()
        ([[1, 2]], [2])
    """
    if tokens.ndim != 2 or position.shape != (len(tokens),):
        raise IterationHeadsError(
            f"tokens {tuple(tokens.shape)} and positions {tuple(position.shape)}: expected "
            "[n, pos] and [n]"
        )
    if len(position) and not 0 <= int(position.min()) <= int(position.max()) < tokens.shape[1]:
        raise IterationHeadsError(
            f"positions {int(position.min())}..{int(position.max())}: expected 0..{tokens.shape[1] - 1}"
        )
    distinct, inverse = tokens.unique(dim=0, return_inverse=True)
    widths = torch.zeros(len(distinct), dtype=torch.long)
    widths.scatter_reduce_(0, inverse, position.long() + 1, reduce="amax")
    return SharedSequences(distinct, widths, inverse, position.long())


_SKIPPING: weakref.WeakKeyDictionary[torch.nn.Module, str | None] = weakref.WeakKeyDictionary()
"""Per model: how its blocks return the residual stream ("tensor" or "tuple") where passing
blocks through is exact, None where it is not."""


@contextmanager
def _patched_blocks(model: Any, start: int, returns: str) -> Iterator[None]:
    def pass_through(*args: Any, **kwargs: Any) -> Any:
        hidden = args[0] if args else kwargs["hidden_states"]
        return hidden if returns == "tensor" else (hidden,)

    components = [getattr(block, "original_component", None) for block in model.blocks[:start]]
    patched = [c for c in components if isinstance(c, torch.nn.Module)]
    try:
        for component in patched:
            component.forward = pass_through
        yield
    finally:

        def restore() -> None:
            for component in patched:
                vars(component).pop("forward", None)

        run_to_the_end(restore)


def _skipping(model: Any) -> str | None:
    """Run a random residual stream from layer 1 with and without block 0 passed through:
    how block 0 returns its output, when both give the same logits (else None)."""
    first = getattr(model.blocks[0], "original_component", None)
    if not isinstance(first, torch.nn.Module):
        return None
    outputs: list[Any] = []
    resid = torch.randn(2, 3, int(model.cfg.d_model), generator=torch.Generator().manual_seed(0))
    resid = resid.to(device_of(model))
    before = set(first._forward_hooks)
    try:
        handle = first.register_forward_hook(lambda module, args, output: outputs.append(output))
        with evaluating(model):
            expected = model(resid, start_at_layer=1)
            handle.remove()
            out = outputs[0] if outputs else None
            if isinstance(out, Tensor):
                returns = "tensor"
            elif isinstance(out, tuple) and len(out) == 1 and isinstance(out[0], Tensor):
                returns = "tuple"
            else:
                return None
            with _patched_blocks(model, 1, returns):
                fast = model(resid, start_at_layer=1)
    except Exception:  # any failure: run such a model the usual way
        return None
    finally:
        # also a hook registered by a call that an interrupt cut short (no handle returned)
        run_to_the_end(lambda: _drop_hooks_since(first, before))
    return returns if torch.allclose(fast, expected, atol=1e-5, rtol=1e-4) else None


def _drop_hooks_since(module: torch.nn.Module, before: set[int]) -> None:
    """Remove the forward hooks registered on ``module`` since its keys were ``before``."""
    for name in ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
        hooks = getattr(module, name, {})
        for key in [k for k in hooks if k not in before]:
            del hooks[key]


def blocks_skipped(model: Any, start: int) -> AbstractContextManager[None]:
    """A context in which a forward pass with ``start_at_layer=start`` does not compute the
    blocks before ``start``.

    A ``TransformerBridge`` resumes at a layer by running the whole model and swapping the given
    residual stream in at that block: the blocks before it compute a result that is thrown away.
    Inside this context those blocks pass their input through instead. It is used only where
    it is exact: the first time per model, a random residual stream is run both ways and the
    logits compared; a model where they differ (or that has no ``blocks``) runs as usual.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4)).eval()
        >>> resid = torch.randn(2, 11, 32)
        >>> with blocks_skipped(model, 1):
        ...     fast = model(resid, start_at_layer=1)
        >>> bool(torch.allclose(fast, model(resid, start_at_layer=1), atol=1e-6))
        True
    """
    blocks = getattr(model, "blocks", None)
    if start < 1 or not isinstance(blocks, torch.nn.ModuleList) or start >= len(blocks):
        return nullcontext()
    if model not in _SKIPPING:
        _SKIPPING[model] = _skipping(model)
    returns = _SKIPPING[model]
    return nullcontext() if returns is None else _patched_blocks(model, start, returns)


class _Reached(Exception):
    """Raised by the hook that captures the activation a pass stops at."""


def activation_at(
    model: Any,
    inputs: Tensor,
    name: str,
    *,
    hooks: Sequence[tuple[str, Callable]] = (),
    start_at_layer: int | None = None,
) -> Tensor:
    """The value of the hook ``name`` (after ``hooks`` at it, if any) in a forward pass that
    stops there: nothing after it is computed. ``inputs`` are token ids, or the residual stream
    entering ``start_at_layer`` (the blocks before it are skipped where that is exact,
    :func:`blocks_skipped`); ``hooks`` are attached for the pass and removed after, also on
    error.

    Raises:
        IterationHeadsError: the pass ended without firing ``name``.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4)).eval()
        >>> tokens = torch.randint(0, 16, (2, 11))
        >>> resid = activation_at(model, tokens, "blocks.1.hook_resid_pre")
        >>> pattern = activation_at(model, resid, "blocks.1.attn.hook_pattern", start_at_layer=1)
        >>> _, cache = model.run_with_cache(tokens)
        >>> bool(torch.allclose(pattern, cache["blocks.1.attn.hook_pattern"], atol=1e-6))
        True
    """
    options = {} if start_at_layer is None else {"start_at_layer": start_at_layer}
    captured: list[Tensor] = []

    def stop(value: Tensor, hook: Any) -> None:
        captured.append(value)
        raise _Reached

    skipped = blocks_skipped(model, start_at_layer or 0)  # may run its check: before the hooks
    try:
        with attached_hooks(model, [*hooks, (name, stop)]), skipped:
            model(inputs, **options)
    except _Reached:
        pass
    if not captured:
        raise IterationHeadsError(
            f"running {type(model).__name__} did not fire the hook {name!r}; expected a "
            "TransformerLens model that has it"
        )
    return captured[0]


def final_residual(
    model: Any,
    inputs: Tensor,
    *,
    hooks: Sequence[tuple[str, Callable]] = (),
    start_at_layer: int | None = None,
) -> Float[Tensor, "batch pos d_model"] | None:
    """The residual stream after the final normalisation (what the unembedding reads), from a
    forward pass stopped there (:func:`activation_at`): the unembedding is not computed. None
    for a model without the hook ``ln_final.hook_out``.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4)).eval()
        >>> tokens = torch.randint(0, 16, (2, 11))
        >>> bool(torch.allclose(model.unembed(final_residual(model, tokens)), model(tokens), atol=1e-6))
        True
    """
    if FINAL_NORM_HOOK not in getattr(model, "hook_dict", {}):
        return None
    try:
        return activation_at(
            model, inputs, FINAL_NORM_HOOK, hooks=hooks, start_at_layer=start_at_layer
        )
    except IterationHeadsError:
        raise IterationHeadsError(
            f"running the model did not fire {FINAL_NORM_HOOK}; expected a TransformerLens "
            "model whose final normalisation feeds the unembedding"
        ) from None


def scored_logits(
    model: Any,
    inputs: Tensor,
    scored: Bool[Tensor, "batch pos"],
    *,
    hooks: Sequence[tuple[str, Callable]] = (),
    start_at_layer: int | None = None,
) -> Float[Tensor, "scored vocab"]:
    """The logits at the ``scored`` positions only, in row-major order: only those positions
    are unembedded (:func:`final_residual`; for a large vocabulary the unembedding of every
    position costs as much as several layers). The logits are those of a whole forward pass.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4)).eval()
        >>> tokens = torch.randint(0, 16, (2, 11))
        >>> scored = torch.zeros(2, 11, dtype=torch.bool)
        >>> scored[:, 6:9] = True
        >>> bool(torch.allclose(scored_logits(model, tokens, scored), model(tokens)[scored], atol=1e-6))
        True
    """
    resid = final_residual(model, inputs, hooks=hooks, start_at_layer=start_at_layer)
    if resid is None:
        options = {} if start_at_layer is None else {"start_at_layer": start_at_layer}
        skipped = blocks_skipped(model, start_at_layer or 0)
        with attached_hooks(model, list(hooks)), skipped:
            return model(inputs, **options)[scored]
    return model.unembed(resid[scored])
