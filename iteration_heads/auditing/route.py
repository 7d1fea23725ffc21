"""The position route: how do the iteration heads' queries know which input to fetch?

The paper's route is an EoI head: it brings the position of EoI (so the length ``L``) to the
chain of thought, and the first MLP turns it into a query for position ``t``. A model may find
``t`` another way (counting from a marker, reading positional embeddings directly, ...). This
module measures the route, component by component:

1. corrupt the length: every probe of length ``L >= 2`` is re-encoded without its last input,
   so EoI and the chain of thought move while the first inputs stay in place;
2. for each component before the iteration heads' layer — every attention head, every MLP and
   the embeddings — add the change of its output (corrupted minus clean, at the iteration
   heads' query positions only) to the residual stream that the iteration heads' **queries**
   read, and nothing else (path patching: ``q = ln1(resid_pre + delta) W_Q + b_Q``);
3. score it by how much the iteration heads' attention on the right input ``x_t`` drops, as a
   fraction of the drop when the whole residual stream's change is patched in.

A component with a large share carries the position to the iteration heads. Cost: two runs up
to the iteration heads' layer that keep the components' outputs, then per component a pass of
that layer alone, resumed from the clean residual stream entering it and stopped at the heads'
pattern (nothing else changes: the patch reaches their queries only). Memory: the two runs'
outputs and one component's change at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import (
    Head,
    check_heads,
    device_of,
    evaluating,
    mlp_out_hook,
    pattern_hook,
    resid_pre_hook,
    z_hook,
)
from iteration_heads.detection.probes import Probes
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.paths import receiver_hooks
from iteration_heads.model.transformer import check_additive_residual
from iteration_heads.passes import activation_at
from iteration_heads.tasks.task import check_int

ROUTE_SHARE = 0.2
"""A component is part of the route when it carries at least this share of the effect."""

MIN_ROUTE_EFFECT = 0.1
"""Below this drop of the iteration heads' weight on ``x_t`` (with the whole residual stream
patched into their queries), the length change does not reach them: no route is named."""


@dataclass(frozen=True, repr=False)
class PositionRoute(Result):
    """Which earlier components tell the iteration heads' queries where ``x_t`` is.

    Attributes:
        iteration_heads: The receivers (their summed attention is read).
        eoi_heads: Heads detection called EoI heads (may be empty).
        clean_weight: Mean attention of the iteration heads on ``x_t`` at their queries.
        total_effect: Its mean drop with the whole residual stream's change in their queries.
        table: One row per component: ``component`` (``L0H1``, ``L0 MLP``, ``embeddings``),
            ``kind``, ``layer``, ``effect`` (the drop), ``share`` (of ``total_effect``),
            ``is_eoi_head``; sorted by share.
        n_probes: Probes measured (those of length >= 2).
    """

    iteration_heads: tuple[Head, ...]
    eoi_heads: tuple[Head, ...]
    clean_weight: float
    total_effect: float
    table: pd.DataFrame
    n_probes: int

    @property
    def measured(self) -> bool:
        """Whether the length change reaches the iteration heads' queries at all."""
        return self.total_effect >= MIN_ROUTE_EFFECT

    @property
    def components(self) -> list[str]:
        """The components that carry at least :data:`ROUTE_SHARE` of the effect, strongest
        first."""
        return list(self.table.loc[self.table["share"] >= ROUTE_SHARE, "component"])

    def heads(self) -> list[Head]:
        """The attention heads among :attr:`components`."""
        rows = self.table[(self.table["share"] >= ROUTE_SHARE) & (self.table["kind"] == "head")]
        return [
            (int(lay), int(label.split("H")[1]))
            for lay, label in zip(rows["layer"], rows["component"], strict=True)
        ]

    @property
    def is_eoi_head(self) -> bool:
        """Whether the route runs through an EoI head (the paper's route): one of the components
        carrying at least :data:`ROUTE_SHARE` of the effect is an EoI head."""
        carrying = self.table["share"] >= ROUTE_SHARE
        return bool(self.measured and (carrying & self.table["is_eoi_head"]).any())

    @property
    def verdict(self) -> str:
        """One line: the route, named by measurement."""
        if not self.measured:
            return (
                f"position route not measured: the length change moves the iteration heads' "
                f"attention on x_t by only {self.total_effect:.2f} (of {self.clean_weight:.2f})"
            )
        top = ", ".join(
            f"{row.component} {row.share:.2f}"
            for row in self.table.head(3).itertuples()
            if row.share > 0.05
        )
        route = "an EoI head" if self.is_eoi_head else "not an EoI head"
        return (
            f"position route: {route} — {top} (share of the length change's effect on the "
            f"iteration heads' attention, {self.total_effect:.2f} of {self.clean_weight:.2f}, "
            "patched into their queries)"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "verdict": self.verdict,
            "is_eoi_head": self.is_eoi_head,
            "measured": self.measured,
            "components": self.components,
            "iteration_heads": [list(h) for h in self.iteration_heads],
            "eoi_heads": [list(h) for h in self.eoi_heads],
            "clean_weight": self.clean_weight,
            "total_effect": self.total_effect,
            "n_probes": self.n_probes,
            "table": self.table.to_dict("records"),
        }

    def format(self) -> str:
        """The verdict and the table."""
        return self.verdict + "\n" + self.table.to_string(index=False, float_format="{:.3f}".format)


