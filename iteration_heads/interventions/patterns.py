"""Pattern interventions: plant an ideal or control attention pattern in heads (docs/paper.md §5).

The edited ``blocks.{layer}.attn.hook_pattern`` ``[batch, head, query, key]`` feeds
``pattern @ v``, so the head's output follows. Planting the ideal iteration pattern in the
iteration head of a trained model keeps its accuracy, a uniform or random one breaks it: the
paper's causal check that the head does what its pattern shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads._torch import Head, attached_hooks, check_heads, head_names, pattern_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import (
    BATCH_SIZE,
    Data,
    as_batch,
    check_kind,
    integer_tensor,
)
from iteration_heads.interventions.scores import Effect, run_scored
from iteration_heads.tasks.task import check_int

PATTERN_KINDS: tuple[str, ...] = ("iteration", "eoi", "uniform", "random")


def ideal_pattern(
    kind: str, lengths: Int[Tensor, " batch"], width: int, *, seed: int = 0
) -> tuple[Float[Tensor, "batch query key"], Bool[Tensor, "batch query"]]:
    """A planted pattern and the query rows it replaces, for sequences of input ``lengths``.

    * ``"iteration"``: query ``L+t`` attends to key ``t`` (``x_t``), ``t = 1..L``;
    * ``"eoi"``: queries ``L+2 .. 2L+1`` attend to the EoI key ``L+1``;
    * ``"uniform"`` / ``"random"``: the scored queries ``L+1 .. 2L+1`` spread their attention
      uniformly / with random causal weights over keys ``<= query``.

    Other rows are left to the model.

    Example:
        >>> pattern, rows = ideal_pattern("iteration", torch.tensor([2]), 7)
        >>> pattern[0].argmax(-1).tolist(), rows[0].int().tolist()
        ([0, 0, 0, 1, 2, 0, 0], [0, 0, 0, 1, 1, 0, 0])
    """
    check_int("seed", seed, minimum=0)
    check_kind(kind, PATTERN_KINDS, "pattern")
    lengths = lengths.long().cpu()
    if int((2 * lengths + 2).max()) > width:
        raise IterationHeadsError(
            f"sequences of length {int(lengths.max())} need width {2 * int(lengths.max()) + 2}, "
            f"got {width}"
        )
    q = torch.arange(width)[None, :, None]  # 1 query 1
    k = torch.arange(width)[None, None, :]  # 1 1 key
    L = lengths[:, None, None]
    if kind == "iteration":
        rows = (q > L) & (q <= 2 * L)
        pattern = (k == q - L).float()
    elif kind == "eoi":
        rows = (q >= L + 2) & (q <= 2 * L + 1)
        pattern = (k == L + 1).float().expand(-1, width, -1)
    else:
        rows = (q >= L + 1) & (q <= 2 * L + 1)
        causal = (k <= q).float()
        if kind == "uniform":
            weights = causal
        else:
            generator = torch.Generator().manual_seed(seed)
            weights = torch.rand(len(lengths), width, width, generator=generator) * causal
        pattern = weights / weights.sum(-1, keepdim=True)
    pattern = pattern.expand(len(lengths), width, width) * rows
    return pattern, rows[..., 0].expand(len(lengths), width)


PatternSource = Callable[[int], tuple[Tensor, Tensor]]
"""``width -> (pattern [batch, q, k], rows [batch, q])`` for runs of that width."""


def _pattern_source(pattern: str | Tensor, lengths: Tensor | None, seed: int) -> PatternSource:
    """Planted patterns, built for the width of each run (cached)."""
    if isinstance(pattern, str):
        check_kind(pattern, PATTERN_KINDS, "pattern")
        if lengths is None:
            raise IterationHeadsError(f"the {pattern!r} pattern needs the lengths of the batch")
        lengths = integer_tensor(lengths, "lengths")
        if lengths.ndim != 1 or not len(lengths) or int(lengths.min()) < 1:
            raise IterationHeadsError(
                f"lengths must be a 1-D tensor of input lengths >= 1, got {lengths.tolist()}"
            )
        cache: dict[int, tuple[Tensor, Tensor]] = {}

        def build(width: int) -> tuple[Tensor, Tensor]:
            if width not in cache:
                cache[width] = ideal_pattern(pattern, lengths, width, seed=seed)
            return cache[width]

        return build
    try:
        planted = torch.as_tensor(pattern).float()
    except (TypeError, ValueError, RuntimeError):
        raise IterationHeadsError(
            f"pattern must be one of {list(PATTERN_KINDS)} or a tensor [batch, query, key], "
            f"got {type(pattern).__name__}"
        ) from None
    if planted.ndim != 3 or planted.shape[1] != planted.shape[2]:
        raise IterationHeadsError(
            f"a planted pattern must have shape [batch, query, key], got {tuple(planted.shape)}"
        )
    if not bool(torch.isfinite(planted).all()) or bool((planted < 0).any()):
        bad = planted[~torch.isfinite(planted) | (planted < 0)][0].item()
        raise IterationHeadsError(
            f"a planted pattern holds {bad}; expected finite attention weights >= 0"
        )
    rows = torch.ones(planted.shape[:2], dtype=torch.bool)
    return lambda width: (planted, rows)


def _pattern_hooks(
    specs: list[Head], source: PatternSource, start: int = 0
) -> list[tuple[str, Callable]]:
    hooks = []
    for layer in sorted({layer for layer, _ in specs}):
        heads = [h for lay, h in specs if lay == layer]

        def hook(p: Tensor, hook: Any, heads: list[int] = heads) -> Tensor:
            batch, _, width, _ = p.shape
            pattern, rows = source(width)
            if start + batch > pattern.shape[0] or width > pattern.shape[1]:
                raise IterationHeadsError(
                    f"planted patterns cover {pattern.shape[0]} sequences of width "
                    f"{pattern.shape[1]}; the run has {batch} of width {width}"
                )
            new = pattern[start : start + batch, :width, :width].to(p.device, p.dtype)
            keep = rows[start : start + batch, :width].to(p.device)[:, :, None]
            p = p.clone()
            for h in heads:
                p[:, h] = torch.where(keep, new, p[:, h])
            return p

        hooks.append((pattern_hook(layer), hook))
    return hooks


@contextmanager
def patch_pattern(
    model: Any,
    heads: Sequence[Head] | Head,
    pattern: str | Float[Tensor, "batch query key"],
    *,
    lengths: Int[Tensor, " batch"] | None = None,
    seed: int = 0,
) -> Iterator[Any]:
    """Replace the attention pattern of ``heads`` inside the ``with`` block.

    ``pattern`` is ``"iteration"``, ``"eoi"``, ``"uniform"``, ``"random"`` (see
    :func:`ideal_pattern`; they need the ``lengths`` of the batch that will run, whose rows
    they follow in order; built for the width of each run) or a tensor ``[batch, query, key]``
    replacing every row. The edited
    ``blocks.{layer}.attn.hook_pattern`` feeds ``pattern @ v``, so the head's output follows.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> with patch_pattern(model, (1, 0), "iteration", lengths=split.lengths):
        ...     _, cache = model.run_with_cache(split.tokens)
        >>> L = int(split.lengths[-1])
        >>> float(cache["blocks.1.attn.hook_pattern"][-1, 0, L + 1, 1])
        1.0
    """
    check_int("seed", seed, minimum=0)
    specs = check_heads(model, heads)
    source = _pattern_source(pattern, lengths, seed)
    with attached_hooks(model, _pattern_hooks(specs, source)):
        yield model


def pattern_effect(
    model: Any,
    heads: Sequence[Head] | Head,
    pattern: str | Float[Tensor, "batch query key"],
    data: Data = None,
    *,
    n: int | None = None,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> Effect:
    """Score ``data`` with and without the planted ``pattern`` in ``heads`` (the paper's causal
    check: planting the ideal iteration pattern keeps accuracy, a uniform one breaks it).

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> pattern_effect(model, (1, 0), "uniform", split).description
        "'uniform' pattern planted in L1H0"
    """
    check_int("seed", seed, minimum=0)
    check_int("batch_size", batch_size, minimum=1)
    specs = check_heads(model, heads)
    if isinstance(pattern, str):
        check_kind(pattern, PATTERN_KINDS, "pattern")
    batch = as_batch(model, data, n=n)
    if isinstance(pattern, str):
        batch.need_lengths(f"the {pattern!r} pattern")
    source = _pattern_source(pattern, batch.lengths, seed)
    n_seq, width = batch.tokens.shape
    if source(width)[0].shape != (n_seq, width, width):
        raise IterationHeadsError(
            f"a planted pattern must have shape [batch={n_seq}, query={width}, key={width}], "
            f"got {tuple(source(width)[0].shape)}"
        )
    clean = run_scored(model, batch, batch_size=batch_size)
    new = run_scored(
        model, batch, lambda r: _pattern_hooks(specs, source, r.start), batch_size=batch_size
    )
    label = repr(pattern) if isinstance(pattern, str) else "custom"
    return Effect(f"{label} pattern planted in {head_names(specs)}", clean, new)
