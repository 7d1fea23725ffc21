"""The causal check that matches head patching: noise the named heads (their output in the
clean run replaced, at every position, by the corrupted run's) against as many random heads.

Head patching restores one head at a time into the corrupted run ("denoising"): it finds the
heads that carry the corrupted name. Noising asks the converse on the clean run: with the named
heads fed the corrupted prompt, does the answer break? Unlike mean ablation, a head whose
output does not depend on the corrupted token is untouched by noising, so heads that only track
the prompt's structure cannot fake an effect, and random heads are a fair control.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from iteration_heads._torch import Head, device_of, evaluating, z_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.memory import analysis_rows, batch_rows
from iteration_heads.passes import (
    SharedSequences,
    passes_by_width,
    scored_logits,
    shared_sequences,
)
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.pathways.random_control import AblationCheck, random_head_sets


def noising_check(
    model: Any,
    prompts: Prompts,
    heads: Sequence[Head],
    *,
    n_random: int = 20,
    seed: int = 0,
    batch_size: int | None = None,
) -> AblationCheck:
    """Noise exactly ``heads`` (clean run, their ``hook_z`` taken from the corrupted run at
    every position), and in ``n_random`` seeded draws as many random other heads: agreement
    with the clean model's top-1 and accuracy of each, per label. ``batch_size`` rows per
    forward pass (None: sized to the memory budget, :func:`~iteration_heads.memory.analysis_rows`).

    Raises:
        IterationHeadsError: prompts without corruption, a head that does not exist, fewer
            other heads than named ones, or a bad option.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> check = noising_check(model, iteration_prompts(data.test, data.layout), [(1, 0)],
        ...                       n_random=1)
        >>> check.accuracy < 0.3 < check.random_accuracy.min().item()
        True
    """
    if not isinstance(prompts, Prompts):
        raise IterationHeadsError(f"prompts must be Prompts, got {type(prompts).__name__}")
    corrupted = prompts.need_corrupted("a noising check")
    batch_rows(batch_size, 1)  # checked before any work
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    named, draws = random_head_sets(model, heads, n_random=n_random, seed=seed)
    masks = torch.zeros(1 + n_random, n_layers, n_heads, dtype=torch.bool)  # True: noised
    for v, chosen in enumerate([named, *draws]):
        for layer, head in chosen:
            masks[v, layer, head] = True
    shared, clean_plan, row_plan, variant_plan = noising_passes(
        model, prompts, 1 + n_random, batch_size
    )
    device, n = device_of(model), len(prompts)
    names = [z_hook(layer) for layer in range(n_layers)]
    top = torch.zeros(n, dtype=torch.long)
    noisy: dict[str, Tensor] = {}  # the corrupted run's hook_z
    size = (n, int(prompts.position.max()) + 1)
    with evaluating(model):
        for seq, width in clean_plan:  # prompts that share a sequence read it once
            at, _, prompt, slot = shared.scored_in(seq, width)
            logits = scored_logits(model, shared.tokens[seq, :width].to(device), at.to(device))
            top[prompt] = logits.argmax(-1).cpu()[slot]
        for rows, width in row_plan:
            keep = [(name, _keep(noisy, name, rows, size)) for name in names]
            tokens = corrupted[rows, :width]
            at = _studied(prompts, rows, width).to(device)
            scored_logits(model, tokens.to(device), at, hooks=keep)
        predictions = torch.zeros(1 + n_random, n, dtype=torch.long)
        for variant, seq, width in variant_plan:
            hooks = [
                (z_hook(layer), _noise(masks[variant, layer], noisy[z_hook(layer)][seq.to(device)]))
                for layer in range(n_layers)
                if bool(masks[variant, layer].any())
            ]
            tokens = prompts.clean[seq, :width].to(device)
            at = _studied(prompts, seq, width).to(device)
            predictions[variant, seq] = (
                scored_logits(model, tokens, at, hooks=hooks).argmax(-1).cpu()
            )
    return AblationCheck.of(named, draws, predictions, top, prompts, method="noising")


def noising_passes(
    model: Any, prompts: Prompts, variants: int, batch_size: int | None = None
) -> tuple[
    SharedSequences,
    list[tuple[Int[Tensor, " rows"], int]],
    list[tuple[Int[Tensor, " rows"], int]],
    list[tuple[Int[Tensor, " rows"], Int[Tensor, " rows"], int]],
]:
    """The forward passes of :func:`noising_check` with ``variants`` head sets: the clean
    passes ``(sequences, width)`` (prompts that share a sequence read it once), the corrupted
    passes ``(prompts, width)`` and the noised ones ``(variant, prompts, width)``, each prompt
    run up to its studied position, grouped by width.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> _, clean, corrupted, noised = noising_passes(zoo.load("polynomial_paper"), prompts, 3)
        >>> [sum(len(p[0]) for p in clean), sum(len(p[0]) for p in corrupted)]
        [62, 288]
        >>> sum(len(v) for v, _, _ in noised)
        864
    """
    cut = int(prompts.position.max()) + 1  # causal: later positions change nothing studied
    size = batch_rows(batch_size, analysis_rows(model, cut))
    d_model = int(model.cfg.d_model)
    shared = shared_sequences(prompts.clean, prompts.position)
    clean = [(seq, width) for _, seq, width in shared.plan(1, size, d_model)]
    widths = prompts.position + 1
    rows = passes_by_width(widths, d_model, size)
    variant = torch.arange(variants).repeat_interleave(len(prompts))
    seq = torch.arange(len(prompts)).repeat(variants)
    planned = passes_by_width(widths[seq], d_model, size)
    return shared, clean, rows, [(variant[j], seq[j], w) for j, w in planned]


def _studied(prompts: Prompts, rows: Tensor, width: int) -> Tensor:
    """The studied position of each of ``rows`` in a pass of ``width`` positions."""
    at = torch.zeros(len(rows), width, dtype=torch.bool)
    at[torch.arange(len(rows)), prompts.position[rows]] = True
    return at


def _keep(
    noisy: dict[str, Tensor], name: str, rows: Tensor, size: tuple[int, int]
) -> Callable[[Tensor, Any], None]:
    """A hook storing its value at ``rows`` of ``noisy[name]``, allocated ``[*size, ...]`` on
    first use (positions past a row's pass stay zero: no noised pass reads them)."""

    def hook(value: Tensor, hook: Any) -> None:
        if name not in noisy:
            noisy[name] = value.new_zeros(*size, *value.shape[2:])
        noisy[name][rows.to(value.device), : value.shape[1]] = value.detach()

    return hook


def _noise(noised: Tensor, value: Tensor) -> Callable[[Tensor, Any], Tensor]:
    """A ``hook_z`` hook: the heads ``noised`` ``[rows, head]`` take ``value`` ``[rows, pos,
    head, d_head]``."""

    def hook(z: Tensor, hook: Any) -> Tensor:
        mask = noised.to(z.device)[:, None, :, None]
        return torch.where(mask, value[:, : z.shape[1]].to(z.dtype), z)

    return hook