@dataclass(frozen=True)
class Component:
    """A component whose output reaches the residual stream: a head, an MLP or the embeddings."""

    label: str
    kind: str  # "head", "mlp" or "embed"
    layer: int  # -1 for the embeddings
    head: int | None
    hooks: tuple[str, ...]

    def output(self, model: Any, cache: Any) -> Float[Tensor, "batch pos d_model"]:
        """What the component writes to the residual stream in a cached run."""
        if self.kind == "head":
            z = cache[self.hooks[0]][:, :, self.head]  # batch pos d_head
            return z @ model.blocks[self.layer].attn.W_O[self.head]
        return sum(cache[name] for name in self.hooks if name in cache)


def components_before(model: Any, layer: int) -> list[Component]:
    """The embeddings, then every head and MLP of the layers before ``layer``.

    Example:
        >>> from iteration_heads import load
        >>> [c.label for c in components_before(load("polynomial_paper"), 1)]
        ['embeddings', 'L0H0', 'L0 MLP']
    """
    check_int("layer", layer, minimum=0, maximum=int(model.cfg.n_layers))
    found: list[Component] = []
    embed = tuple(n for n in ("hook_embed", "hook_pos_embed") if n in model.hook_dict)
    if embed:
        found.append(Component("embeddings", "embed", -1, None, embed))
    for lay in range(layer):
        for h in range(int(model.cfg.n_heads)):
            found.append(Component(f"L{lay}H{h}", "head", lay, h, (z_hook(lay),)))
        found.append(Component(f"L{lay} MLP", "mlp", lay, None, (mlp_out_hook(lay),)))
    return found


