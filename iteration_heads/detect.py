"""Does a model iterate with an iteration head, and which heads do it? (PAPER.md §5-§6)

:func:`detect` runs probe sequences (:class:`~iteration_heads.probes.Probes`) through any
TransformerLens model — a native or HuggingFace ``TransformerBridge``, or a legacy
``HookedTransformer`` — reads every head's attention from ``blocks.{layer}.attn.hook_pattern`` and
scores it against the two attention steps of the paper's circuit. For a probe of input length
``L`` (inputs ``x_1..x_L``, EoI, states ``s_1..s_L``):

* **EoI score**: attention from the queries at ``s_1 .. s_L`` onto the EoI key.
* **Iteration score**: attention from the query before ``s_t`` — EoI for ``t = 1`` (it plays
  ``s_0``), ``s_{t-1}`` after — onto ``x_t``.

Both are summarised with the paper's metrics (:func:`~iteration_heads.evaluate.score_heads`): mean
target weight, **peakiness** (fraction of (probe, query) pairs with target weight > 0.5) and
invariance, averaged over the probe lengths ``>= min_len``. The uniform causal pattern (``1/(q+1)``
on every key ``<= q``), scored the same way, is the chance level. ``tl_score`` is
TransformerLens's head-detector score (``transformer_lens.head_detector``, ``error_measure="mul"``)
with the detection pattern restricted to the CoT query rows: per probe, ``sum(pattern · detection)
/ sum(pattern)`` over those rows, averaged over probes as ``detect_head`` averages over prompts.
Attention rows sum to 1, so it is each probe's mean target weight. A circuit may be spread over
heads, so every score is also computed on the target weights summed over each layer's heads (TL's
formula on the summed pattern is then the heads' average; the uniform baseline is multiplied by
the number of heads).

The decision rules, with the constants below:

* a head, or a layer's summed heads, **is** an EoI / iteration head when its peakiness is
  ``>= MIN_PEAKINESS`` and its peakiness and mean target weight both exceed the uniform
  baseline's by ``>= BASELINE_MARGIN``;
* the **attention half** of the circuit is there when a layer has an EoI head (or EoI layer sum)
  and a *later* layer an iteration head (or layer sum); the best such pair is reported;
* the model **iterates** (PAPER.md §5 step 4: ``s_t = F(s_{t-1}, x_t)`` reads the current state)
  when swapping the CoT states between probes of the same length, inputs kept, changes its
  prediction at the query before ``s_t`` (``t >= 2``) for ``>= MIN_STATE_SENSITIVITY`` of the
  queries whose current state changed. This second forward pass runs only once the attention
  half is found. A model trained to copy (``s_t = x_t``) forms the same two attention heads
  (the copy fixture: EoI peakiness 0.52, iteration 1.00) but ignores the state (sensitivity
  0.00): a positional read-out, not an iteration circuit. For a task whose ``F`` often ignores
  the state, this check is conservative;
* the model **has an iteration circuit** when the attention half is there and it iterates;
* **partial patterns** are reported, never counted as a circuit: the rule holds at some lengths
  or some steps ``t`` only (e.g. every other step; at least ``MIN_PARTIAL_SUPPORT`` of them), or
  for a shifted or strided target ``x_{a·t+b}`` (:data:`ALIGNMENTS`) instead of ``x_t``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.evaluate import PEAK_THRESHOLD, SUMMARY_MIN_LEN, score_heads, target_weights
from iteration_heads.model import model_config
from iteration_heads.probes import Probes
from iteration_heads.report import Circuit, DetectionReport, ranges
from iteration_heads.tasks import Task

MIN_PEAKINESS = 0.5
"""A head plays a role when at least half its queries put > 0.5 on the target (PAPER.md §6;
trained models reach ~0.6 for EoI and ~1.0 for iteration, PAPER.md §7)."""

BASELINE_MARGIN = 0.25
"""...and when its peakiness and mean target weight beat the uniform causal pattern by this much.
A single head's uniform peakiness is 0 past the first query; the margin matters for layer sums,
where ``n_heads/(q+1)`` exceeds 0.5 at early queries."""

MIN_STATE_SENSITIVITY = 0.5
"""The model iterates when swapping the current state changes at least this fraction of its
predictions (the polynomial fixture: 1.00; the copy fixture: 0.00)."""

MIN_PARTIAL_SUPPORT = 2
"""A partial pattern needs the rule to hold at this many lengths, or steps ``t``: one alone is
weak evidence (random models with peaky attention pass at a single length now and then, and a
previous-token head passes the EoI rule at the first CoT query)."""

ALIGNMENTS: tuple[tuple[int, int], ...] = ((1, -2), (1, -1), (1, 1), (1, 2), (2, -1), (2, 0))
"""Alternative iteration targets tried for partial patterns: ``x_{a·t+b}`` instead of ``x_t``."""

LOGITS_BUDGET = 2**26
"""Most logits held at once (floats); bounds the probes per forward pass for large vocabularies."""

KINDS = ("eoi", "iteration")
_METRICS = ("mean", "peakiness", "invariance")


def detect(
    model: torch.nn.Module,
    probes: Probes | None = None,
    *,
    task: str | Task | None = None,
    n_probes: int | None = None,
    min_len: int = SUMMARY_MIN_LEN,
    batch_size: int = 512,
) -> DetectionReport:
    """Find the EoI heads, the iteration heads and the iteration circuit of ``model``.

    Args:
        model: A TransformerLens model exposing ``blocks.{layer}.attn.hook_pattern``: a native or
            HuggingFace ``TransformerBridge`` (:func:`iteration_heads.hf.wrap_hf_model`) or a
            legacy ``HookedTransformer``. Its train/eval mode and hooks are left as found; hooks
            already attached run as usual (one that rewrites ``hook_pattern`` is seen).
        probes: Probe sequences and their positions (:class:`~iteration_heads.probes.Probes`).
            None: the test split of the task the model was trained on (library models only).
        task: With ``probes=None``, probe this task rather than the one in the model's metadata
            (needed for a library model that was built but not trained).
        n_probes: With ``probes=None``, at most this many probes, spread over the lengths
            (None: the whole test split, so the figures match what training logged).
        min_len: Summary figures average over probe lengths ``>= min_len`` (all if none is).
        batch_size: Most probes per forward pass.

    Returns:
        A :class:`~iteration_heads.report.DetectionReport`. Cost: one forward pass over the
        probes plus vectorised gathers, and a second pass (states swapped) only when both
        attention halves of the circuit are found.

    Raises:
        IterationHeadsError: for a model without pattern hooks, or probes that do not fit it.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=6))
        >>> report = detect(model, task="polynomial", n_probes=120)
        >>> report.has_iteration_circuit, len(report.heads)
        (False, 2)
        >>> report.verdict  # doctest: +ELLIPSIS
        'no iteration circuit: largest peakiness EoI ... iteration ...'
    """
    names = _pattern_hooks(model)
    probes = _resolve_probes(model, probes, task, n_probes)
    _check_fits(model, probes)
    if batch_size < 1:
        raise IterationHeadsError(f"batch_size={batch_size}, expected >= 1")
    step = _chunk_size(model, probes.width, batch_size)
    measured = _run(model, names, probes, step)
    uniform = _targets(_uniform_pattern(len(probes), probes.width), probes, probes.max_len)
    present = sorted(set(probes.lengths.tolist()))
    keep = [n for n in present if n >= min_len] or present
    scores = _Scoring.of(measured, uniform, probes, keep, len(names))
    circuit = _circuit(scores)
    sensitivity = None
    if circuit is not None and circuit.attention_found:  # only then is the second pass needed
        swapped = _swap_states(probes)
        predictions = _predict(model, swapped, step)
        sensitivity = _state_sensitivity(probes, swapped, measured["clean"], predictions, keep)
        iterates = sensitivity is None or sensitivity >= MIN_STATE_SENSITIVITY
        circuit = replace(circuit, found=iterates)
    return _report(scores, probes, circuit, sensitivity)


# ---------------------------------------------------------------- inputs


def _pattern_hooks(model: Any) -> list[str]:
    """The names of the pattern hooks of every layer, or a clear error."""
    n_layers = getattr(getattr(model, "cfg", None), "n_layers", None)
    hook_dict = getattr(model, "hook_dict", None)
    if not isinstance(n_layers, int) or not isinstance(hook_dict, Mapping):
        raise IterationHeadsError(
            f"{type(model).__name__} is not a TransformerLens model (no cfg.n_layers or "
            "hook_dict); expected a TransformerBridge or HookedTransformer — wrap a HuggingFace "
            "model with iteration_heads.hf.wrap_hf_model"
        )
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    missing = [name for name in names if name not in hook_dict]
    if missing:
        raise IterationHeadsError(
            f"{type(model).__name__} has no attention-pattern hooks {missing}; detection reads "
            "blocks.{layer}.attn.hook_pattern [batch, head, query, key] in every layer"
        )
    return names


def _resolve_probes(
    model: torch.nn.Module, probes: Probes | None, task: str | Task | None, n: int | None
) -> Probes:
    if probes is not None:
        if task is not None or n is not None:
            raise IterationHeadsError(
                "task= and n_probes= choose the probes of a library model; leave them out when "
                "passing probes="
            )
        if not isinstance(probes, Probes):
            raise IterationHeadsError(f"probes must be a Probes, got {type(probes).__name__}")
        return probes
    try:
        model_config(model)
    except IterationHeadsError:
        raise IterationHeadsError(
            f"{type(model).__name__} was not built by iteration_heads, so there is no task to "
            "probe: pass probes=Probes(tokens, lengths, input_start=..., eoi=...) or "
            "Probes.from_task(task, symbol_to_token=..., eoi_token=..., max_len=...)"
        ) from None
    return Probes.from_model(model, task=task, n=n)


def _check_fits(model: Any, probes: Probes) -> None:
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if isinstance(n_ctx, int) and probes.width > n_ctx:
        raise IterationHeadsError(
            f"probes of width {probes.width} exceed the model's n_ctx={n_ctx}; use shorter "
            "probes (a smaller max_len) or a model with a longer context"
        )
    d_vocab = getattr(model.cfg, "d_vocab", None)
    low, high = int(probes.tokens.min()), int(probes.tokens.max())
    if low < 0 or (isinstance(d_vocab, int) and high >= d_vocab):
        raise IterationHeadsError(
            f"probe token id {low if low < 0 else high} outside the model's vocabulary "
            f"[0, {d_vocab})"
        )


def _swap_states(probes: Probes) -> Int[Tensor, "batch pos"]:
    """The probe tokens with each CoT span replaced by the next probe's of the same layout."""
    tokens = probes.tokens.clone()
    key = torch.stack([probes.lengths, probes.input_start, probes.eoi, probes.cot_start], 1)
    groups, group = torch.unique(key, dim=0, return_inverse=True)
    for g, (length, _, _, cot) in enumerate(groups.tolist()):
        index = (group == g).nonzero().flatten()
        span = slice(cot, cot + length)
        tokens[index, span] = probes.tokens[index.roll(1), span]
    return tokens


