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
from torch import Tensor

from iteration_heads._torch import Head, device_of, evaluating, z_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.memory import analysis_rows, batch_rows
from iteration_heads.passes import scored_logits
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
    cut = int(prompts.position.max()) + 1  # causal: later positions change nothing studied
    size = batch_rows(batch_size, analysis_rows(model, cut))
    device = device_of(model)
    names = [z_hook(layer) for layer in range(n_layers)]
    clean_top: list[Tensor] = []
    parts: dict[str, list[Tensor]] = {name: [] for name in names}
    with evaluating(model):
        for seq in torch.arange(len(prompts)).split(size):
            at = torch.zeros(len(seq), cut, dtype=torch.bool)
            at[torch.arange(len(seq)), prompts.position[seq]] = True
            clean = scored_logits(model, prompts.clean[seq, :cut].to(device), at)
            clean_top.append(clean.argmax(-1).cpu())
            keep = [(name, _keep(parts[name])) for name in names]  # the corrupted run's hook_z
            scored_logits(model, corrupted[seq, :cut].to(device), at, hooks=keep)
        noisy = {name: torch.cat(values) for name, values in parts.items()}
        predictions = _noised_predictions(model, prompts, masks, noisy, cut, size)
    top = torch.cat(clean_top)
    return AblationCheck.of(named, draws, predictions, top, prompts, method="noising")


def _noised_predictions(
    model: Any, prompts: Prompts, masks: Tensor, noisy: Any, cut: int, batch_size: int
) -> Tensor:
    """Top-1 at each prompt's position ``[variant, n]`` with the heads of each mask noised."""
    n = len(prompts)
    pairs = torch.tensor([(v, i) for v in range(len(masks)) for i in range(n)])
    out = torch.zeros(len(masks), n, dtype=torch.long)
    device = device_of(model)
    for chunk in pairs.split(batch_size):
        variant, seq = chunk[:, 0], chunk[:, 1]
        hooks = [
            (z_hook(layer), _noise(masks[variant, layer], noisy[z_hook(layer)][seq.to(device)]))
            for layer in range(masks.shape[1])
            if bool(masks[variant, layer].any())
        ]
        tokens = prompts.clean[seq, :cut]
        at = torch.zeros(tokens.shape, dtype=torch.bool)
        at[torch.arange(len(seq)), prompts.position[seq]] = True
        out[variant, seq] = (
            scored_logits(model, tokens.to(device), at, hooks=hooks).argmax(-1).cpu()
        )
    return out


def _keep(store: list[Tensor]) -> Callable[[Tensor, Any], None]:
    def hook(value: Tensor, hook: Any) -> None:
        store.append(value.detach())

    return hook


def _noise(noised: Tensor, value: Tensor) -> Callable[[Tensor, Any], Tensor]:
    """A ``hook_z`` hook: the heads ``noised`` ``[rows, head]`` take ``value`` ``[rows, pos,
    head, d_head]``."""

    def hook(z: Tensor, hook: Any) -> Tensor:
        mask = noised.to(z.device)[:, None, :, None]
        return torch.where(mask, value[:, : z.shape[1]].to(z.dtype), z)

    return hook