def position_route(
    model: Any,
    probes: Probes,
    iteration_heads: Sequence[Head],
    *,
    eoi_heads: Sequence[Head] = (),
    batch_size: int = 256,
) -> PositionRoute:
    """Measure which components before the iteration heads bring them the position.

    Args:
        model: A TransformerLens model (native or HuggingFace-wrapped).
        probes: Probes built from a task (:meth:`~iteration_heads.detection.Probes.from_task`,
            ``from_text``, ``from_model``): they are re-encoded one input shorter.
        iteration_heads: The receivers, in one layer (``>= 1``).
        eoi_heads: Heads known as EoI heads, marked in the table.
        batch_size: Probes per forward pass.

    Example:
        >>> from iteration_heads import Probes, load
        >>> model = load("polynomial_paper")
        >>> route = position_route(model, Probes.from_model(model, n=128), [(1, 0)],
        ...                        eoi_heads=[(0, 0)])
        >>> route.is_eoi_head, route.components[0]
        (True, 'L0H0')
    """
    check_int("batch_size", batch_size, minimum=1)
    if not isinstance(probes, Probes):
        raise IterationHeadsError(f"probes must be Probes, got {type(probes).__name__}")
    check_additive_residual(model, "the position route (path patching)")
    receivers = check_heads(model, list(iteration_heads))
    layers = {layer for layer, _ in receivers}
    if len(layers) != 1 or min(layers) < 1:
        raise IterationHeadsError(
            f"iteration heads {receivers} must sit in one layer after the first: the route runs "
            "through the layers before them"
        )
    layer = layers.pop()
    keep = probes.lengths >= 2
    if not bool(keep.any()):
        raise IterationHeadsError("the position route needs probes of length >= 2")
    clean = probes.select(keep)
    if clean.inputs is None:
        raise IterationHeadsError(
            "the position route re-encodes the probes one input shorter: build them from a "
            "task (Probes.from_task, Probes.from_text, Probes.from_model)"
        )
    shorter = clean.with_inputs(
        [clean.inputs[b, : int(n) - 1] for b, n in enumerate(clean.lengths)],
        source="one input shorter",
    )
    senders = components_before(model, layer)
    by_label = {c.label: c for c in senders}
    names = {name for c in senders for name in c.hooks} | {resid_pre_hook(layer)}
    missing = sorted(n for n in names if n not in model.hook_dict)
    if missing:
        raise IterationHeadsError(f"{type(model).__name__} has no hooks {missing}")
    heads = [h for _, h in receivers]
    labels = ["clean", "all", *(c.label for c in senders)]
    weights: dict[str, list[Tensor]] = {label: [] for label in labels}
    device = device_of(model)
    with evaluating(model):
        for start in range(0, len(clean), batch_size):
            rows = slice(start, start + batch_size)
            chunk = clean.select(rows)
            cache_a = _outputs_until(model, chunk.tokens.to(device), names, layer)
            cache_b = _outputs_until(model, shorter.tokens[rows].to(device), names, layer)
            mask = _query_mask(chunk).to(device)[..., None]
            resid = cache_a[resid_pre_hook(layer)]  # every pass below resumes here
            for label in labels:  # one delta at a time: memory for two caches and one delta
                if label == "clean":
                    hooks = []
                else:
                    delta = (
                        cache_b[resid_pre_hook(layer)] - resid
                        if label == "all"
                        else by_label[label].output(model, cache_b)
                        - by_label[label].output(model, cache_a)
                    )
                    hooks = receiver_hooks(model, receivers, ["q"], delta * mask)
                weights[label].append(_weight_on_target(model, resid, chunk, layer, heads, hooks))
    merged = {label: torch.cat(parts) for label, parts in weights.items()}
    clean_w = merged["clean"]
    total = float((clean_w - merged["all"]).mean())
    eoi = set(check_heads(model, list(eoi_heads))) if eoi_heads else set()
    rows_out = []
    for c in senders:
        effect = float((clean_w - merged[c.label]).mean())
        rows_out.append(
            {
                "component": c.label,
                "kind": c.kind,
                "layer": c.layer,
                "effect": effect,
                "share": effect / total if abs(total) > 1e-9 else 0.0,
                "is_eoi_head": c.head is not None and (c.layer, c.head) in eoi,
            }
        )
    table = pd.DataFrame(rows_out).sort_values("share", ascending=False, ignore_index=True)
    return PositionRoute(
        tuple(receivers), tuple(sorted(eoi)), float(clean_w.mean()), total, table, len(clean)
    )


def _query_mask(probes: Probes) -> Tensor:
    """``[batch, pos]``: True at the queries of ``s_1 .. s_L``."""
    mask = torch.zeros(probes.tokens.shape, dtype=torch.bool)
    step = torch.arange(probes.query_positions.shape[1])[None, :]
    valid = step < probes.lengths[:, None]
    rows = torch.arange(len(probes))[:, None].expand_as(valid)
    mask[rows[valid], probes.query_positions[valid]] = True
    return mask


def _outputs_until(model: Any, tokens: Tensor, names: set[str], layer: int) -> dict[str, Tensor]:
    """The activations ``names`` of a pass over ``tokens`` stopped at ``resid_pre`` of
    ``layer`` (what the position route reads; nothing after it is computed). A name that does
    not fire (a rotary model's ``hook_pos_embed``) is left out."""
    found: dict[str, Tensor] = {}

    def keep(name: str) -> Callable[[Tensor, Any], None]:
        def hook(value: Tensor, hook: Any) -> None:
            found[name] = value  # under the name asked for (a bridge's hook may be an alias)

        return hook

    stop = resid_pre_hook(layer)
    hooks = [(name, keep(name)) for name in sorted(names) if name != stop]
    found[stop] = activation_at(model, tokens, stop, hooks=hooks)
    return found


def _weight_on_target(
    model: Any, resid: Tensor, probes: Probes, layer: int, heads: list[int], hooks: list
) -> Tensor:
    """The iteration heads' mean attention from each query of ``s_t`` onto ``x_t``, from a pass
    that resumes at ``layer`` with the residual stream ``resid`` and stops at its pattern."""
    pattern = activation_at(model, resid, pattern_hook(layer), hooks=hooks, start_at_layer=layer)
    pattern = pattern[:, heads].float().mean(1).cpu()  # batch query key
    step = torch.arange(probes.query_positions.shape[1])[None, :]
    valid = step < probes.lengths[:, None]
    rows = torch.arange(len(probes))[:, None].expand_as(valid)
    return pattern[rows[valid], probes.query_positions[valid], probes.input_positions[valid]]