# ---------------------------------------------------------------- running the model


@contextmanager
def _evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside; every module's own mode restored after."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, mode in modes:
            module.training = mode


def _chunk_size(model: Any, width: int, batch_size: int) -> int:
    """Probes per forward pass: ``batch_size``, fewer when the logits would be too large."""
    d_vocab = getattr(model.cfg, "d_vocab", None)
    per_probe = width * (d_vocab if isinstance(d_vocab, int) else 1)
    return max(1, min(batch_size, LOGITS_BUDGET // per_probe))


def _device(model: torch.nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _run(model: Any, names: list[str], probes: Probes, step: int) -> dict[str, Tensor]:
    """Target weights of every probe and the model's predictions (``"clean"``)."""
    device, wanted = _device(model), set(names)
    parts = []
    with _evaluating(model):
        for start in range(0, len(probes), step):
            chunk = probes.select(slice(start, start + step))
            tokens = chunk.tokens.to(device)
            logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in wanted)
            part = _targets(_stack(cache, names, tokens.shape), chunk, probes.max_len)
            part["clean"] = logits.argmax(-1)
            parts.append({k: v.cpu() for k, v in part.items()})
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _predict(model: Any, tokens: Tensor, step: int) -> Int[Tensor, "batch pos"]:
    """The model's next-token predictions (argmax) at every position."""
    device = _device(model)
    with _evaluating(model):
        return torch.cat([model(t.to(device)).argmax(-1).cpu() for t in tokens.split(step)])


def _stack(cache: Any, names: list[str], shape: torch.Size) -> Float[Tensor, "batch lh q k"]:
    """Every layer's pattern, the heads of all layers stacked: ``[batch, layer·head, q, k]``."""
    missing = [name for name in names if name not in cache]
    if missing:
        raise IterationHeadsError(
            f"running the model did not fire the hooks {missing}; expected an attention "
            "implementation that exposes its pattern"
        )
    batch, width = shape
    shapes = sorted({tuple(cache[name].shape) for name in names})
    if len(shapes) != 1 or shapes[0][0] != batch or shapes[0][2:] != (width, width):
        raise IterationHeadsError(
            f"attention patterns of shapes {shapes}; expected [batch={batch}, head, {width}, "
            f"{width}] with the same number of heads in every layer"
        )
    return torch.cat([cache[name].float() for name in names], 1)


def _uniform_pattern(batch: int, width: int) -> Float[Tensor, "batch 1 q k"]:
    """The uniform causal pattern: weight ``1/(q+1)`` on every key ``<= q``."""
    causal = torch.tril(torch.ones(width, width))
    return (causal / causal.sum(1, keepdim=True)).expand(batch, 1, width, width)


# ---------------------------------------------------------------- target weights


def _canonical_index(probes: Probes, max_len: int) -> Int[Tensor, "batch w"]:
    """For each position of the library's layout, the probe's own position.

    Library layout, which :func:`~iteration_heads.evaluate.target_weights` reads: ``x_j`` at ``j``,
    EoI at ``L+1``, ``s_j`` at ``L+1+j``; width ``2·max_len + 2``. Unused slots map to 0.
    """
    j = torch.arange(2 * max_len + 2)[None, :]
    length = probes.lengths[:, None]
    index = torch.where(j == 0, (probes.input_start[:, None] - 1).clamp(min=0), 0)
    index = torch.where((j >= 1) & (j <= length), probes.input_start[:, None] + j - 1, index)
    index = torch.where(j == length + 1, probes.eoi[:, None], index)
    states = (j >= length + 2) & (j <= 2 * length + 1)
    return torch.where(states, probes.cot_start[:, None] + j - length - 2, index)


def _targets(pattern: Float[Tensor, "batch lh q k"], probes: Probes, max_len: int) -> dict:
    """Target weights ``[probe, t, layer·head]`` of one chunk, padded to ``max_len`` steps.

    Keys: ``eoi``, ``iteration``; ``eoi_rows`` / ``iteration_rows``, the attention row sums at the
    same queries (the head detector's denominator); ``valid`` ``[probe, t]``; and for each
    ``(a, b)`` of :data:`ALIGNMENTS`, the weight onto ``x_{a·t+b}`` and where it exists.
    """
    batch, n_heads, width, _ = pattern.shape
    device = pattern.device
    index = _canonical_index(probes, max_len).to(device)
    size = index.shape[1]
    rows = pattern.gather(2, index[:, None, :, None].expand(-1, n_heads, -1, width))
    canonical = rows.gather(3, index[:, None, None, :].expand(-1, n_heads, size, -1))
    lengths = probes.lengths.to(device)
    eoi, iteration, valid = target_weights(canonical, lengths)
    missing = max_len - valid.shape[1]
    out = {
        "eoi": F.pad(eoi, (0, 0, 0, missing)),
        "iteration": F.pad(iteration, (0, 0, 0, missing)),
        "valid": F.pad(valid, (0, missing)),
    }
    t = torch.arange(1, max_len + 1, device=device)[None, :]
    length = lengths[:, None]
    in_range = t <= length
    queries = {
        "eoi": torch.where(in_range, length + 1 + t, length + 1),
        "iteration": torch.where(in_range, length + t, length + 1),
    }
    row_sums = pattern.sum(-1).gather(2, index[:, None, :].expand(-1, n_heads, -1))
    for kind, query in queries.items():
        picked = row_sums.gather(2, query[:, None, :].expand(-1, n_heads, -1))
        out[f"{kind}_rows"] = picked.transpose(1, 2) * in_range[..., None]
    per_head = canonical.permute(0, 2, 3, 1)  # batch query key head
    probe = torch.arange(batch, device=device)[:, None]
    for a, b in ALIGNMENTS:
        key = a * t + b
        ok = in_range & (key >= 1) & (key <= length)
        weight = per_head[probe, queries["iteration"], torch.where(ok, key, length + 1)]
        out[f"aligned {a} {b}"] = weight * ok[..., None]
        out[f"aligned_valid {a} {b}"] = ok
    return out


# ---------------------------------------------------------------- scores


@dataclass(frozen=True)
class _Scores:
    """One kind of score of a set of heads (or layer sums): tensors ``[..., layer, head]``."""

    lengths: list[int]  # every probe length, the order of the per_length rows
    per_length: dict[str, Tensor]  # mean / peakiness / invariance: [length, layer, head]
    summary: dict[str, Tensor]  # the same averaged over the summary lengths: [layer, head]
    tl_score: Tensor  # [layer, head]
    step_peakiness: Tensor  # [t, layer, head], over the summary lengths
    step_mean: Tensor
    aligned_peakiness: dict[tuple[int, int], Tensor]  # [layer, head]
    aligned_mean: dict[tuple[int, int], Tensor]


def _score(
    weights: Float[Tensor, "probe t layer head"],
    rows: Float[Tensor, "probe t layer head"],
    valid: Bool[Tensor, "probe t"],
    lengths: Int[Tensor, " probe"],
    keep: list[int],
    aligned: dict[tuple[int, int], tuple[Tensor, Tensor]],
) -> _Scores:
    """The paper's metrics per length, their summary over ``keep``, the head-detector score,
    and per-step and aligned peakiness (the last two over the summary lengths only)."""
    length_values = sorted(set(lengths.tolist()))
    scores = score_heads(weights, valid, lengths, length_values)
    per_length = {m: getattr(scores, m) for m in _METRICS}
    kept = [i for i, n in enumerate(length_values) if n in keep]
    summary = {m: v[kept].mean(0) for m, v in per_length.items()}
    chosen = torch.isin(lengths, torch.tensor(keep))
    w, r, ok = weights[chosen], rows[chosen], valid[chosen][..., None, None]
    # head detector, "mul": per probe sum(pattern·detection) / sum(pattern) on the CoT rows
    tl_score = ((w * ok).sum(1) / (r * ok).sum(1)).mean(0)
    count = ok.sum(0).clamp(min=1)
    step_peakiness = ((w > PEAK_THRESHOLD) & ok).sum(0) / count
    step_mean = (w * ok).sum(0) / count
    aligned_peakiness, aligned_mean = {}, {}
    for key, (values, where) in aligned.items():
        x, there = values[chosen], where[chosen][..., None, None]
        n = there.sum((0, 1)).clamp(min=1)
        aligned_peakiness[key] = ((x > PEAK_THRESHOLD) & there).sum((0, 1)) / n
        aligned_mean[key] = (x * there).sum((0, 1)) / n
    return _Scores(
        length_values,
        per_length,
        summary,
        tl_score,
        step_peakiness,
        step_mean,
        aligned_peakiness,
        aligned_mean,
    )


def _passes(peakiness: Tensor, base_peakiness: Tensor, mean: Tensor, base_mean: Tensor) -> Tensor:
    """The detection rule: peaky enough, and clearly above the uniform baseline."""
    return (
        (peakiness >= MIN_PEAKINESS)
        & (peakiness - base_peakiness >= BASELINE_MARGIN)
        & (mean - base_mean >= BASELINE_MARGIN)
    )


@dataclass(frozen=True)
class _Passes:
    """Where the rule holds, for one kind of score of a set of heads (or layer sums)."""

    overall: Tensor  # [layer, head]
    lengths: Tensor  # [length, layer, head]
    steps: Tensor  # [t, layer, head]
    aligned: dict[tuple[int, int], Tensor]  # [layer, head]

    @classmethod
    def of(cls, s: _Scores, base: _Scores) -> _Passes:
        return cls(
            _passes(*_pair(s.summary, base.summary)),
            _passes(*_pair(s.per_length, base.per_length)),
            _passes(s.step_peakiness, base.step_peakiness, s.step_mean, base.step_mean),
            {
                k: _passes(
                    s.aligned_peakiness[k],
                    base.aligned_peakiness[k],
                    s.aligned_mean[k],
                    base.aligned_mean[k],
                )
                for k in s.aligned_peakiness
            },
        )


def _pair(s: dict[str, Tensor], base: dict[str, Tensor]) -> tuple[Tensor, ...]:
    return s["peakiness"], base["peakiness"], s["mean"], base["mean"]


@dataclass(frozen=True)
class _Scoring:
    """Scores and rule outcomes of the heads and of the layer sums, for both kinds."""

    heads: dict[str, _Scores]
    head_base: dict[str, _Scores]
    layers: dict[str, _Scores]
    layer_base: dict[str, _Scores]
    head_pass: dict[str, _Passes]
    layer_pass: dict[str, _Passes]
    keep: list[int]
    steps: list[int]  # steps t present among the summary lengths
    n_layers: int
    n_heads: int

    @classmethod
    def of(
        cls,
        measured: dict[str, Tensor],
        uniform: dict[str, Tensor],
        probes: Probes,
        keep: list[int],
        n_layers: int,
    ) -> _Scoring:
        n_heads = measured["eoi"].shape[-1] // n_layers
        valid, lengths = measured["valid"], probes.lengths

        def split(x: Tensor, layers: int) -> Tensor:  # [probe, t, layer·head] -> [.., layer, head]
            return x.reshape(*x.shape[:2], layers, -1)

        def aligned(kind: str, source: dict[str, Tensor], layers: int, scale: int | None) -> dict:
            """Alternative targets, for iteration only; ``scale`` None sums a layer's heads."""
            out: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
            if kind != "iteration":
                return out
            for a, b in ALIGNMENTS:
                w = split(source[f"aligned {a} {b}"], layers)
                w = w.sum(-1, keepdim=True) if scale is None else w * scale
                out[(a, b)] = (w, source[f"aligned_valid {a} {b}"])
            return out

        heads, head_base, layers, layer_base = {}, {}, {}, {}
        for kind in KINDS:
            w, r = split(measured[kind], n_layers), split(measured[f"{kind}_rows"], n_layers)
            u, ur = split(uniform[kind], 1), split(uniform[f"{kind}_rows"], 1)
            heads[kind] = _score(w, r, valid, lengths, keep, aligned(kind, measured, n_layers, 1))
            head_base[kind] = _score(
                u, ur, uniform["valid"], lengths, keep, aligned(kind, uniform, 1, 1)
            )
            summed, summed_rows = w.sum(-1, keepdim=True), r.sum(-1, keepdim=True)
            layers[kind] = _score(
                summed, summed_rows, valid, lengths, keep, aligned(kind, measured, n_layers, None)
            )
            layer_base[kind] = _score(
                u * n_heads,
                ur * n_heads,
                uniform["valid"],
                lengths,
                keep,
                aligned(kind, uniform, 1, n_heads),
            )
        chosen = torch.isin(lengths, torch.tensor(keep))
        present = valid[chosen].any(0).tolist()
        return cls(
            heads,
            head_base,
            layers,
            layer_base,
            {k: _Passes.of(heads[k], head_base[k]) for k in KINDS},
            {k: _Passes.of(layers[k], layer_base[k]) for k in KINDS},
            keep,
            [t + 1 for t, there in enumerate(present) if there],
            n_layers,
            n_heads,
        )


def _state_sensitivity(
    probes: Probes, swapped: Tensor, clean: Tensor, predicted: Tensor, keep: list[int]
) -> float | None:
    """Fraction of the queries before ``s_t`` (``t >= 2``) whose current state was swapped and
    whose prediction changed; None when no state could be swapped."""
    t = torch.arange(2, probes.max_len + 1)[None, :]
    there = (t <= probes.lengths[:, None]) & torch.isin(probes.lengths, torch.tensor(keep))[:, None]
    position = torch.where(there, probes.cot_start[:, None] + t - 2, 0)
    changed = (probes.tokens.gather(1, position) != swapped.gather(1, position)) & there
    if not bool(changed.any()):
        return None
    moved = clean.gather(1, position) != predicted.gather(1, position)
    return float(moved[changed].float().mean())


# ---------------------------------------------------------------- the report


def _report(
    s: _Scoring, probes: Probes, circuit: Circuit | None, sensitivity: float | None
) -> DetectionReport:
    partial: list[str] = []
    head_notes: dict[tuple[int, int], list[str]] = {}
    layer_notes: dict[int, list[str]] = {}
    for kind in KINDS:
        for layer in range(s.n_layers):
            explained = False
            for head in range(s.n_heads):
                notes = _describe_partial(s.head_pass[kind], s.heads[kind], layer, head, s)
                explained |= bool(notes) or bool(s.head_pass[kind].overall[layer, head])
                head_notes.setdefault((layer, head), []).extend(f"{kind} {n}" for n in notes)
                partial += [f"L{layer}H{head} {kind} {n}" for n in notes]
            if s.n_heads > 1 and not explained and not bool(s.layer_pass[kind].overall[layer, 0]):
                notes = _describe_partial(s.layer_pass[kind], s.layers[kind], layer, 0, s)
                layer_notes.setdefault(layer, []).extend(f"{kind} {n}" for n in notes)
                partial += [f"layer {layer} (heads summed) {kind} {n}" for n in notes]
    heads = _frame(s.heads, s.head_base, s.head_pass, s.n_layers, s.n_heads)
    heads["partial"] = [
        "; ".join(head_notes.get((layer, head), []))
        for layer in range(s.n_layers)
        for head in range(s.n_heads)
    ]
    layers = _frame(s.layers, s.layer_base, s.layer_pass, s.n_layers, 1).drop(columns="head")
    layers.insert(1, "n_heads", s.n_heads)
    layers["partial"] = ["; ".join(layer_notes.get(layer, [])) for layer in range(s.n_layers)]
    return DetectionReport(
        heads=heads,
        layers=layers,
        per_length=_per_length_frame(s),
        circuit=circuit,
        state_sensitivity=sensitivity,
        partial=tuple(partial),
        verdict=_verdict(circuit, sensitivity, heads, layers, s.n_layers, len(partial)),
        probes={
            "n": len(probes),
            "width": probes.width,
            "lengths": ranges(sorted(set(probes.lengths.tolist()))),
            "summary_lengths": ranges(s.keep),
            "source": probes.source,
        },
        thresholds={
            "peak_threshold": PEAK_THRESHOLD,
            "min_peakiness": MIN_PEAKINESS,
            "baseline_margin": BASELINE_MARGIN,
            "min_state_sensitivity": MIN_STATE_SENSITIVITY,
            "min_partial_support": MIN_PARTIAL_SUPPORT,
        },
    )


def _describe_partial(
    passes: _Passes, scores: _Scores, layer: int, head: int, s: _Scoring
) -> list[str]:
    """Readable partial patterns of one head (or layer sum), for one kind."""
    notes = []
    by_length = passes.lengths[:, layer, head].tolist()
    lengths = [n for n, ok in zip(scores.lengths, by_length, strict=True) if ok and n in s.keep]
    if MIN_PARTIAL_SUPPORT <= len(lengths) < len(s.keep):
        notes.append(f"at lengths {ranges(lengths)} only")
    by_step = passes.steps[:, layer, head].tolist()
    steps = [t for t in s.steps if by_step[t - 1]]
    if MIN_PARTIAL_SUPPORT <= len(steps) < len(s.steps):
        odd, even = [t for t in s.steps if t % 2], [t for t in s.steps if not t % 2]
        if steps in (odd, even):
            notes.append(f"at every other step ({'odd' if steps == odd else 'even'} t) only")
        else:
            notes.append(f"at steps t = {ranges(steps)} only")
    aligned = [
        (float(scores.aligned_peakiness[k][layer, head]), k)
        for k, ok in passes.aligned.items()
        if bool(ok[layer, head])
    ]
    if aligned:
        peak, (a, b) = max(aligned)
        target = f"x_{{{'' if a == 1 else a}t{'' if b == 0 else f'{b:+d}'}}}"
        shape = "shifted" if a == 1 else "strided"
        notes.append(f"{shape}: attends to {target} instead of x_t (peakiness {peak:.2f})")
    return notes


def _frame(
    scores: dict[str, _Scores],
    base: dict[str, _Scores],
    passes: dict[str, _Passes],
    n_layers: int,
    n_heads: int,
) -> pd.DataFrame:
    """One row per (layer, head): each kind's summary scores and the uniform baseline's."""
    layer, head = torch.meshgrid(torch.arange(n_layers), torch.arange(n_heads), indexing="ij")
    size = n_layers * n_heads
    columns: dict[str, Any] = {"layer": layer.flatten().numpy(), "head": head.flatten().numpy()}
    for kind in KINDS:
        s, b = scores[kind], base[kind]
        for metric in _METRICS:
            columns[f"{kind}_{metric}"] = s.summary[metric].flatten().numpy()
        columns[f"{kind}_tl_score"] = s.tl_score.flatten().numpy()
        for metric in ("mean", "peakiness"):
            columns[f"{kind}_uniform_{metric}"] = b.summary[metric].flatten().expand(size).numpy()
    frame = pd.DataFrame(columns)
    flags = {k: passes[k].overall.flatten().tolist() for k in KINDS}
    frame["role"] = ["+".join(k for k in KINDS if flags[k][i]) for i in range(size)]
    return frame


def _per_length_frame(s: _Scoring) -> pd.DataFrame:
    """Long table: every head's metrics per probe length, with the uniform baseline."""
    frames = []
    for kind in KINDS:
        scores, base = s.heads[kind], s.head_base[kind]
        shape = (len(scores.lengths), s.n_layers, s.n_heads)
        length, layer, head = torch.meshgrid(
            torch.tensor(scores.lengths),
            torch.arange(s.n_layers),
            torch.arange(s.n_heads),
            indexing="ij",
        )
        columns: dict[str, Any] = {
            "layer": layer.flatten().numpy(),
            "head": head.flatten().numpy(),
            "kind": kind,
            "length": length.flatten().numpy(),
        }
        for metric in _METRICS:
            columns[metric] = scores.per_length[metric].flatten().numpy()
        for metric in ("mean", "peakiness"):
            columns[f"uniform_{metric}"] = base.per_length[metric].expand(shape).flatten().numpy()
        frames.append(pd.DataFrame(columns))
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["layer", "head", "kind", "length"], ignore_index=True)


def _circuit(s: _Scoring) -> Circuit | None:
    """The best (EoI layer < iteration layer) pair: both halves passing first, then strength
    (peakiness above the uniform baseline, the best of the layer's heads and of their sum).
    ``found`` is provisional: the caller checks that the model uses its state."""
    if s.n_layers < 2:
        return None
    strength, passing = {}, {}
    for kind in KINDS:
        lift_heads = s.heads[kind].summary["peakiness"] - s.head_base[kind].summary["peakiness"]
        lift_sum = s.layers[kind].summary["peakiness"] - s.layer_base[kind].summary["peakiness"]
        strength[kind] = torch.maximum(lift_heads.amax(-1), lift_sum[:, 0]).tolist()
        passing[kind] = (
            s.head_pass[kind].overall.any(-1) | s.layer_pass[kind].overall[:, 0]
        ).tolist()
    pairs = [(a, b) for a in range(s.n_layers) for b in range(a + 1, s.n_layers)]
    eoi_layer, it_layer = max(
        pairs,
        key=lambda p: (
            passing["eoi"][p[0]] and passing["iteration"][p[1]],
            strength["eoi"][p[0]] + strength["iteration"][p[1]],
        ),
    )

    def half(kind: str, layer: int) -> tuple[tuple[int, ...], bool, float]:
        heads = tuple(int(h) for h in s.head_pass[kind].overall[layer].nonzero().flatten())
        summed = not heads and bool(s.layer_pass[kind].overall[layer, 0])
        peaks = s.heads[kind].summary["peakiness"][layer]
        if summed:
            return heads, summed, float(s.layers[kind].summary["peakiness"][layer, 0])
        return heads, summed, float(peaks[list(heads)].max() if heads else peaks.max())

    eoi_heads, eoi_summed, eoi_peak = half("eoi", eoi_layer)
    it_heads, it_summed, it_peak = half("iteration", it_layer)
    attention = passing["eoi"][eoi_layer] and passing["iteration"][it_layer]
    return Circuit(
        found=attention,
        attention_found=attention,
        eoi_layer=eoi_layer,
        iteration_layer=it_layer,
        eoi_heads=eoi_heads,
        iteration_heads=it_heads,
        eoi_summed=eoi_summed,
        iteration_summed=it_summed,
        eoi_peakiness=eoi_peak,
        iteration_peakiness=it_peak,
    )


def _verdict(
    circuit: Circuit | None,
    sensitivity: float | None,
    heads: pd.DataFrame,
    layers: pd.DataFrame,
    n_layers: int,
    n_partial: int,
) -> str:
    suffix = f"; {n_partial} partial pattern(s), see .partial" if n_partial else ""
    if circuit is not None and circuit.attention_found:
        pair = f"{circuit.describe('eoi')} -> {circuit.describe('iteration')}"
        state = "not measured" if sensitivity is None else f"{sensitivity:.2f}"
        if circuit.found:
            return f"iteration circuit: {pair}; state sensitivity {state}"
        return (
            f"no iteration circuit: {pair} fetch x_t, but the predictions ignore the current "
            f"state (sensitivity {state}): a positional read-out, as for copying" + suffix
        )

    def layers_with(kind: str) -> list[int]:
        return sorted(
            {int(x) for x in heads.loc[heads["role"].str.contains(kind), "layer"]}
            | {int(x) for x in layers.loc[layers["role"].str.contains(kind), "layer"]}
        )

    eoi_layers, it_layers = layers_with("eoi"), layers_with("iteration")
    if n_layers < 2:
        reason = "one layer cannot host the two-step circuit"
    elif it_layers:
        reason = f"iteration heads in layer(s) {it_layers} but no EoI head in an earlier layer"
    elif eoi_layers:
        reason = f"EoI heads in layer(s) {eoi_layers} but no iteration head in a later layer"
    else:
        best = [heads.loc[heads[f"{k}_peakiness"].idxmax()] for k in KINDS]
        reason = "largest peakiness " + ", ".join(
            f"{label} {row[f'{k}_peakiness']:.2f} (L{int(row['layer'])}H{int(row['head'])})"
            for label, k, row in zip(("EoI", "iteration"), KINDS, best, strict=True)
        )
    return f"no iteration circuit: {reason}{suffix}"
