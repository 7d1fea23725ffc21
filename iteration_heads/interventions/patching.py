"""Activation patching of attention heads between a clean and a corrupted run.

Every patch edits a head's own output ``blocks.{layer}.attn.hook_z`` ``[batch, pos, head,
d_head]``, so it works on native and wrapped HuggingFace bridges without the flags native models
lack. :func:`activation_patching` patches every (layer, position, head) in a few batched forward
passes: (cell, sequence) pairs are stacked along the batch dimension.
``method="transformer_lens"`` runs ``transformer_lens.patching.get_act_patch_attn_head_out_by_pos``
instead (one forward pass per cell; the reference the batched sweep is tested against).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import attached_hooks, cached_run, device_of, evaluating, z_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import Data, paired
from iteration_heads.interventions.scores import Metric, MetricFn, metric_fn, standard_error
from iteration_heads.tasks.task import check_int

SWEEP_BATCH = 2048
"""Rows (variants × sequences) per forward pass of the batched sweep."""


@dataclass(frozen=True, repr=False)
class ActivationPatching(Result):
    """Per-(layer, position, head) patching results.

    ``normalised = (patched - base) / (source_mean - base_mean)`` per sequence: with
    ``direction="denoise"`` (corrupted run, clean activation patched in) 1 means the patch
    restores the clean metric, 0 that it does nothing; with ``"noise"`` (clean run, corrupted
    activation) 1 means it does all the corruption's damage.

    Attributes:
        values: Mean normalised effect ``[layer, pos, head]``.
        stderr: Its standard error over sequences.
        per_sequence: Normalised effect of every sequence ``[layer, pos, head, batch]``.
        raw: The metric of every patched run ``[layer, pos, head, batch]``.
        clean, corrupted: The metric of the unpatched runs ``[batch]``.
        metric, direction, method: How it was measured; ``n_forward``: forward passes of the
            sweep (clean and corrupted runs not counted).
    """

    values: Float[Tensor, "layer pos head"]
    stderr: Float[Tensor, "layer pos head"]
    per_sequence: Float[Tensor, "layer pos head batch"]
    raw: Float[Tensor, "layer pos head batch"]
    clean: Float[Tensor, " batch"]
    corrupted: Float[Tensor, " batch"]
    metric: str
    direction: str
    method: str
    n_forward: int

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (layer, pos, head) with ``value``, ``stderr``, ``raw_mean``."""
        layer, pos, head = torch.meshgrid(
            *(torch.arange(s) for s in self.values.shape), indexing="ij"
        )
        return pd.DataFrame(
            {
                "layer": layer.flatten().numpy(),
                "pos": pos.flatten().numpy(),
                "head": head.flatten().numpy(),
                "value": self.values.flatten().numpy(),
                "stderr": self.stderr.flatten().numpy(),
                "raw_mean": self.raw.mean(-1).flatten().numpy(),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (per-sequence values included)."""
        return {
            "metric": self.metric,
            "direction": self.direction,
            "method": self.method,
            "n_forward": self.n_forward,
            "clean_mean": float(self.clean.mean()),
            "corrupted_mean": float(self.corrupted.mean()),
            "values": self.values.tolist(),
            "stderr": self.stderr.tolist(),
            "per_sequence": self.per_sequence.tolist(),
        }

    def top(self, k: int = 5) -> pd.DataFrame:
        """The ``k`` cells with the largest absolute effect."""
        frame = self.to_frame()
        return frame.reindex(frame["value"].abs().sort_values(ascending=False).index[:k])

    def format(self) -> str:
        """The setting, the clean and corrupted metric, and the five largest cells."""
        n_layers, n_pos, n_heads = self.values.shape
        head = (
            f"activation patching ({self.direction}, metric {self.metric}, {self.method}): "
            f"{n_layers} layers x {n_pos} positions x {n_heads} heads, {self.clean.shape[0]} "
            f"sequences; clean {float(self.clean.mean()):.3f}, corrupted "
            f"{float(self.corrupted.mean()):.3f}"
        )
        return head + "\n" + self.top().to_string(index=False, float_format="{:.3f}".format)

    def html_body(self) -> str:
        return ""


def activation_patching(
    model: Any,
    clean: Data,
    corrupted: Data,
    *,
    metric: Metric = "logit_diff",
    direction: Literal["denoise", "noise"] = "denoise",
    method: Literal["batched", "transformer_lens"] = "batched",
    batch_size: int = SWEEP_BATCH,
) -> ActivationPatching:
    """Patch every head's output at every position between a clean and a corrupted run.

    The metric (see :func:`metric_fn`) always scores the clean targets. ``"denoise"`` runs the
    corrupted tokens and patches in one clean head output at one position; ``"noise"`` the
    reverse. The batched method stacks (cell, sequence) pairs along the batch, ``batch_size``
    rows per forward pass, and skips the pairs whose clean and corrupted head outputs are equal
    (a no-op patch, e.g. before a changed input): 256 sequences of a 2-layer, 1-head model of
    width 19 (38 cells) take at most ``ceil(38 * 256 / 2048) = 5`` passes. On a CPU larger
    passes are not faster per row, so the gain over one pass per cell is in overhead: large
    for few sequences, small for many (see ``benchmarks/patching_speed.py``).

    Raises:
        IterationHeadsError: clean and corrupted of different shapes, an unknown metric or
            direction, or a corruption that does not change the metric.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, corrupt, make_dataset
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> clean = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> bad = corrupt(clean, "input", task="polynomial", position=1)
        >>> result = activation_patching(model, clean, bad)
        >>> result.values.shape, result.n_forward
        (torch.Size([2, 11, 1]), 1)
    """
    check_int("batch_size", batch_size, minimum=1)
    if direction not in ("denoise", "noise"):
        raise IterationHeadsError(f"direction {direction!r}, expected 'denoise' or 'noise'")
    if method not in ("batched", "transformer_lens"):
        raise IterationHeadsError(f"method {method!r}, expected 'batched' or 'transformer_lens'")
    if batch_size < 1:
        raise IterationHeadsError(f"batch_size={batch_size}, expected >= 1")
    fn = metric_fn(metric)
    a, b = paired(model, clean, corrupted)
    targets = a.targets
    clean_metric, clean_z = _run_with_z(model, a.tokens, targets, fn, batch_size)
    corrupt_metric, corrupt_z = _run_with_z(model, b.tokens, targets, fn, batch_size)
    denoise = direction == "denoise"
    base, source = (b, a) if denoise else (a, b)
    base_metric, source_metric = (
        (corrupt_metric, clean_metric) if denoise else (clean_metric, corrupt_metric)
    )
    base_z, source_z = (corrupt_z, clean_z) if denoise else (clean_z, corrupt_z)
    gap = float(source_metric.mean() - base_metric.mean())
    if abs(gap) < 1e-6:
        raise IterationHeadsError(
            f"the corruption does not change the metric (clean {clean_metric.mean():.4g}, "
            f"corrupted {corrupt_metric.mean():.4g}): there is nothing to patch"
        )
    n_layers = int(model.cfg.n_layers)
    if method == "batched":
        raw, passes = _batched_sweep(
            model, base.tokens, base_z, base_metric, source_z, targets, fn, batch_size
        )
    else:
        raw, passes = _transformer_lens_sweep(model, base.tokens, source.tokens, targets, fn)
    per_sequence = (raw - base_metric) / gap
    return ActivationPatching(
        values=per_sequence.mean(-1),
        stderr=standard_error(per_sequence),
        per_sequence=per_sequence,
        raw=raw,
        clean=clean_metric,
        corrupted=corrupt_metric,
        metric=metric if isinstance(metric, str) else getattr(metric, "__name__", "custom"),
        direction=direction,
        method=method,
        n_forward=passes if n_layers else 0,
    )


def _run_with_z(
    model: Any, tokens: Tensor, targets: Tensor, fn: MetricFn, size: int
) -> tuple[Tensor, dict[int, Tensor]]:
    """The metric of a run ``[batch]`` and every layer's ``hook_z``, in one pass per chunk."""
    n_layers = int(model.cfg.n_layers)
    names = {z_hook(layer): layer for layer in range(n_layers)}
    device, metric = device_of(model), []
    z: dict[int, list[Tensor]] = {layer: [] for layer in range(n_layers)}
    with evaluating(model):
        for t, y in zip(tokens.split(size), targets.split(size), strict=True):
            logits, cache = cached_run(model, t.to(device), names_filter=lambda n: n in names)
            metric.append(fn(logits, y.to(device)).float().cpu())
            for name, layer in names.items():
                z[layer].append(cache[name])
    return torch.cat(metric), {layer: torch.cat(parts) for layer, parts in z.items()}


def _batched_sweep(
    model: Any,
    base: Tensor,
    base_z: dict[int, Tensor],
    base_metric: Tensor,
    source_z: dict[int, Tensor],
    targets: Tensor,
    fn: MetricFn,
    batch_size: int,
) -> tuple[Tensor, int]:
    """Metric ``[layer, pos, head, batch]`` of every single-cell patch.

    Each (cell, sequence) pair is one row of a stacked batch; rows whose source output equals
    the base output exactly (e.g. positions before a corrupted input, by causality) are not
    run: patching them is a no-op, so they keep the base run's metric."""
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    width = base.shape[1]
    differs = torch.stack(
        [(source_z[lay] != base_z[lay]).any(-1).cpu() for lay in range(n_layers)]
    )  # layer batch pos head
    raw = base_metric[None, None, None, :].repeat(n_layers, width, n_heads, 1)
    layer_i, seq_i, pos_i, head_i = differs.nonzero(as_tuple=True)
    device, passes = device_of(model), 0
    with evaluating(model):
        for start in range(0, len(layer_i), batch_size):
            rows = slice(start, start + batch_size)
            lay, seq, pos, head = layer_i[rows], seq_i[rows], pos_i[rows], head_i[rows]
            hooks = []
            for layer in lay.unique().tolist():
                pick = (lay == layer).nonzero().flatten()
                value = source_z[layer][seq[pick], pos[pick], head[pick]]

                where = (pick, pos[pick], head[pick])

                def hook(
                    z: Tensor, hook: Any, where: tuple[Tensor, ...] = where, value: Tensor = value
                ) -> Tensor:
                    z = z.clone()
                    at = tuple(i.to(z.device) for i in where)
                    z[at] = value.to(z.device, z.dtype)
                    return z

                hooks.append((z_hook(layer), hook))
            with attached_hooks(model, hooks):
                logits = model(base[seq].to(device))
            raw[lay, pos, head, seq] = fn(logits, targets[seq].to(device)).float().cpu()
            passes += 1
    return raw, passes


def _transformer_lens_sweep(
    model: Any, base: Tensor, source: Tensor, targets: Tensor, fn: MetricFn
) -> tuple[Tensor, int]:
    from transformer_lens.patching import get_act_patch_attn_head_out_by_pos

    device = device_of(model)
    with evaluating(model):
        _, cache = cached_run(
            model, source.to(device), names_filter=lambda name: name.endswith("attn.hook_z")
        )
        result = get_act_patch_attn_head_out_by_pos(
            model,
            base.to(device),
            cache,
            lambda logits: fn(logits, targets.to(device)),
            reduce="none",
        )
    raw = torch.as_tensor(result.values).float().cpu()
    return raw, raw.shape[0] * raw.shape[1] * raw.shape[2]
