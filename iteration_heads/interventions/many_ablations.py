"""Many head ablations at once: each set of heads ablated on the batch (or on a sample of it),
pooled into as few forward passes as the shapes allow. This is what a causal check spends its
time on (one circuit against twenty control sets), so it avoids every computation that cannot
change a score:

* **no padding past the last scored position**: attention is causal, so a sequence needs only
  the positions up to its last scored one; sequences run in groups of similar widths;
* **no layers before the first ablated one**: a set whose heads are in layers ``>= l`` leaves the
  residual stream entering layer ``l`` as in the clean run, so it starts there (the clean pass
  stores that stream);
* **no unembedding of unscored positions**
  (:func:`~iteration_heads.interventions.scores.scored_logits`);
* **pooled rows**: every row of a forward pass carries its own set of ablated heads, so sets
  evaluated on a few sequences each still fill large matrix products. Rows are grouped by
  (first layer, width) and the groups merged into passes by a small dynamic programme that
  weighs the computation a merge wastes against the fixed cost of one more pass.

Mean ablation replaces a head's output at each position by its mean over the sequences that
reach that position (padding never enters a mean).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from iteration_heads._torch import Head, check_heads, device_of, evaluating, resid_pre_hook, z_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.ablation import (
    ABLATION_KINDS,
    AblationKind,
    head_outputs,
    resample_offsets,
)
from iteration_heads.interventions.batch import (
    BATCH_SIZE,
    Batch,
    check_kind,
    scored_widths,
)
from iteration_heads.interventions.scores import Scores
from iteration_heads.passes import (
    FORWARD_OVERHEAD_FLOPS,
    passes_by_width,
    plan_passes,
    scored_logits,
)
from iteration_heads.tasks.data import IGNORE

RESID_BUDGET = 2**28
"""Most floats of residual stream the clean pass stores for sets to start from (1 GiB); beyond
it, every set runs from the embeddings."""


def ablation_sets(
    model: Any,
    batch: Batch,
    head_sets: Sequence[Sequence[Head]],
    *,
    kind: AblationKind = "mean",
    rows: Sequence[Int[Tensor, " k"] | None] | None = None,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> tuple[Scores, list[Scores]]:
    """Scores of ``batch`` clean, and with each set of heads ablated in turn (every position).

    ``rows[i]`` (indices into the batch; None: all) are the sequences set ``i`` runs on; its
    :class:`~iteration_heads.interventions.scores.Scores` follow that order. Mean ablation takes
    the means from the clean pass; resample ablation, as :func:`~iteration_heads.ablation_effect`
    does, row ``j`` takes row ``j + offset`` of the batch (one more pass for the reference). The
    scores equal those of :func:`~iteration_heads.ablation_effect` on each set (to float
    rounding), for a fraction of the cost: see the module's notes.

    Example:
        >>> from iteration_heads import load
        >>> from iteration_heads.interventions.batch import as_batch
        >>> model = load("polynomial_paper")
        >>> batch = as_batch(model, n=256)
        >>> clean, (both, second) = ablation_sets(model, batch, [[(0, 0), (1, 0)], [(1, 0)]])
        >>> clean.mean("accuracy"), second.mean("accuracy") < 0.05  # L1H0 is the iteration head
        (1.0, True)
        >>> _, (sample,) = ablation_sets(model, batch, [[(1, 0)]], rows=[torch.arange(8)])
        >>> len(sample.accuracy)
        8
    """
    check_kind(kind, ABLATION_KINDS, "ablation kind")
    if batch_size < 1:
        raise IterationHeadsError(f"batch_size={batch_size}, expected >= 1")
    specs = [check_heads(model, heads) for heads in head_sets]
    n, n_layers, n_heads = len(batch), int(model.cfg.n_layers), int(model.cfg.n_heads)
    chosen = _check_rows(rows, len(specs), n)
    device = device_of(model)
    widths, scored = scored_widths(batch.targets), batch.targets != IGNORE
    layers = sorted({layer for s in specs for layer, _ in s})
    starts = torch.tensor([min(layer for layer, _ in s) for s in specs], dtype=torch.long)
    job_set = torch.cat([torch.full((len(r),), i) for i, r in enumerate(chosen)])
    job_row = torch.cat(chosen)
    d_model = int(model.cfg.d_model)
    overhead = FORWARD_OVERHEAD_FLOPS / (24 * d_model**2)
    stored = n * batch.tokens.shape[1] * d_model * len(set(starts.tolist()) - {0})
    job_start = starts[job_set] if stored <= RESID_BUDGET else torch.zeros_like(job_set)
    passes = plan_passes(job_start, widths[job_row], n_layers, overhead, batch_size)
    keep = sorted({start for _, start, _ in passes} - {0})

    resid = {layer: torch.zeros(n, batch.tokens.shape[1], d_model) for layer in keep}
    means: dict[int, Tensor] = {}
    with evaluating(model):
        mean_layers = layers if kind == "mean" else []
        clean = _clean_pass(model, batch, widths, resid, mean_layers, means, batch_size)
        reference = means
        if kind == "resample":
            reference = head_outputs(model, batch.tokens, layers, batch_size)
            generators = [torch.Generator().manual_seed(seed) for _ in specs]
            offsets = [
                resample_offsets(len(r), n, batch_size, g)
                for r, g in zip(chosen, generators, strict=True)
            ]
            job_source = (job_row + torch.cat(offsets)) % n
        masks = torch.zeros(len(specs), n_layers, n_heads, dtype=torch.bool)
        for i, heads in enumerate(specs):
            for layer, head in heads:
                masks[i, layer, head] = True
        results = []
        for jobs, start, width in passes:
            probes = job_row[jobs]
            inputs = batch.tokens[probes, :width] if start == 0 else resid[start][probes, :width]
            source = job_source[jobs] if kind == "resample" else None
            hooks = _pooled_hooks(masks[job_set[jobs]], kind, reference, source, start, device)
            mask = scored[probes, :width].to(device)
            logits = scored_logits(
                model,
                inputs.to(device),
                mask,
                hooks=hooks,
                start_at_layer=start if start > 0 else None,
            )
            targets = batch.targets[probes, :width].to(device)[mask]
            where = mask.nonzero()[:, 0]
            results.append((jobs, Scores.of_positions(logits, targets, where, len(jobs))))
    per_job = _assemble(results, len(job_row))
    ablated = []
    for i, r in enumerate(chosen):
        index = (job_set == i).nonzero()[:, 0]
        ablated.append(_select(per_job, index, None if batch.lengths is None else batch.lengths[r]))
    return clean, ablated


def _check_rows(rows: Sequence[Tensor | None] | None, n_sets: int, n: int) -> list[Tensor]:
    if rows is None:
        return [torch.arange(n)] * n_sets
    if len(rows) != n_sets:
        raise IterationHeadsError(f"rows: {len(rows)} entries for {n_sets} head sets")
    checked = []
    for r in rows:
        if r is None:
            checked.append(torch.arange(n))
            continue
        r = torch.as_tensor(r)
        if (
            r.ndim != 1
            or len(r) == 0
            or r.is_floating_point()
            or int(r.min()) < 0
            or int(r.max()) >= n
        ):
            raise IterationHeadsError(
                f"rows {r.tolist()!r}: expected a non-empty list of sequence indices 0..{n - 1}"
            )
        checked.append(r.long())
    return checked


def _clean_pass(
    model: Any,
    batch: Batch,
    widths: Tensor,
    resid: dict[int, Tensor],
    mean_layers: list[int],
    means: dict[int, Tensor],
    batch_size: int,
) -> Scores:
    """Score the batch without ablation; fill ``resid`` (the stream entering its layers) and
    ``means`` (each layer's head outputs averaged over the sequences reaching a position)."""
    n, full = len(batch), batch.tokens.shape[1]
    device = device_of(model)
    passes = passes_by_width(widths, int(model.cfg.d_model), batch_size)
    sums: dict[int, Tensor] = {}
    counts = torch.zeros(full, dtype=torch.float64)
    results = []
    captured: dict[str, Tensor] = {}

    def capture(name: str) -> Callable:
        def hook(value: Tensor, hook: Any) -> None:
            captured[name] = value.detach()

        return hook

    for probes, width in passes:
        captured.clear()
        names = [resid_pre_hook(layer) for layer in resid]
        names += [z_hook(layer) for layer in mean_layers]
        mask = (batch.targets[probes, :width] != IGNORE).to(device)
        logits = scored_logits(
            model,
            batch.tokens[probes, :width].to(device),
            mask,
            hooks=[(name, capture(name)) for name in names],
        )
        targets = batch.targets[probes, :width].to(device)[mask]
        results.append(
            (probes, Scores.of_positions(logits, targets, mask.nonzero()[:, 0], len(probes)))
        )
        reach = (torch.arange(width)[None, :] < widths[probes][:, None]).to(device)
        counts[:width] += reach.sum(0).double().cpu()
        for layer in resid:
            resid[layer][probes, :width] = (
                (captured[resid_pre_hook(layer)] * reach[..., None]).float().cpu()
            )
        for layer in mean_layers:
            z = captured[z_hook(layer)].double() * reach[:, :, None, None]
            part = torch.zeros(1, full, *z.shape[2:], dtype=torch.float64)
            part[:, :width] = z.sum(0, keepdim=True).cpu()
            sums[layer] = part if layer not in sums else sums[layer] + part
    for layer, total in sums.items():
        means[layer] = (total / counts.clamp(min=1)[None, :, None, None]).float()
    return _select(_assemble(results, n), torch.arange(n), batch.lengths)


def _pooled_hooks(
    masks: Bool[Tensor, "rows layer head"],
    kind: str,
    reference: dict[int, Tensor],
    source: Tensor | None,
    start: int,
    device: torch.device,
) -> list[tuple[str, Callable]]:
    """One ``hook_z`` hook per layer from ``start`` on where a row ablates a head: each row's
    heads take zero, the mean, or their source row's output."""
    hooks = []
    for layer in range(start, masks.shape[1]):
        if not bool(masks[:, layer].any()):
            continue
        where = masks[:, layer][:, None, :, None].to(device)

        def hook(z: Tensor, hook: Any, layer: int = layer, where: Tensor = where) -> Tensor:
            width = z.shape[1]
            if kind == "zero":
                new = torch.zeros((), dtype=z.dtype, device=z.device)
            elif kind == "mean":
                new = reference[layer][:, :width].to(z.device, z.dtype)
            else:
                assert source is not None
                new = reference[layer][source.to(reference[layer].device), :width].to(
                    z.device, z.dtype
                )
            return torch.where(where, new, z)

        hooks.append((z_hook(layer), hook))
    return hooks


def _assemble(results: list[tuple[Tensor, Scores]], n: int) -> dict[str, Tensor]:
    """Per-row metrics of several passes, put back in row order."""
    out = {metric: torch.zeros(n) for metric in Scores.METRICS}
    for rows, scores in results:
        for metric in Scores.METRICS:
            out[metric][rows] = getattr(scores, metric)
    return out


def _select(per_row: dict[str, Tensor], index: Tensor, lengths: Tensor | None) -> Scores:
    return Scores(
        **{metric: values[index] for metric, values in per_row.items()},
        lengths=None if lengths is None else lengths.cpu(),
    )
