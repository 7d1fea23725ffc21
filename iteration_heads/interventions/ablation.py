"""Head ablation: replace a head's output by zero, its mean, or its value in other sequences.

Every intervention edits a head's own output or pattern through TransformerLens hooks, so it works
on native and HuggingFace-wrapped ``TransformerBridge`` models alike and needs none of the flags
native models lack (``hook_result``, ``set_use_attn_result``):

* a head's output is its slice of ``blocks.{layer}.attn.hook_z`` ``[batch, pos, head, d_head]``
  (the head writes ``z @ W_O[head]`` to the residual stream);
* a head's pattern is its slice of ``blocks.{layer}.attn.hook_pattern`` ``[batch, head, q, k]``.

:func:`ablate` is a context manager (zero, mean or resampled output, at all or chosen positions);
:func:`ablation_effect` runs a batch with and without it and scores the chain of thought
(:class:`~iteration_heads.interventions.scores.Effect`). Models are left as found: mode and hooks,
also after an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from iteration_heads._torch import (
    Head,
    attached_hooks,
    cached_run,
    check_heads,
    device_of,
    evaluating,
    head_names,
    z_hook,
)
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import (
    BATCH_SIZE,
    Data,
    as_batch,
    check_kind,
    check_positions,
    check_token_ids,
    integer_tensor,
    scored_widths,
)
from iteration_heads.interventions.scores import Effect, run_scored
from iteration_heads.tasks.task import check_int

AblationKind = Literal["zero", "mean", "resample"]
ABLATION_KINDS: tuple[str, ...] = ("zero", "mean", "resample")


def head_outputs(
    model: Any, tokens: Int[Tensor, "batch pos"], layers: Sequence[int], batch_size: int = 1024
) -> dict[int, Float[Tensor, "batch pos head d_head"]]:
    """``hook_z`` of ``layers`` for every sequence of ``tokens`` (eval mode, no gradients).

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> head_outputs(model, torch.randint(0, 16, (3, 11)), [1])[1].shape
        torch.Size([3, 11, 1, 32])
    """
    check_int("batch_size", batch_size, minimum=1)
    for layer in layers:
        check_int("layers", layer, minimum=0, maximum=int(model.cfg.n_layers) - 1)
    names = {z_hook(layer): layer for layer in layers}
    parts: dict[int, list[Tensor]] = {layer: [] for layer in layers}
    device = device_of(model)
    with evaluating(model):
        for chunk in tokens.split(batch_size):
            _, cache = cached_run(model, chunk.to(device), names_filter=lambda n: n in names)
            for name, layer in names.items():
                parts[layer].append(cache[name])
    return {layer: torch.cat(p) for layer, p in parts.items()}


def _ablation_hooks(
    specs: list[Head],
    kind: str,
    positions: list[int] | None,
    reference: dict[int, Tensor] | None,
    generator: torch.Generator,
    start: int = 0,
) -> list[tuple[str, Callable]]:
    """One ``hook_z`` hook per layer replacing the heads' output (see :func:`ablate`). For
    resample ablation the first ablated layer draws each row's source row, and the later layers
    of the same forward pass take that row too."""
    hooks = []
    layers = sorted({layer for layer, _ in specs})
    drawn: dict[str, Tensor] = {}
    for layer in layers:
        heads = [h for lay, h in specs if lay == layer]

        def hook(z: Tensor, hook: Any, layer: int = layer, heads: list[int] = heads) -> Tensor:
            batch, width = z.shape[:2]
            pos = list(range(width)) if positions is None else [p for p in positions if p < width]
            if kind == "zero":
                new = torch.zeros_like(z[:, pos][:, :, heads])
            else:
                assert reference is not None
                ref = reference[layer]
                if ref.shape[1] < width:
                    raise IterationHeadsError(
                        f"reference sequences of width {ref.shape[1]} are shorter than the run's "
                        f"{width}: pass a reference batch at least as wide"
                    )
                ref = ref[:, pos][:, :, heads].to(z.device, z.dtype)
                if kind == "mean":
                    new = ref.mean(0, keepdim=True).expand(batch, -1, -1, -1)
                else:  # resample: row i takes row (start + i + offset) of the reference
                    n_ref = ref.shape[0]
                    if layer == layers[0] or len(drawn.get("offset", ())) != batch:
                        drawn["offset"] = resample_offsets(batch, n_ref, batch, generator)
                    rows = (start + torch.arange(batch) + drawn["offset"]) % n_ref
                    new = ref[rows.to(ref.device)]
            z = z.clone()
            index = torch.tensor(pos, device=z.device)[:, None]
            z[:, index, torch.tensor(heads, device=z.device)] = new
            return z

        hooks.append((z_hook(layer), hook))
    return hooks


def resample_offsets(
    n_rows: int, n_ref: int, batch_size: int, generator: torch.Generator
) -> Int[Tensor, " rows"]:
    """For resample ablation, row ``j`` takes the reference row ``(j + offset_j) % n_ref``:
    offsets in ``1 .. n_ref - 1`` (so that no row keeps its own output when the reference is
    the batch itself), drawn ``batch_size`` rows at a time as the batches run.

    Example:
        >>> offsets = resample_offsets(5, 4, 2, torch.Generator().manual_seed(0))
        >>> len(offsets), bool(((offsets >= 1) & (offsets <= 3)).all())
        (5, True)
    """
    parts = [
        torch.randint(1, max(n_ref, 2), (min(batch_size, n_rows - start),), generator=generator)
        for start in range(0, n_rows, batch_size)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def _prepare_ablation(
    model: Any,
    heads: Sequence[Head] | Head,
    kind: str,
    positions: int | Sequence[int] | None,
    reference: Int[Tensor, "batch pos"] | None,
    batch_size: int,
    widths: Int[Tensor, " batch"] | None = None,
) -> tuple[list[Head], list[int] | None, dict[int, Tensor] | None]:
    check_kind(kind, ABLATION_KINDS, "ablation kind")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise IterationHeadsError(f"batch_size={batch_size!r}, expected an integer >= 1")
    specs = check_heads(model, heads)
    width = getattr(model.cfg, "n_ctx", None)
    pos = check_positions(positions, width if isinstance(width, int) else None)
    ref = None
    if kind != "zero":
        if reference is None:
            raise IterationHeadsError(
                f"{kind} ablation needs reference=tokens [batch, pos] to take the head outputs from"
            )
        reference = integer_tensor(reference, "reference")
        if reference.ndim != 2 or len(reference) < 2:
            raise IterationHeadsError(
                f"reference must be token ids [batch >= 2, pos], got shape {tuple(reference.shape)}"
            )
        d_vocab = getattr(model.cfg, "d_vocab", None)
        if isinstance(d_vocab, int):
            check_token_ids(reference, d_vocab, "reference token")
        layers = sorted({lay for lay, _ in specs})
        if kind == "mean":
            ref = head_output_means(model, reference, layers, batch_size, widths)
        else:
            ref = head_outputs(model, reference, layers, batch_size)
    return specs, pos, ref


@contextmanager
def ablate(
    model: Any,
    heads: Sequence[Head] | Head,
    *,
    kind: AblationKind = "zero",
    positions: int | Sequence[int] | None = None,
    reference: Int[Tensor, "batch pos"] | None = None,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Any]:
    """Ablate the output of ``heads`` inside the ``with`` block.

    The head's own output (its slice of ``blocks.{layer}.attn.hook_z``, before ``W_O``) is
    replaced at ``positions`` (None: all) by zero, by its mean over the ``reference`` sequences
    at the same position (``"mean"``), or by its value in another reference sequence
    (``"resample"``: row ``i`` of a forward pass takes reference row ``i + offset``, a random
    ``offset`` in ``1 .. n_ref - 1``, so when the reference is the batch itself no sequence
    keeps its own output).

    Args:
        model: A TransformerLens bridge (native or wrapped HuggingFace) or ``HookedTransformer``.
        heads: ``(layer, head)`` or a list of them.
        kind: ``"zero"``, ``"mean"`` or ``"resample"``.
        positions: Positions to ablate (None: every position).
        reference: Token ids whose head outputs feed mean and resample ablation (run once, on
            entry); at least as wide as the batches run inside the block.
        seed: Seeds the resampling.
        batch_size: Reference sequences per forward pass.

    Yields:
        The model, with the ablation hooks attached; they are removed on exit, also on error.

    Raises:
        IterationHeadsError: for a head that does not exist, an unknown kind, bad positions, or
            a missing reference; nothing stays attached.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> tokens = torch.randint(0, 16, (4, 11))
        >>> with ablate(model, heads=[(1, 0)], kind="mean", reference=tokens):
        ...     ablated = model(tokens)
        >>> ablated.shape, bool((ablated != model(tokens)).any())
        (torch.Size([4, 11, 16]), True)
    """
    check_int("seed", seed, minimum=0)
    specs, pos, ref = _prepare_ablation(model, heads, kind, positions, reference, batch_size)
    generator = torch.Generator().manual_seed(seed)
    with attached_hooks(model, _ablation_hooks(specs, kind, pos, ref, generator)):
        yield model


def ablation_effect(
    model: Any,
    heads: Sequence[Head] | Head,
    data: Data = None,
    *,
    kind: AblationKind = "mean",
    positions: int | Sequence[int] | None = None,
    reference: Int[Tensor, "batch pos"] | None = None,
    n: int | None = None,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> Effect:
    """Score ``data`` with and without ablating ``heads`` (see :func:`ablate`).

    ``reference`` defaults to the data's own tokens (mean over the batch; resample from other
    sequences of the batch). Cost: two forward passes over the data (three for mean and
    resample ablation).

    Returns:
        An :class:`Effect`: sequence accuracy, token accuracy, loss and logit difference of the
        correct token on the scored positions, clean and ablated.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=16)).test
        >>> effect = ablation_effect(model, [(0, 0)], split, kind="zero")
        >>> sorted(effect.summary()["change"])
        ['accuracy', 'logit_diff', 'loss', 'token_accuracy']
    """
    check_int("seed", seed, minimum=0)
    batch = as_batch(model, data, n=n)
    ref_tokens = batch.tokens if reference is None else reference
    widths = scored_widths(batch.targets) if reference is None else None
    specs, pos, ref = _prepare_ablation(
        model, heads, kind, positions, ref_tokens, batch_size, widths
    )
    generator = torch.Generator().manual_seed(seed)
    clean = run_scored(model, batch, batch_size=batch_size)
    ablated = run_scored(
        model,
        batch,
        lambda rows: _ablation_hooks(specs, kind, pos, ref, generator, rows.start),
        batch_size=batch_size,
    )
    where = "all positions" if pos is None else f"positions {pos}"
    return Effect(f"{kind} ablation of {head_names(specs)} at {where}", clean, ablated)


def head_output_means(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    layers: Sequence[int],
    batch_size: int = 1024,
    widths: Int[Tensor, " batch"] | None = None,
) -> dict[int, Float[Tensor, "1 pos head d_head"]]:
    """The mean over sequences of ``hook_z`` of ``layers`` at every position (one pass, without
    holding every sequence's output). With ``widths``, sequence ``i`` counts at positions
    ``< widths[i]`` only (the positions its scores depend on; padding enters no mean).

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> tokens = torch.randint(0, 16, (6, 11))
        >>> mean = head_output_means(model, tokens, [1], batch_size=4)[1]
        >>> bool(torch.allclose(mean, head_outputs(model, tokens, [1])[1].mean(0, keepdim=True),
        ...                     atol=1e-6))
        True
        >>> short = head_output_means(model, tokens, [1], widths=torch.tensor([3, 11, 11, 11, 11, 11]))
        >>> bool(torch.allclose(short[1][0, 5], head_outputs(model, tokens[1:], [1])[1][:, 5].mean(0),
        ...                     atol=1e-6))
        True
    """
    names = {z_hook(layer): layer for layer in layers}
    sums: dict[int, Tensor] = {}
    reach = torch.ones(tokens.shape, dtype=torch.float64)
    if widths is not None:
        reach = (torch.arange(tokens.shape[1])[None, :] < widths[:, None]).double()
    counts = reach.sum(0).clamp(min=1)[None, :, None, None]
    device = device_of(model)
    with evaluating(model):
        for chunk, weight in zip(tokens.split(batch_size), reach.split(batch_size), strict=True):
            _, cache = cached_run(model, chunk.to(device), names_filter=lambda n: n in names)
            for name, layer in names.items():
                part = (cache[name].double().cpu() * weight[:, :, None, None]).sum(0, keepdim=True)
                sums[layer] = part if layer not in sums else sums[layer] + part
    return {layer: (s / counts).float() for layer, s in sums.items()}
