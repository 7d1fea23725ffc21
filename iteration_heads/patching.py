"""Activation patching and path patching of attention heads, between clean and corrupted runs.

Clean and corrupted runs differ by one thing the tasks control (:func:`corrupt`: one input
``x_k``, the length ``L`` so that EoI moves, or the task). Every patch edits a head's own output
``blocks.{layer}.attn.hook_z`` ``[batch, pos, head, d_head]``, so it works on native and wrapped
HuggingFace bridges without the flags native models lack.

* :func:`activation_patching` patches every (layer, position, head) in a few batched forward
  passes: (cell, sequence) pairs are stacked along the batch dimension.
  ``method="transformer_lens"`` runs ``transformer_lens.patching.get_act_patch_attn_head_out_by_pos``
  instead (one forward pass per cell; the reference the batched sweep is tested against).
* :func:`path_patch` adds a sender head's output change to a receiver head's query, key or value
  input only: the receiver's ``q``/``k``/``v`` are recomputed from ``ln1(resid_pre + delta)``.

The position-shift experiment, built on :func:`corrupt`, is in :mod:`iteration_heads.shift`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from iteration_heads.data import IGNORE, Split, encode
from iteration_heads.detect import _device, _evaluating
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions import (
    Batch,
    Data,
    Head,
    Scores,
    as_batch,
    check_heads,
    head_outputs,
    standard_error,
)
from iteration_heads.layout import TokenLayout
from iteration_heads.tasks import Task, get_task

MetricFn = Callable[[Tensor, Tensor], Tensor]
Metric = Literal["logit_diff", "logprob", "accuracy"] | MetricFn
CorruptionKind = Literal["input", "length", "task"]
SWEEP_BATCH = 2048
"""Rows (variants × sequences) per forward pass of the batched sweep."""


# ---------------------------------------------------------------- metrics and corruptions


def metric_fn(metric: Metric) -> MetricFn:
    """A per-sequence metric ``fn(logits, targets) -> [batch]`` on the scored positions.

    ``"logit_diff"``: mean over scored positions of the target's logit minus the best other
    logit; ``"logprob"``: mean log-probability of the target; ``"accuracy"``: 1 when every
    scored target is the argmax. A callable is returned as is.

    Example:
        >>> logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
        >>> metric_fn("logit_diff")(logits, torch.tensor([[0, -100]])).tolist()
        [2.0]
    """
    if callable(metric):
        return metric
    names = {"logit_diff": "logit_diff", "logprob": "loss", "accuracy": "accuracy"}
    if metric not in names:
        raise IterationHeadsError(
            f"unknown metric {metric!r}; expected one of {list(names)} or a callable "
            "(logits, targets) -> [batch]"
        )

    def fn(logits: Tensor, targets: Tensor) -> Tensor:
        value = getattr(Scores.of(logits, targets), names[metric]).to(logits.device)
        return -value if metric == "logprob" else value

    return fn


def corrupt(
    data: Split,
    kind: CorruptionKind,
    *,
    task: str | Task,
    layout: TokenLayout | None = None,
    position: int | None = None,
    shift: int = 1,
    other_task: str | Task | None = None,
    seed: int = 0,
) -> Split:
    """Corrupted copies of chain-of-thought sequences (library layout), as wide as ``data``.

    * ``"input"``: change one input ``x_k`` (``k = position``, 1-based; None: random per
      sequence) to another value, and recompute the states;
    * ``"length"``: the length becomes ``L + shift`` (EoI moves by ``shift``); the first
      inputs are kept, new ones drawn;
    * ``"task"``: the same inputs under ``other_task`` (task token and states; default
      ``"parity"`` for polynomial, else ``"polynomial"``); an input outside the other task's
      alphabet ``A`` becomes ``A[x mod |A|]``.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset
        >>> clean = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test.for_length(3)
        >>> bad = corrupt(clean, "length", task="polynomial", shift=-1)
        >>> bad.tokens.shape == clean.tokens.shape, bad.lengths.unique().tolist()
        (True, [2])
    """
    _kinds = ("input", "length", "task")
    if kind not in _kinds:
        raise IterationHeadsError(f"unknown corruption {kind!r}; expected one of {list(_kinds)}")
    if not data.cot:
        raise IterationHeadsError("corruptions need chain-of-thought sequences (cot=True)")
    task = get_task(task)
    layout = layout or TokenLayout.for_task(task)
    generator = torch.Generator().manual_seed(seed)
    width = data.tokens.shape[1]
    new_task = task
    if kind == "task":
        default = "parity" if task.name == "polynomial" else "polynomial"
        new_task = get_task(other_task or default)
        if new_task.name == task.name:
            raise IterationHeadsError(f"other_task {new_task.name!r} is the task itself")
    tokens = data.tokens.clone()
    targets = data.targets.clone()
    lengths = data.lengths.clone()
    for length in sorted(set(data.lengths.tolist())):
        index = (data.lengths == length).nonzero().flatten()
        inputs = data.tokens[index, 1 : length + 1].clone()
        if kind == "input":
            values = torch.tensor(task.input_values)
            if len(values) < 2:
                raise IterationHeadsError(
                    f"task {task.name!r} has one input value: cannot change it"
                )
            if position is not None and not 1 <= position <= length:
                raise IterationHeadsError(
                    f"position={position}: sequences of length {length} have inputs 1..{length}"
                )
            k = (
                torch.full((len(index),), position - 1)
                if position is not None
                else torch.randint(0, length, (len(index),), generator=generator)
            )
            rows = torch.arange(len(index))
            old = inputs[rows, k]
            step = torch.randint(1, len(values), (len(index),), generator=generator)
            where = (values[None, :] == old[:, None]).float().argmax(1)
            inputs[rows, k] = values[(where + step) % len(values)]
        if kind == "task" and not bool(
            torch.isin(inputs, torch.tensor(new_task.input_values)).all()
        ):
            values = torch.tensor(new_task.input_values)
            inputs = values[inputs % len(values)]
        new_length = length + shift if kind == "length" else length
        if kind == "length":
            if new_length < 1 or TokenLayout.seq_len(new_length) > width:
                raise IterationHeadsError(
                    f"length {length} + shift {shift} = {new_length} does not fit sequences of "
                    f"width {width} (lengths 1..{(width - 3) // 2}); select other lengths"
                )
            extra = task.sample_inputs(len(index), max(0, shift), generator=generator)
            inputs = torch.cat([inputs, extra], 1)[:, :new_length]
        split = encode(new_task, inputs, layout=layout)
        if int(split.tokens.max()) >= layout.d_vocab or int(split.tokens[:, 1:].max()) > layout.eos:
            raise IterationHeadsError(f"task {new_task.name!r} yields states outside the layout")
        pad = width - split.tokens.shape[1]
        tokens[index] = F.pad(split.tokens, (0, pad), value=layout.eos)
        targets[index] = F.pad(split.targets, (0, pad), value=IGNORE)
        lengths[index] = new_length
    return Split(tokens, targets, lengths, True)


def _pair(model: Any, clean: Data, corrupted: Data) -> tuple[Batch, Batch]:
    a, b = as_batch(model, clean), as_batch(model, corrupted)
    if a.tokens.shape != b.tokens.shape:
        raise IterationHeadsError(
            f"clean and corrupted batches must have the same shape [batch, pos], got "
            f"{tuple(a.tokens.shape)} and {tuple(b.tokens.shape)}"
        )
    return a, b


def _metric_of(model: Any, tokens: Tensor, targets: Tensor, fn: MetricFn, size: int) -> Tensor:
    device, parts = _device(model), []
    with _evaluating(model):
        for t, y in zip(tokens.split(size), targets.split(size), strict=True):
            parts.append(fn(model(t.to(device)), y.to(device)).float().cpu())
    return torch.cat(parts)


# ---------------------------------------------------------------- activation patching


@dataclass(frozen=True)
class ActivationPatching:
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
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> clean = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> bad = corrupt(clean, "input", task="polynomial", position=1)
        >>> result = activation_patching(model, clean, bad)
        >>> result.values.shape, result.n_forward
        (torch.Size([2, 11, 1]), 1)
    """
    if direction not in ("denoise", "noise"):
        raise IterationHeadsError(f"direction {direction!r}, expected 'denoise' or 'noise'")
    if method not in ("batched", "transformer_lens"):
        raise IterationHeadsError(f"method {method!r}, expected 'batched' or 'transformer_lens'")
    if batch_size < 1:
        raise IterationHeadsError(f"batch_size={batch_size}, expected >= 1")
    fn = metric_fn(metric)
    a, b = _pair(model, clean, corrupted)
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
    names = {f"blocks.{layer}.attn.hook_z": layer for layer in range(n_layers)}
    device, metric = _device(model), []
    z: dict[int, list[Tensor]] = {layer: [] for layer in range(n_layers)}
    with _evaluating(model):
        for t, y in zip(tokens.split(size), targets.split(size), strict=True):
            logits, cache = model.run_with_cache(t.to(device), names_filter=lambda n: n in names)
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
    device, passes = _device(model), 0
    with _evaluating(model):
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

                hooks.append((f"blocks.{layer}.attn.hook_z", hook))
            with model.hooks(fwd_hooks=hooks):
                logits = model(base[seq].to(device))
            raw[lay, pos, head, seq] = fn(logits, targets[seq].to(device)).float().cpu()
            passes += 1
    return raw, passes


