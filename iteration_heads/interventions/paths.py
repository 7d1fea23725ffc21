"""Path patching: a sender head's output change, seen by one input (q, k or v) of receiver heads
only. The receivers' inputs are recomputed from ``ln1(resid_pre + delta)``, which needs no
``set_use_split_qkv_input`` and so works on native TransformerLens models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import (
    Head,
    attached_hooks,
    check_heads,
    device_of,
    evaluating,
    head_names,
    input_hook,
    resid_pre_hook,
)
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.ablation import head_outputs
from iteration_heads.interventions.batch import Data, check_positions, paired
from iteration_heads.interventions.scores import (
    Metric,
    Scores,
    metric_fn,
    metric_of,
    standard_error,
)
from iteration_heads.model.transformer import check_additive_residual
from iteration_heads.tasks.task import check_int


@dataclass(frozen=True, repr=False)
class PathPatching(Result):
    """A sender's effect on the model through one input (q, k or v) of receiver heads.

    ``normalised = (patched - clean) / (corrupted - clean)`` per sequence: the fraction of the
    full corruption's effect on the metric that flows through the path.
    """

    senders: tuple[Head, ...]
    receivers: tuple[Head, ...]
    inputs: tuple[str, ...]
    clean: Float[Tensor, " batch"]
    patched: Float[Tensor, " batch"]
    corrupted: Float[Tensor, " batch"]
    patched_scores: Scores
    metric: str

    @property
    def per_sequence(self) -> Float[Tensor, " batch"]:
        """Normalised effect of every sequence."""
        gap = float((self.corrupted - self.clean).mean())
        return (self.patched - self.clean) / gap if abs(gap) > 1e-12 else self.patched * 0

    @property
    def value(self) -> float:
        """Mean normalised effect."""
        return float(self.per_sequence.mean())

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`value`."""
        return float(standard_error(self.per_sequence))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "senders": [list(h) for h in self.senders],
            "receivers": [list(h) for h in self.receivers],
            "inputs": list(self.inputs),
            "metric": self.metric,
            "value": self.value,
            "stderr": self.stderr,
            "clean_mean": float(self.clean.mean()),
            "patched_mean": float(self.patched.mean()),
            "corrupted_mean": float(self.corrupted.mean()),
            "patched_accuracy": self.patched_scores.mean("accuracy"),
        }

    def format(self) -> str:
        """One line: the path, its normalised effect and the metric's three values."""
        return (
            f"path patching {head_names(self.senders)} -> {head_names(self.receivers)} "
            f"({'+'.join(self.inputs)}): {self.value:.3f} ± {self.stderr:.3f} of the corruption's "
            f"effect on {self.metric} (clean {float(self.clean.mean()):.3f}, patched "
            f"{float(self.patched.mean()):.3f}, corrupted {float(self.corrupted.mean()):.3f})"
        )


def _norm(model: Any, layer: int) -> Callable[[Tensor], Tensor]:
    """The block's first normalisation as a plain function (no hooks)."""
    ln = getattr(model.blocks[layer], "ln1", None)
    inner = getattr(ln, "original_component", None)
    if isinstance(inner, torch.nn.Module):
        return inner
    if ln is None and getattr(model.cfg, "normalization_type", None) is None:
        return lambda x: x
    raise IterationHeadsError(
        f"cannot recompute the input of block {layer}'s attention: its ln1 "
        f"({type(ln).__name__}) exposes no plain normalisation module"
    )


