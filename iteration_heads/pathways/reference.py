"""The means a mean ablation replaces a head's output with, over a reference batch, padding kept
out.

Pruning and the ablation check (:mod:`~iteration_heads.pathways.pruning`) replace a head's
output (its ``hook_z``) by its mean over ``reference`` sequences. ``reference_mask`` says which
reference positions hold real tokens (True) and which padding (False); None: every position is
real. Two means:

* ``"position"`` (Dutta et al.'s): one mean per position ``p`` over the reference sequences
  with a real token at ``p``; a position with none takes the sequence mean instead;
* ``"sequence"``: one mean vector per head over every real position of every reference
  sequence, the same at every position (for references whose positions do not line up with
  the prompts', such as text of other lengths).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads._torch import attached_hooks, device_of, evaluating, z_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import check_token_ids, integer_tensor
from iteration_heads.memory import analysis_rows, batch_rows
from iteration_heads.passes import final_residual, passes_by_width
from iteration_heads.tasks.task import check_int

MeanKind = Literal["position", "sequence"]
MEANS = ("position", "sequence")
"""The values of the ``mean`` option."""


def check_reference(
    model: Any, reference: Any, reference_mask: Any, mean: str, width: int
) -> tuple[Int[Tensor, "m pos"], Bool[Tensor, "m pos"]]:
    """The reference tokens and mask, checked: integer ids in the vocabulary ``[m >= 1, pos]``
    (at least ``width`` wide for per-position means), a boolean mask of the same shape with a
    real position somewhere, and ``mean`` one of :data:`MEANS`.

    Example:
        >>> from iteration_heads import zoo
        >>> tokens, mask = check_reference(zoo.load("polynomial_paper"), [[1, 2, 0]], None,
        ...                                "sequence", 5)
        >>> mask.tolist()
        [[True, True, True]]
    """
    if not isinstance(mean, str) or mean not in MEANS:
        raise IterationHeadsError(f"mean={mean!r}, expected one of {list(MEANS)}")
    reference = integer_tensor(reference, "reference")
    least = width if mean == "position" else 1
    if reference.ndim != 2 or len(reference) < 1 or reference.shape[1] < least:
        wide = " (at least as wide as the prompts)" if mean == "position" else ""
        raise IterationHeadsError(
            f"reference of shape {tuple(reference.shape)}: expected token ids [m >= 1, pos "
            f">= {least}]{wide}"
        )
    d_vocab = getattr(model.cfg, "d_vocab", None)
    if isinstance(d_vocab, int):
        check_token_ids(reference, d_vocab, "reference token")
    if reference_mask is None:
        return reference, torch.ones(reference.shape, dtype=torch.bool)
    if not isinstance(reference_mask, Tensor) or reference_mask.dtype != torch.bool:
        raise IterationHeadsError(
            f"reference_mask of type {getattr(reference_mask, 'dtype', type(reference_mask).__name__)}"
            ", expected a boolean tensor (True at real tokens)"
        )
    if reference_mask.shape != reference.shape:
        raise IterationHeadsError(
            f"reference_mask of shape {tuple(reference_mask.shape)}, expected the reference's "
            f"{tuple(reference.shape)}"
        )
    if not bool(reference_mask.any()):
        raise IterationHeadsError("reference_mask marks no position as a real token")
    return reference, reference_mask.cpu()


def reference_means(
    model: Any,
    reference: Int[Tensor, "m pos"],
    *,
    mean: MeanKind = "position",
    reference_mask: Bool[Tensor, "m pos"] | None = None,
    width: int | None = None,
    batch_size: int | None = None,
) -> dict[int, Float[Tensor, "pos head d_head"]]:
    """Per layer, the mean ``hook_z`` of every head over the real positions of ``reference``
    (module docstring), at each of ``width`` positions (default: the reference's width).

    Example:
        >>> from iteration_heads import zoo
        >>> model = zoo.load("polynomial_paper")
        >>> reference = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
        >>> real = reference != 0
        >>> by_position = reference_means(model, reference, reference_mask=real)
        >>> whole = reference_means(model, reference, mean="sequence", reference_mask=real)
        >>> by_position[0].shape, bool(torch.equal(whole[1][0], whole[1][3]))
        (torch.Size([4, 1, 64]), True)
        >>> bool(torch.allclose(by_position[1][3], whole[1][3]))  # no real token: sequence mean
        True
    """
    size = reference.shape[1] if width is None else width
    check_int("width", size, minimum=1)
    batch_rows(batch_size, 1)  # checked before any work
    tokens, mask = check_reference(model, reference, reference_mask, mean, size)
    if mean == "position":
        tokens, mask = tokens[:, :size], mask[:, :size]
    batch_size = batch_rows(batch_size, analysis_rows(model, tokens.shape[1]))
    distinct, weight_all, plan = reference_passes(model, tokens, mask, batch_size)
    names = {z_hook(layer): layer for layer in range(int(model.cfg.n_layers))}
    sums: dict[int, Tensor] = {}
    with evaluating(model):
        for rows, width in plan:
            weight = weight_all[rows, :width]
            hooks = [
                (name, _summed_into(sums, layer, weight, tokens.shape[1]))
                for name, layer in names.items()
            ]
            inputs = distinct[rows, :width].to(device_of(model))
            if final_residual(model, inputs, hooks=hooks) is None:  # no final-norm hook
                with attached_hooks(model, hooks):
                    model(inputs)
    counts = weight_all.sum(0)  # real tokens per position
    means = {}
    for layer, total in sums.items():
        whole = total.sum(0) / counts.sum()  # head d_head
        if mean == "sequence":
            means[layer] = whole[None].expand(size, *whole.shape).float()
            continue
        at = total / counts.clamp(min=1)[:, None, None]
        means[layer] = torch.where(counts[:, None, None] > 0, at, whole[None]).float()
    return means


def reference_passes(
    model: Any, tokens: Int[Tensor, "m pos"], mask: Bool[Tensor, "m pos"], batch_size: int
) -> tuple[Int[Tensor, "u pos"], Float[Tensor, "u pos"], list[tuple[Int[Tensor, " rows"], int]]]:
    """The passes of :func:`reference_means` over checked ``tokens`` and ``mask``: equal
    sequences run once with their weights (real positions) summed, each up to its last real
    position, grouped by width, ``batch_size`` rows at most. Returns the distinct sequences,
    their weights and the passes ``(rows, width)``.

    Example:
        >>> from iteration_heads import zoo
        >>> tokens = torch.tensor([[1, 2, 3, 0], [1, 2, 3, 0], [4, 5, 0, 0]])
        >>> distinct, weight, plan = reference_passes(zoo.load("polynomial_paper"), tokens,
        ...                                           tokens != 0, 8)
        >>> weight.tolist(), [(rows.tolist(), width) for rows, width in plan]
        ([[2.0, 2.0, 2.0, 0.0], [1.0, 1.0, 0.0, 0.0]], [([1, 0], 3)])
    """
    distinct, inverse = tokens.unique(dim=0, return_inverse=True)
    weight = torch.zeros(distinct.shape, dtype=torch.float64).index_add_(0, inverse, mask.double())
    used = weight.sum(1) > 0
    distinct, weight = distinct[used], weight[used]
    widths = ((weight > 0) * torch.arange(1, distinct.shape[1] + 1)).amax(1)
    return distinct, weight, passes_by_width(widths, int(model.cfg.d_model), batch_size)


def _summed_into(sums: dict[int, Tensor], layer: int, weight: Tensor, width: int) -> Any:
    """A ``hook_z`` hook adding its rows' ``hook_z``, weighted per position, into
    ``sums[layer]`` (``[width, head, d_head]``, zero where no pass reached; the unembedding is
    never needed)."""

    def hook(z: Tensor, hook: Any) -> None:
        part = (z.double().cpu() * weight[:, :, None, None]).sum(0)
        if layer not in sums:
            sums[layer] = part.new_zeros(width, *part.shape[1:])
        sums[layer][: len(part)] += part

    return hook
