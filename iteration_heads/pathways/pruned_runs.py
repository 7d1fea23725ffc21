"""Runs of the prompts with heads mean-ablated, many variants at a time: what pruning curves,
their bisection and the ablation check spend their time on.

Each variant keeps a set of heads and replaces every other head's output (``hook_z``) by its
reference mean at every position. That treats every row of a pass alike, so prompts that study
several positions of one sequence (the steps of one chain of thought) share a row
(:class:`~iteration_heads.passes.SharedSequences`): each distinct sequence runs once per
variant, up to its last studied position, and only the studied positions are unembedded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from iteration_heads._torch import Head, device_of, evaluating, z_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import check_token_ids
from iteration_heads.memory import analysis_rows, batch_rows
from iteration_heads.passes import SharedSequences, scored_logits, shared_sequences
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.pathways.reference import MeanKind, reference_means


def kept_mask(model: Any, kept: Sequence[Head]) -> Bool[Tensor, "layer head"]:
    """True at the heads of ``kept``, a variant of :class:`PrunedRuns`.

    Example:
        >>> from iteration_heads import zoo
        >>> kept_mask(zoo.load("polynomial_paper"), [(1, 0)]).tolist()
        [[False], [True]]
    """
    mask = torch.zeros(int(model.cfg.n_layers), int(model.cfg.n_heads), dtype=torch.bool)
    for layer, head in kept:
        mask[layer, head] = True
    return mask


def pruned_passes(
    model: Any, prompts: Prompts, variants: int, batch_size: int | None = None
) -> list[tuple[Int[Tensor, " rows"], Int[Tensor, " rows"], int]]:
    """The forward passes ``(variant, sequence, width)`` of :class:`PrunedRuns` running
    ``variants`` variants (not counting the full model's pass): each distinct sequence of the
    prompts once per variant, grouped by width.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model, data = zoo.load("polynomial_paper"), make_dataset(DataConfig(max_len=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> len(prompts), sum(len(v) for v, _, _ in pruned_passes(model, prompts, 2))
        (288, 122)
    """
    return _plan(model, shared_sequences(prompts.clean, prompts.position), variants, batch_size)


def _plan(
    model: Any, shared: SharedSequences, variants: int, batch_size: int | None
) -> list[tuple[Tensor, Tensor, int]]:
    """:func:`pruned_passes` of sequences already grouped."""
    size = batch_rows(batch_size, analysis_rows(model, int(shared.widths.max())))
    return shared.plan(variants, size, int(model.cfg.d_model))


class PrunedRuns:
    """Runs of ``prompts`` with heads mean-ablated, many variants at a time (module docstring);
    reference means computed once (``mean``, ``mask`` as in
    :func:`~iteration_heads.pathways.pruning_curve`); ``full``: the full model's argmax at each
    studied position.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> model, data = zoo.load("polynomial_paper"), make_dataset(DataConfig(max_len=8, n_test=8))
        >>> from iteration_heads.pathways import iteration_prompts
        >>> runs = PrunedRuns(model, iteration_prompts(data.test, data.layout), data.train.tokens, None)
        >>> top, passes = runs.run(kept_mask(model, [(1, 0)])[None], True)  # L1H0 kept
        >>> bool((top[0] == runs.full).float().mean() < 0.5) and passes >= 1
        True
    """

    def __init__(
        self,
        model: Any,
        prompts: Prompts,
        reference: Any,
        batch_size: int | None,
        mean: MeanKind = "position",
        mask: Any = None,
    ) -> None:
        if not isinstance(prompts, Prompts):
            raise IterationHeadsError(f"prompts must be Prompts, got {type(prompts).__name__}")
        batch_rows(batch_size, 1)  # checked before any work
        d_vocab = getattr(model.cfg, "d_vocab", None)
        if isinstance(d_vocab, int):
            check_token_ids(prompts.clean, d_vocab, "prompt token")
        self.model, self.prompts, self.batch_size = model, prompts, batch_size
        self.shared: SharedSequences = shared_sequences(prompts.clean, prompts.position)
        cut = int(self.shared.widths.max())
        self.full = torch.zeros(len(prompts), dtype=torch.long)  # set below
        means = reference_means(
            model, reference, mean=mean, reference_mask=mask, width=prompts.clean.shape[1],
            batch_size=batch_size,
        )  # fmt: skip
        self.means = {layer: m[:cut] for layer, m in means.items()}  # pos head d_head
        every = torch.ones(1, len(means), int(model.cfg.n_heads), dtype=torch.bool)
        self.full = self.run(every, False)[0][0].argmax(-1)

    def run(self, masks: Bool[Tensor, "v layer head"], argmax: bool) -> tuple[Tensor, int]:
        """Logits ``[v, n, vocab]`` of every variant, or with ``argmax`` their argmax ``[v, n]``
        (variants that keep every head are then the full model's, not run), and the passes."""
        model, n, shared = self.model, len(self.prompts), self.shared
        unique, inverse = masks.flatten(1).unique(dim=0, return_inverse=True)
        unique = unique.reshape(-1, *masks.shape[1:])
        todo = torch.tensor(
            [v for v in range(len(unique)) if not (argmax and bool(unique[v].all()))],
            dtype=torch.long,
        )
        done = self.full[None].repeat(len(unique), 1) if argmax else None
        device, passes = device_of(model), 0
        plan = _plan(model, shared, len(todo), self.batch_size)
        with evaluating(model):
            for index, seq, width in plan:
                variant = todo[index]
                keep = unique[variant]  # rows layer head
                hooks = [
                    (z_hook(lay), _ablate(keep[:, lay], mean)) for lay, mean in self.means.items()
                ]
                at, row, prompt, slot = shared.scored_in(seq, width)
                tokens = shared.tokens[seq, :width].to(device)
                out = scored_logits(model, tokens, at.to(device), hooks=hooks).cpu()[slot]
                out = out.argmax(-1) if argmax else out
                if done is None:
                    done = out.new_zeros((len(unique), n, *out.shape[1:]))
                done[variant[row], prompt] = out
                passes += 1
        assert done is not None
        return done[inverse], passes


def _ablate(keep: Tensor, mean: Tensor) -> Any:
    """A ``hook_z`` hook: every row's heads not kept (``keep`` ``[rows, head]``) take ``mean``."""

    def hook(z: Tensor, hook: Any) -> Tensor:
        kept = keep.to(z.device)[:, None, :, None]
        return torch.where(kept, z, mean[None, : z.shape[1]].to(z.device, z.dtype))

    return hook
