"""From scores to a :class:`~iteration_heads.detection.report.DetectionReport`: the best
(EoI layer, iteration layer) pair, partial patterns, the tables and the one-line verdict.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from iteration_heads.detection.probes import Probes
from iteration_heads.detection.report import (
    Circuit,
    DetectionReport,
    IterationHeads,
    describe_found,
    passing,
    ranges,
)
from iteration_heads.detection.scoring import (
    BASELINE_MARGIN,
    KINDS,
    METRICS,
    MIN_PARTIAL_SUPPORT,
    MIN_PEAKINESS,
    MIN_STATE_SENSITIVITY,
    KindScores,
    RulePasses,
    Scoring,
)
from iteration_heads.training.metrics import PEAK_THRESHOLD


def build_report(
    s: Scoring,
    probes: Probes,
    circuit: Circuit | None,
    sensitivity: float | None,
    iteration: IterationHeads | None = None,
) -> DetectionReport:
    """The :class:`~iteration_heads.detection.report.DetectionReport` of scored heads: tables,
    partial patterns, the circuit (as checked by the caller) and the one-line verdict.

    Example:
        >>> from iteration_heads import Probes, load
        >>> from iteration_heads.detection.detector import measure
        >>> model = load("copy")
        >>> probes = Probes.from_model(model, n=120)
        >>> scoring = measure(model, probes).scoring
        >>> build_report(scoring, probes, find_circuit(scoring), None).found("iteration")
        [(1, 0)]
    """
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
        verdict=_verdict(circuit, iteration, sensitivity, heads, layers, s.n_layers, len(partial)),
        iteration=iteration,
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
    passes: RulePasses, scores: KindScores, layer: int, head: int, s: Scoring
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
    scores: dict[str, KindScores],
    base: dict[str, KindScores],
    passes: dict[str, RulePasses],
    n_layers: int,
    n_heads: int,
) -> pd.DataFrame:
    """One row per (layer, head): each kind's summary scores and the uniform baseline's."""
    layer, head = torch.meshgrid(torch.arange(n_layers), torch.arange(n_heads), indexing="ij")
    size = n_layers * n_heads
    columns: dict[str, Any] = {"layer": layer.flatten().numpy(), "head": head.flatten().numpy()}
    for kind in KINDS:
        s, b = scores[kind], base[kind]
        for metric in METRICS:
            columns[f"{kind}_{metric}"] = s.summary[metric].flatten().numpy()
        columns[f"{kind}_tl_score"] = s.tl_score.flatten().numpy()
        for metric in ("mean", "peakiness"):
            columns[f"{kind}_uniform_{metric}"] = b.summary[metric].flatten().expand(size).numpy()
    frame = pd.DataFrame(columns)
    flags = {k: passes[k].overall.flatten().tolist() for k in KINDS}
    frame["role"] = ["+".join(k for k in KINDS if flags[k][i]) for i in range(size)]
    return frame


def _per_length_frame(s: Scoring) -> pd.DataFrame:
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
        for metric in METRICS:
            columns[metric] = scores.per_length[metric].flatten().numpy()
        for metric in ("mean", "peakiness"):
            columns[f"uniform_{metric}"] = base.per_length[metric].expand(shape).flatten().numpy()
        frames.append(pd.DataFrame(columns))
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["layer", "head", "kind", "length"], ignore_index=True)


def _half(s: Scoring, kind: str, layer: int) -> tuple[tuple[int, ...], bool, float]:
    """The heads of ``layer`` that pass for ``kind`` (or its summed heads), and the peakiness."""
    heads = tuple(int(h) for h in s.head_pass[kind].overall[layer].nonzero().flatten())
    summed = not heads and bool(s.layer_pass[kind].overall[layer, 0])
    peaks = s.heads[kind].summary["peakiness"][layer]
    if summed:
        return heads, summed, float(s.layers[kind].summary["peakiness"][layer, 0])
    return heads, summed, float(peaks[list(heads)].max() if heads else peaks.max())


def _strength(s: Scoring, kind: str) -> list[float]:
    """Per layer: peakiness above the uniform baseline, the best of its heads and of their sum."""
    lift_heads = s.heads[kind].summary["peakiness"] - s.head_base[kind].summary["peakiness"]
    lift_sum = s.layers[kind].summary["peakiness"] - s.layer_base[kind].summary["peakiness"]
    return torch.maximum(lift_heads.amax(-1), lift_sum[:, 0]).tolist()


def _passing(s: Scoring, kind: str) -> list[bool]:
    """Per layer: whether a head, or the summed heads, pass the rule for ``kind``."""
    return (s.head_pass[kind].overall.any(-1) | s.layer_pass[kind].overall[:, 0]).tolist()


def find_iteration_heads(s: Scoring, circuit: Circuit | None = None) -> IterationHeads | None:
    """The iteration heads, whatever tells them the position: the circuit's when both attention
    halves were found, else the strongest layer whose heads (or summed heads) pass the rule.
    None when no layer does.

    Example:
        >>> from iteration_heads import Probes, load
        >>> from iteration_heads.detection.detector import measure
        >>> model = load("polynomial_3x2")
        >>> find_iteration_heads(measure(model, Probes.from_model(model, n=128)).scoring).layer
        1
    """
    if circuit is not None and circuit.attention_found:
        return IterationHeads(
            circuit.iteration_layer,
            circuit.iteration_heads,
            circuit.iteration_summed,
            circuit.iteration_peakiness,
        )
    passing, strength = _passing(s, "iteration"), _strength(s, "iteration")
    layers = [layer for layer in range(s.n_layers) if passing[layer]]
    if not layers:
        return None
    layer = max(layers, key=lambda lay: strength[lay])
    return IterationHeads(layer, *_half(s, "iteration", layer))


def find_circuit(s: Scoring) -> Circuit | None:
    """The best (EoI layer < iteration layer) pair: both halves passing first, then strength
    (peakiness above the uniform baseline, the best of the layer's heads and of their sum).
    ``found`` is provisional: the caller checks that the model uses its state. None for a
    one-layer model.

    Example:
        >>> from iteration_heads import Probes, load
        >>> from iteration_heads.detection.detector import measure
        >>> model = load("polynomial_paper")
        >>> circuit = find_circuit(measure(model, Probes.from_model(model, n=128)).scoring)
        >>> circuit.eoi_layer, circuit.iteration_layer, circuit.attention_found
        (0, 1, True)
    """
    if s.n_layers < 2:
        return None
    strength = {kind: _strength(s, kind) for kind in KINDS}
    passing = {kind: _passing(s, kind) for kind in KINDS}
    pairs = [(a, b) for a in range(s.n_layers) for b in range(a + 1, s.n_layers)]
    eoi_layer, it_layer = max(
        pairs,
        key=lambda p: (
            passing["eoi"][p[0]] and passing["iteration"][p[1]],
            strength["eoi"][p[0]] + strength["iteration"][p[1]],
        ),
    )

    eoi_heads, eoi_summed, eoi_peak = _half(s, "eoi", eoi_layer)
    it_heads, it_summed, it_peak = _half(s, "iteration", it_layer)
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
    iteration: IterationHeads | None,
    sensitivity: float | None,
    heads: pd.DataFrame,
    layers: pd.DataFrame,
    n_layers: int,
    n_partial: int,
) -> str:
    """The one-line verdict. Every head or summed layer it names as passing the rule comes from
    :func:`~iteration_heads.detection.report.passing`, as the report's lists do, and every one
    of those is named (the ones beyond the main claim after "also passing the rule")."""
    found = {kind: passing(heads, layers, kind) for kind in KINDS}
    named: set[tuple[str, int, int | None]] = set()

    def claim(kind: str, layer: int, passing_heads: tuple[int, ...], summed: bool) -> None:
        if summed or not passing_heads:
            named.add((kind, layer, None))
        named.update((kind, layer, h) for h in passing_heads)

    main = _main_verdict(circuit, iteration, sensitivity, heads, found, n_layers, claim)
    extra: list[str] = []
    for kind in KINDS:
        alone, summed = found[kind]
        extra += describe_found(
            kind,
            [(a, b) for a, b in alone if (kind, a, b) not in named],
            [layer for layer in summed if (kind, layer, None) not in named],
        )
    also = f"; also passing the rule: {', '.join(extra)}" if extra else ""
    suffix = f"; {n_partial} partial pattern(s), see .partial" if n_partial else ""
    return main + also + suffix


def _main_verdict(
    circuit: Circuit | None,
    iteration: IterationHeads | None,
    sensitivity: float | None,
    heads: pd.DataFrame,
    found: dict[str, tuple[list[tuple[int, int]], list[int]]],
    n_layers: int,
    claim: Any,
) -> str:
    state = "not measured" if sensitivity is None else f"{sensitivity:.2f}"
    if iteration is not None and (circuit is None or not circuit.attention_found):
        claim("iteration", iteration.layer, iteration.heads, iteration.summed)
        if sensitivity is not None and sensitivity >= MIN_STATE_SENSITIVITY:
            return (
                f"iteration heads without an EoI head: {iteration.describe()} read the current "
                f"state (sensitivity {state}); the position reaches them another way "
                "(iteration_heads.audit names the route)"
            )
        return (
            f"no iteration circuit: {iteration.describe()} fetch x_t, but the predictions "
            f"ignore the current state (sensitivity {state}), and no EoI head precedes them"
        )
    if circuit is not None and circuit.attention_found:
        claim("eoi", circuit.eoi_layer, circuit.eoi_heads, circuit.eoi_summed)
        claim(
            "iteration", circuit.iteration_layer, circuit.iteration_heads, circuit.iteration_summed
        )
        pair = f"{circuit.describe('eoi')} -> {circuit.describe('iteration')}"
        if circuit.found:
            return f"iteration circuit: {pair}; state sensitivity {state}"
        return (
            f"no iteration circuit: {pair} fetch x_t, but the predictions ignore the current "
            f"state (sensitivity {state}): a positional read-out, as for copying"
        )
    if n_layers < 2:
        return "no iteration circuit: one layer cannot host the two-step circuit"
    for kind, missing in (
        ("iteration", "no EoI head in an earlier layer"),
        ("eoi", "no iteration head in a later layer"),
    ):
        alone, summed = found[kind]
        if alone or summed:
            for layer, head in alone:
                claim(kind, layer, (head,), False)
            for layer in summed:
                claim(kind, layer, (), True)
            return f"no iteration circuit: {', '.join(describe_found(kind, alone, summed))} but {missing}"
    best = [heads.loc[heads[f"{k}_peakiness"].idxmax()] for k in KINDS]
    return "no iteration circuit: largest peakiness " + ", ".join(
        f"{label} {row[f'{k}_peakiness']:.2f} (L{int(row['layer'])}H{int(row['head'])})"
        for label, k, row in zip(("EoI", "iteration"), KINDS, best, strict=True)
    )
