"""Does a model iterate with an iteration head, and which heads do it? (docs/paper.md §5-§6)

:func:`detect` runs probe sequences (:class:`~iteration_heads.detection.probes.Probes`) through any
TransformerLens model — a native or HuggingFace ``TransformerBridge``, or a legacy
``HookedTransformer`` — reads every head's attention from ``blocks.{layer}.attn.hook_pattern`` and
scores it against the two attention steps of the paper's circuit. For a probe of input length
``L`` (inputs ``x_1..x_L``, EoI, states ``s_1..s_L``):

* **EoI score**: attention from the queries at ``s_1 .. s_L`` onto the EoI key.
* **Iteration score**: attention from the query before ``s_t`` — EoI for ``t = 1`` (it plays
  ``s_0``), ``s_{t-1}`` after — onto ``x_t``.

Both are summarised with the paper's metrics (:func:`~iteration_heads.training.metrics.score_heads`): mean
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
* the model **iterates** (docs/paper.md §5 step 4: ``s_t = F(s_{t-1}, x_t)`` reads the current state)
  when swapping the CoT states between probes of the same length, inputs kept, changes its
  prediction at the query before ``s_t`` (``t >= 2``) for ``>= MIN_STATE_SENSITIVITY`` of the
  queries whose current state changed. This second forward pass runs whenever iteration heads
  are found (with or without an EoI head). A model trained to copy (``s_t = x_t``) forms the same two attention heads
  (the copy fixture: EoI peakiness 0.52, iteration 1.00) but ignores the state (sensitivity
  0.00): a positional read-out, not an iteration circuit. For a task whose ``F`` often ignores
  the state, this check is conservative;
* the model **has an iteration circuit** (the paper's) when the attention half is there and it
  iterates; it **has iteration heads** when iteration heads (the strongest layer's, or the
  circuit's) are there and it iterates, whatever tells them the position: the paper's EoI head
  is one route, :func:`~iteration_heads.audit` measures which route a model takes;
* **partial patterns** are reported, never counted as a circuit: the rule holds at some lengths
  or some steps ``t`` only (e.g. every other step; at least ``MIN_PARTIAL_SUPPORT`` of them), or
  for a shifted or strided target ``x_{a·t+b}`` (:data:`ALIGNMENTS`) instead of ``x_t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from iteration_heads._torch import attached_hooks, device_of, evaluating, pattern_hook
from iteration_heads.detection.probes import Probes
from iteration_heads.detection.report import DetectionReport
from iteration_heads.detection.scoring import (
    MIN_STATE_SENSITIVITY,
    Scoring,
    probe_targets,
    state_sensitivity,
    uniform_pattern,
)
from iteration_heads.detection.verdict import build_report, find_circuit, find_iteration_heads
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.transformer import model_config
from iteration_heads.passes import final_residual, passes_by_width
from iteration_heads.tasks.task import Task, check_int, short_repr
from iteration_heads.training.metrics import SUMMARY_MIN_LEN

DETECT_BATCH = 512
"""Probes per detection pass at most: the default of :func:`detect` (and of
:func:`~iteration_heads.auditing.audit_checkpoints`)."""

LOGITS_BUDGET = 2**26
"""Most logits held at once (floats); bounds the probes per forward pass for large vocabularies."""


def detect(
    model: torch.nn.Module,
    probes: Probes | None = None,
    *,
    task: str | Task | None = None,
    n_probes: int | None = None,
    min_len: int = SUMMARY_MIN_LEN,
    batch_size: int = DETECT_BATCH,
) -> DetectionReport:
    """Find the EoI heads, the iteration heads and the iteration circuit of ``model``.

    Args:
        model: A TransformerLens model exposing ``blocks.{layer}.attn.hook_pattern``: a native or
            HuggingFace ``TransformerBridge`` (:func:`iteration_heads.model.hf.wrap_hf_model`) or a
            legacy ``HookedTransformer``. Its train/eval mode and hooks are left as found; hooks
            already attached run as usual (one that rewrites ``hook_pattern`` is seen).
        probes: Probe sequences and their positions (:class:`~iteration_heads.detection.probes.Probes`).
            None: the test split of the task the model was trained on (library models only).
        task: With ``probes=None``, probe this task rather than the one in the model's metadata
            (needed for a library model that was built but not trained).
        n_probes: With ``probes=None``, at most this many probes, spread over the lengths
            (None: the whole test split, so the figures match what training logged).
        min_len: Summary figures average over probe lengths ``>= min_len``; the default falls
            back to all lengths when no probe is that long, another value is refused.
        batch_size: Most probes per forward pass.

    Returns:
        A :class:`~iteration_heads.detection.report.DetectionReport`. Cost: one forward pass over the
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
    check_int("n_probes", n_probes, minimum=1, none=True)
    check_int("min_len", min_len, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    _pattern_hooks(model)  # a model that is not a TransformerLens one: say so first
    probes = _resolve_probes(model, probes, task, n_probes)
    measured = measure(model, probes, min_len=min_len, batch_size=batch_size)
    circuit = find_circuit(measured.scoring)
    iteration = find_iteration_heads(measured.scoring, circuit)
    sensitivity = None
    if iteration is not None:  # only then is the second pass needed
        sensitivity = measured.state_sensitivity(model)
    if circuit is not None and circuit.attention_found:
        iterates = sensitivity is None or sensitivity >= MIN_STATE_SENSITIVITY
        circuit = replace(circuit, found=iterates)
    return build_report(measured.scoring, probes, circuit, sensitivity, iteration)


@dataclass(frozen=True)
class Measurement:
    """One forward pass of probes through a model: every head's scores and its predictions.

    Attributes:
        probes: The probes that ran.
        scoring: Every head's (and layer sum's) scores and rule outcomes.
        predictions: The model's next-token prediction (argmax) at each probe's queries (the
            positions that predict its states; -1 elsewhere: only those are unembedded).
        keep: The probe lengths the summaries average over.
        step: Probes per forward pass.
    """

    probes: Probes
    scoring: Scoring
    predictions: Int[Tensor, "batch pos"]
    keep: list[int]
    step: int

    def state_sensitivity(self, model: Any) -> float | None:
        """Swap the chain of thought between probes of the same length (inputs kept) and return
        the fraction of changed predictions at queries whose current state changed (a second
        forward pass; None when no state could be swapped).

        Example:
            >>> from iteration_heads import load
            >>> model = load("polynomial_paper")
            >>> measured = measure(model, Probes.from_model(model, n=64))
            >>> measured.state_sensitivity(model)
            1.0
        """
        swapped = _swap_states(self.probes)
        predicted = _predict(model, self.probes, swapped, self.step)
        return state_sensitivity(self.probes, swapped, self.predictions, predicted, self.keep)


def measure(
    model: torch.nn.Module,
    probes: Probes,
    *,
    min_len: int = SUMMARY_MIN_LEN,
    batch_size: int = 512,
) -> Measurement:
    """Run ``probes`` through ``model`` and score every head against the circuit's two steps.

    The first half of :func:`detect`, for callers that want the scores (or the predictions)
    without a verdict.

    Example:
        >>> from iteration_heads import load
        >>> from iteration_heads.detection.verdict import find_circuit
        >>> model = load("polynomial_paper")
        >>> find_circuit(measure(model, Probes.from_model(model, n=128)).scoring).describe("eoi")
        'EoI head L0H0 (peakiness 0.60)'
    """
    names = _pattern_hooks(model)
    _check_fits(model, probes)
    check_int("batch_size", batch_size, minimum=1)
    check_int("min_len", min_len, minimum=1)
    present = sorted(set(probes.lengths.tolist()))
    keep = [n for n in present if n >= min_len]
    if not keep and min_len != SUMMARY_MIN_LEN:  # only the default falls back to every length
        raise IterationHeadsError(
            f"min_len={short_repr(min_len)}, expected at most the longest probe, {present[-1]}"
        )
    keep = keep or present
    step = _chunk_size(model, probes.width, batch_size)
    measured = _run(model, names, probes, step)
    uniform = probe_targets(uniform_pattern(len(probes), probes.width), probes, probes.max_len)
    scoring = Scoring.of(measured, uniform, probes, keep, len(names))
    return Measurement(probes, scoring, measured["clean"], keep, step)


# ---------------------------------------------------------------- inputs


def _pattern_hooks(model: Any) -> list[str]:
    """The names of the pattern hooks of every layer, or a clear error."""
    n_layers = getattr(getattr(model, "cfg", None), "n_layers", None)
    hook_dict = getattr(model, "hook_dict", None)
    if not isinstance(n_layers, int) or not isinstance(hook_dict, Mapping):
        raise IterationHeadsError(
            f"{type(model).__name__} is not a TransformerLens model (no cfg.n_layers or "
            "hook_dict); expected a TransformerBridge or HookedTransformer — wrap a HuggingFace "
            "model with iteration_heads.wrap_hf_model"
        )
    names = [pattern_hook(layer) for layer in range(n_layers)]
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
    """The probe tokens with each chain of thought replaced by the next probe's of the same
    layout (the same length and positions), inputs kept."""
    tokens = probes.tokens.clone()
    layout = torch.cat(
        [
            probes.lengths[:, None],
            probes.eoi[:, None],
            probes.input_positions,
            probes.query_positions,
            probes.state_positions,
        ],
        1,
    )
    _, group = torch.unique(layout, dim=0, return_inverse=True)
    first = probes.query_positions[:, 0] + 1  # the chain of thought: after the query of s_1 ...
    last = probes.state_positions.gather(1, (probes.lengths - 1)[:, None])[:, 0]  # ... to s_L
    for g in group.unique().tolist():
        index = (group == g).nonzero().flatten()
        span = slice(int(first[index[0]]), int(last[index[0]]) + 1)
        tokens[index, span] = probes.tokens[index.roll(1), span]
    return tokens


# ---------------------------------------------------------------- running the model


def detection_passes(model: Any, probes: Probes) -> list[tuple[int, int]]:
    """``(rows, width)`` of each forward pass of one detection measurement of ``probes``: each
    probe runs to its last state, probes of similar widths share a pass (as
    :func:`~iteration_heads.detection.detect` groups them).

    Example:
        >>> from iteration_heads import load
        >>> model = load("polynomial_paper")
        >>> sum(rows for rows, _ in detection_passes(model, Probes.from_model(model, n=64)))
        64
    """
    if not isinstance(probes, Probes):
        raise IterationHeadsError(f"probes must be Probes, got {type(probes).__name__}")
    d_vocab = getattr(getattr(model, "cfg", None), "d_vocab", None)
    if not isinstance(getattr(getattr(model, "cfg", None), "d_model", None), int):
        raise IterationHeadsError(
            f"{type(model).__name__} is not a TransformerLens model (no cfg.d_model)"
        )
    per_probe = probes.width * (d_vocab if isinstance(d_vocab, int) else 1)
    step = max(1, min(DETECT_BATCH, LOGITS_BUDGET // per_probe))
    return [(len(rows), width) for rows, width in _passes(model, probes, step)]


def _chunk_size(model: Any, width: int, batch_size: int) -> int:
    """Probes per forward pass: ``batch_size``, fewer when the logits would be too large."""
    d_vocab = getattr(model.cfg, "d_vocab", None)
    per_probe = width * (d_vocab if isinstance(d_vocab, int) else 1)
    return max(1, min(batch_size, LOGITS_BUDGET // per_probe))


def _passes(model: Any, probes: Probes, step: int) -> list[tuple[Tensor, int]]:
    """Probes grouped into forward passes of similar widths: each probe runs to its last state
    (attention is causal, so nothing after it changes what detection reads)."""
    last = probes.state_positions.gather(1, (probes.lengths - 1)[:, None])[:, 0]
    widths = torch.maximum(last, probes.eoi) + 1
    return passes_by_width(widths, int(model.cfg.d_model), step)


def _forward(
    model: Any, tokens: Tensor, queries: Bool[Tensor, "batch pos"], hooks: list[tuple[str, Any]]
) -> Int[Tensor, "batch pos"]:
    """Predictions (argmax) at the ``queries`` of ``tokens`` (-1 elsewhere: only those
    positions are unembedded), with ``hooks`` attached."""
    predicted = torch.full(tokens.shape, -1, dtype=torch.long, device=tokens.device)
    resid = final_residual(model, tokens, hooks=hooks)
    if resid is None:
        with attached_hooks(model, hooks):
            predicted[queries] = model(tokens)[queries].argmax(-1)
    else:
        predicted[queries] = model.unembed(resid[queries]).argmax(-1)
    return predicted


def _query_mask(probes: Probes, width: int) -> Bool[Tensor, "batch pos"]:
    """Where each probe's queries are (the positions that predict its states)."""
    valid = torch.arange(probes.max_len)[None, :] < probes.lengths[:, None]
    mask = torch.zeros(len(probes), width, dtype=torch.bool)
    rows = torch.arange(len(probes))[:, None].expand_as(valid)
    mask[rows[valid], probes.query_positions[:, : probes.max_len][valid]] = True
    return mask


def _run(model: Any, names: list[str], probes: Probes, step: int) -> dict[str, Tensor]:
    """Target weights of every probe and the model's predictions at its queries (``"clean"``;
    ``-1`` elsewhere)."""
    device = device_of(model)
    out: dict[str, Tensor] = {}
    cache: dict[str, Tensor] = {}

    def capture(name: str) -> Any:
        def hook(pattern: Tensor, hook: Any) -> None:
            cache[name] = pattern.detach()

        return hook

    with evaluating(model):
        for rows, width in _passes(model, probes, step):
            cache.clear()
            chunk = probes.select(rows)
            tokens = chunk.tokens[:, :width].to(device)
            queries = _query_mask(chunk, width).to(device)
            hooks = [(name, capture(name)) for name in names]
            predicted = _forward(model, tokens, queries, hooks)
            part = probe_targets(_stack(cache, names, tokens.shape), chunk, probes.max_len)
            part["clean"] = torch.full(chunk.tokens.shape, -1, dtype=torch.long)
            part["clean"][:, :width] = predicted.cpu()
            for key, value in part.items():
                if key not in out:
                    out[key] = torch.zeros((len(probes), *value.shape[1:]), dtype=value.dtype)
                out[key][rows] = value.cpu()
    return out


def _predict(model: Any, probes: Probes, tokens: Tensor, step: int) -> Int[Tensor, "batch pos"]:
    """The model's next-token predictions (argmax) at the queries of ``tokens`` (laid out as
    ``probes``), ``-1`` elsewhere."""
    device = device_of(model)
    predicted = torch.full(tokens.shape, -1, dtype=torch.long)
    with evaluating(model):
        for rows, width in _passes(model, probes, step):
            queries = _query_mask(probes.select(rows), width).to(device)
            run = _forward(model, tokens[rows, :width].to(device), queries, [])
            predicted[rows, :width] = run.cpu()
    return predicted


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