def path_patch(
    model: Any,
    clean: Data,
    corrupted: Data,
    *,
    sender: Sequence[Head] | Head,
    receiver: Sequence[Head] | Head,
    inputs: str | Sequence[str] = "q",
    positions: int | Sequence[int] | None = None,
    metric: Metric = "logit_diff",
    batch_size: int = 1024,
) -> PathPatching:
    """Path-patch from ``sender`` heads to the ``inputs`` (``"q"``, ``"k"``, ``"v"``) of
    ``receiver`` heads, on the clean run.

    The senders' output change ``delta = sum_h (z_corrupted - z_clean)[h] @ W_O[h]`` (at
    ``positions``; None: all) is added to the residual stream seen by the receivers' chosen
    inputs only: ``q = ln1(resid_pre + delta) @ W_Q + b_Q`` for the receiver heads, everything
    else clean. This needs no ``set_use_split_qkv_input``, so it works on native models; before
    patching, the recomputation is checked against the model's own ``q``/``k``/``v`` and a clear
    error is raised where it does not match.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, corrupt, make_dataset
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> clean = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> clean = clean.select(clean.lengths >= 2)
        >>> bad = corrupt(clean, "length", task="polynomial", shift=-1)
        >>> result = path_patch(model, clean, bad,
        ...                     sender=(0, 0), receiver=(1, 0), inputs="q")
        >>> result.patched.shape
        torch.Size([24])
    """
    check_int("batch_size", batch_size, minimum=1)
    check_additive_residual(model, "path patching")
    senders = check_heads(model, sender)
    receivers = check_heads(model, receiver)
    names = [inputs] if isinstance(inputs, str) else list(inputs)
    bad = [x for x in names if x not in ("q", "k", "v")]
    if bad or not names:
        raise IterationHeadsError(f"inputs {names!r}: expected 'q', 'k' and/or 'v'")
    last_sender = max(layer for layer, _ in senders)
    early = [r for r in receivers if r[0] <= last_sender]
    if early:
        raise IterationHeadsError(
            f"receivers {early} are not after the last sender layer {last_sender}: a path runs "
            "from an earlier layer to a later one"
        )
    fn = metric_fn(metric)
    a, b = paired(model, clean, corrupted)
    width = a.tokens.shape[1]
    pos = torch.zeros(width, dtype=torch.bool)
    if positions is None:
        pos[:] = True
    else:
        values = check_positions(positions, width)
        pos[values] = True
    sender_layers = sorted({layer for layer, _ in senders})
    z_clean = head_outputs(model, a.tokens, sender_layers, batch_size)
    z_bad = head_outputs(model, b.tokens, sender_layers, batch_size)
    delta = torch.zeros(*a.tokens.shape, int(model.cfg.d_model))
    for layer, head in senders:
        w_o = model.blocks[layer].attn.W_O[head].detach().cpu().float()  # d_head d_model
        diff = (z_bad[layer][:, :, head] - z_clean[layer][:, :, head]).float().cpu()
        delta += (diff @ w_o) * pos[None, :, None]
    clean_metric = metric_of(model, a.tokens, a.targets, fn, batch_size)
    bad_metric = metric_of(model, b.tokens, a.targets, fn, batch_size)
    device, patched, scores = device_of(model), [], []
    with evaluating(model):
        for start in range(0, len(a), batch_size):
            rows = slice(start, start + batch_size)
            hooks = receiver_hooks(model, receivers, names, delta[rows])
            with attached_hooks(model, hooks):
                logits = model(a.tokens[rows].to(device))
            targets = a.targets[rows].to(device)
            patched.append(fn(logits, targets).float().cpu())
            scores.append(
                Scores.of(logits, targets, None if a.lengths is None else a.lengths[rows])
            )
    return PathPatching(
        senders=tuple(senders),
        receivers=tuple(receivers),
        inputs=tuple(names),
        clean=clean_metric,
        patched=torch.cat(patched),
        corrupted=bad_metric,
        patched_scores=Scores.cat(scores),
        metric=metric if isinstance(metric, str) else "custom",
    )


def receiver_hooks(
    model: Any, receivers: list[Head], inputs: list[str], delta: Tensor
) -> list[tuple[str, Callable]]:
    """Hooks that capture each receiver layer's ``resid_pre`` and recompute the receiver heads'
    ``inputs`` (``"q"``, ``"k"``, ``"v"``) from ``ln1(resid_pre + delta)``: ``delta``
    ``[batch, pos, d_model]`` reaches those inputs only. The recomputation is checked against the
    model's own values first (a clear error where it does not match).

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> tokens = torch.randint(0, 16, (2, 11))
        >>> with attached_hooks(model, receiver_hooks(model, [(1, 0)], ["q"], torch.zeros(2, 11, 32))):
        ...     same = model(tokens)
        >>> bool(torch.allclose(same, model(tokens), atol=1e-5))
        True
    """
    check_additive_residual(model, "path patching")
    hooks: list[tuple[str, Callable]] = []
    for layer in sorted({lay for lay, _ in receivers}):
        heads = [h for lay, h in receivers if lay == layer]
        seen: dict[str, Tensor] = {}
        norm = _norm(model, layer)

        def capture(resid: Tensor, hook: Any, seen: dict[str, Tensor] = seen) -> None:
            seen["resid"] = resid

        hooks.append((resid_pre_hook(layer), capture))
        for name in inputs:
            attn = model.blocks[layer].attn

            def edit(
                x: Tensor,
                hook: Any,
                name: str = name,
                attn: Any = attn,
                heads: list[int] = heads,
                seen: dict[str, Tensor] = seen,
                norm: Callable = norm,
                layer: int = layer,
            ) -> Tensor:
                resid = seen["resid"]
                w = getattr(attn, f"W_{name.upper()}")[heads]  # head d_model d_head
                bias = getattr(attn, f"b_{name.upper()}", None)  # None: no bias (Llama)
                b = 0.0 if bias is None else bias[heads]  # head d_head
                if w.shape[0] != len(heads) or x.shape[2] != attn.W_Q.shape[0]:
                    raise IterationHeadsError(
                        f"block {layer}: {name} has {x.shape[2]} heads but W_Q has "
                        f"{attn.W_Q.shape[0]}; grouped-query attention is not supported"
                    )
                same = torch.einsum("bpm,hmd->bphd", norm(resid), w) + b
                expected = x[:, :, heads]
                scale = float(expected.detach().abs().max()) + 1.0
                limit = 1e-4 if x.dtype == torch.float32 else 3e-2  # bf16/fp16: 8-11 bit mantissa
                if float((same - expected).detach().abs().max()) > limit * scale:
                    raise IterationHeadsError(
                        f"cannot path-patch block {layer}'s {name}: recomputing it from "
                        "ln1(resid_pre) with W_{0}, b_{0} does not reproduce hook_{1}".format(
                            name.upper(), name
                        )
                    )
                patched_in = norm(resid + delta.to(resid.device, resid.dtype))
                new = torch.einsum("bpm,hmd->bphd", patched_in, w) + b
                x = x.clone()
                x[:, :, heads] = new
                return x

            hooks.append((input_hook(layer, name), edit))
    return hooks