def _transformer_lens_sweep(
    model: Any, base: Tensor, source: Tensor, targets: Tensor, fn: MetricFn
) -> tuple[Tensor, int]:
    from transformer_lens.patching import get_act_patch_attn_head_out_by_pos

    device = _device(model)
    with _evaluating(model):
        _, cache = model.run_with_cache(
            source.to(device), names_filter=lambda name: name.endswith("attn.hook_z")
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


# ---------------------------------------------------------------- path patching


@dataclass(frozen=True)
class PathPatching:
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
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> clean = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> clean = clean.select(clean.lengths >= 2)
        >>> bad = corrupt(clean, "length", task="polynomial", shift=-1)
        >>> result = path_patch(model, clean, bad,
        ...                     sender=(0, 0), receiver=(1, 0), inputs="q")
        >>> result.patched.shape
        torch.Size([24])
    """
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
    a, b = _pair(model, clean, corrupted)
    width = a.tokens.shape[1]
    pos = torch.zeros(width, dtype=torch.bool)
    if positions is None:
        pos[:] = True
    else:
        values = [positions] if isinstance(positions, int) else list(positions)
        if not values or any(not 0 <= p < width for p in values):
            raise IterationHeadsError(f"positions {values!r}: expected positions in 0..{width - 1}")
        pos[values] = True
    sender_layers = sorted({layer for layer, _ in senders})
    z_clean = head_outputs(model, a.tokens, sender_layers, batch_size)
    z_bad = head_outputs(model, b.tokens, sender_layers, batch_size)
    delta = torch.zeros(*a.tokens.shape, int(model.cfg.d_model))
    for layer, head in senders:
        w_o = model.blocks[layer].attn.W_O[head].detach().cpu().float()  # d_head d_model
        diff = (z_bad[layer][:, :, head] - z_clean[layer][:, :, head]).float().cpu()
        delta += (diff @ w_o) * pos[None, :, None]
    clean_metric = _metric_of(model, a.tokens, a.targets, fn, batch_size)
    bad_metric = _metric_of(model, b.tokens, a.targets, fn, batch_size)
    device, patched, scores = _device(model), [], []
    with _evaluating(model):
        for start in range(0, len(a), batch_size):
            rows = slice(start, start + batch_size)
            hooks = _path_hooks(model, receivers, names, delta[rows])
            with model.hooks(fwd_hooks=hooks):
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


def _path_hooks(
    model: Any, receivers: list[Head], inputs: list[str], delta: Tensor
) -> list[tuple[str, Callable]]:
    """Capture each receiver layer's ``resid_pre``; recompute its heads' q/k/v with ``delta``."""
    hooks: list[tuple[str, Callable]] = []
    for layer in sorted({lay for lay, _ in receivers}):
        heads = [h for lay, h in receivers if lay == layer]
        seen: dict[str, Tensor] = {}
        norm = _norm(model, layer)

        def capture(resid: Tensor, hook: Any, seen: dict[str, Tensor] = seen) -> None:
            seen["resid"] = resid

        hooks.append((f"blocks.{layer}.hook_resid_pre", capture))
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
                b = getattr(attn, f"b_{name.upper()}")[heads]  # head d_head
                if w.shape[0] != len(heads) or x.shape[2] != attn.W_Q.shape[0]:
                    raise IterationHeadsError(
                        f"block {layer}: {name} has {x.shape[2]} heads but W_Q has "
                        f"{attn.W_Q.shape[0]}; grouped-query attention is not supported"
                    )
                same = torch.einsum("bpm,hmd->bphd", norm(resid), w) + b
                expected = x[:, :, heads]
                scale = float(expected.abs().max()) + 1.0
                if float((same - expected).abs().max()) > 1e-4 * scale:
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

            hooks.append((f"blocks.{layer}.attn.hook_{name}", edit))
    return hooks
