"""What :func:`~iteration_heads.detection.detect` returns: tables, the circuit found, a verdict.

A :class:`DetectionReport` prints as a readable table, renders as HTML in notebooks (no network)
and serialises to a dictionary or strict JSON for scripts.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from iteration_heads._results import Result, plain
from iteration_heads.detection.consistency import (
    check_flag,
    check_half,
    check_plain_fields,
    check_within,
    table_shape,
)
from iteration_heads.errors import IterationHeadsError


@dataclass(frozen=True)
class Circuit:
    """The best (EoI layer < iteration layer) pair of a model and whether it is a circuit.

    ``attention_found``: both attention halves pass the rule. ``found``: they do and the model's
    predictions use the current state (see :data:`~iteration_heads.detection.detector.MIN_STATE_SENSITIVITY`).
    ``eoi_heads`` / ``iteration_heads`` are the heads of those layers that pass alone; when none
    does but the layer's summed heads pass, the tuple is empty and ``*_summed`` is True. The
    peakiness is the best passing head's (or the layer sum's), else the layer's best head's.
    """

    found: bool
    attention_found: bool
    eoi_layer: int
    iteration_layer: int
    eoi_heads: tuple[int, ...]
    iteration_heads: tuple[int, ...]
    eoi_summed: bool
    iteration_summed: bool
    eoi_peakiness: float
    iteration_peakiness: float

    def __post_init__(self) -> None:
        """A consistent circuit, or a clear error (EoI layer before the iteration layer)."""
        check_flag("circuit found", self.found)
        check_flag("circuit attention_found", self.attention_found)
        for half in ("eoi", "iteration"):
            check_half(
                f"circuit {half}",
                *(getattr(self, f"{half}_{f}") for f in ("layer", "heads", "summed", "peakiness")),
            )
        if self.eoi_layer >= self.iteration_layer:
            raise IterationHeadsError(
                f"circuit eoi_layer={self.eoi_layer}, iteration_layer={self.iteration_layer}: "
                "expected the EoI layer before the iteration layer"
            )
        if self.found and not self.attention_found:
            raise IterationHeadsError("circuit found=True, attention_found=False: expected both")

    def describe(self, kind: str) -> str:
        """``"EoI head L0H0 (peakiness 0.61)"``, or the summed layer, for ``kind``.

        Example:
            >>> Circuit(True, True, 0, 2, (1,), (), False, True, 0.7, 0.9).describe("iteration")
            'iteration layer 2, heads summed (peakiness 0.90)'
        """
        if kind not in ("eoi", "iteration"):
            raise IterationHeadsError(f"kind {kind!r}, expected 'eoi' or 'iteration'")
        label = "EoI" if kind == "eoi" else "iteration"
        layer = self.eoi_layer if kind == "eoi" else self.iteration_layer
        heads = self.eoi_heads if kind == "eoi" else self.iteration_heads
        summed = self.eoi_summed if kind == "eoi" else self.iteration_summed
        peak = self.eoi_peakiness if kind == "eoi" else self.iteration_peakiness
        if summed or not heads:
            return f"{label} layer {layer}, heads summed (peakiness {peak:.2f})"
        names = "+".join(f"L{layer}H{h}" for h in heads)
        return f"{label} head{'s' if len(heads) > 1 else ''} {names} (peakiness {peak:.2f})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class IterationHeads:
    """The best layer of iteration heads, whatever tells them the position (an EoI head or
    another route).

    Attributes:
        layer: Their layer.
        heads: The heads of that layer that pass the rule alone (empty when only their sum does).
        summed: Whether only the layer's summed heads pass.
        peakiness: The best passing head's (or the sum's) iteration peakiness.

    Example:
        >>> IterationHeads(1, (0, 1), False, 0.9).describe(), IterationHeads(1, (0,), False, 1.0).names(2)
        ('iteration heads L1H0+L1H1 (peakiness 0.90)', [(1, 0)])
    """

    layer: int
    heads: tuple[int, ...]
    summed: bool
    peakiness: float

    def __post_init__(self) -> None:
        check_half("iteration", self.layer, self.heads, self.summed, self.peakiness)

    def names(self, n_heads: int) -> list[tuple[int, int]]:
        """``(layer, head)`` of the heads (every head of the layer when only their sum passes)."""
        return [(self.layer, h) for h in (self.heads or range(n_heads))]

    def describe(self) -> str:
        """``"iteration heads L1H0+L1H1 (peakiness 0.90)"``, or the summed layer."""
        if self.summed or not self.heads:
            return f"iteration layer {self.layer}, heads summed (peakiness {self.peakiness:.2f})"
        names = "+".join(f"L{self.layer}H{h}" for h in self.heads)
        plural = "s" if len(self.heads) > 1 else ""
        return f"iteration head{plural} {names} (peakiness {self.peakiness:.2f})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


_SHOWN = {
    "eoi_peakiness": "eoi peak",
    "eoi_mean": "eoi mean",
    "eoi_tl_score": "eoi TL",
    "eoi_uniform_mean": "eoi unif",
    "iteration_peakiness": "iter peak",
    "iteration_mean": "iter mean",
    "iteration_tl_score": "iter TL",
    "iteration_uniform_mean": "iter unif",
}


@dataclass(frozen=True, eq=False)
class DetectionReport(Result):
    """Every head's scores, the heads found, the circuit and a one-line verdict.

    Attributes:
        heads: One row per (layer, head). For ``eoi`` and ``iteration``: ``*_mean`` (target
            weight), ``*_peakiness``, ``*_invariance``, ``*_tl_score`` (TransformerLens head
            detector on the CoT rows), ``*_uniform_mean`` / ``*_uniform_peakiness`` (the uniform
            causal pattern); then ``role`` ("eoi", "iteration", both joined by "+", or "") and
            ``partial`` (partial patterns of that head).
        layers: The same for the target weights summed over each layer's heads.
        per_length: Long table of every head's metrics per probe length.
        circuit: The best (EoI layer < iteration layer) pair; None for a one-layer model.
        state_sensitivity: Fraction of predictions that change when the current state is
            swapped; measured only when both attention halves are found (else None).
        partial: Readable partial patterns (some lengths or steps only, shifted or strided).
        verdict: One line.
        probes: Number, width, lengths, the lengths the summary averages, source.
        thresholds: The constants of the decision rule.

    Example:
        >>> from iteration_heads import ModelConfig, build_model, detect
        >>> model = build_model(ModelConfig(d_model=32, max_len=6))
        >>> report = detect(model, task="copy", n_probes=120)
        >>> list(report.heads.columns[:5])
        ['layer', 'head', 'eoi_mean', 'eoi_peakiness', 'eoi_invariance']
        >>> report.found("iteration"), report.to_dict()["has_iteration_circuit"]
        ([], False)
        >>> print(report.format().splitlines()[1])  # doctest: +ELLIPSIS
        120 probes (test split of copy), lengths 1-6, averaged over 4-6; state sensitivity not...
    """

    heads: pd.DataFrame
    layers: pd.DataFrame
    per_length: pd.DataFrame
    circuit: Circuit | None
    state_sensitivity: float | None
    partial: tuple[str, ...]
    verdict: str
    probes: dict[str, Any]
    thresholds: dict[str, Any]
    iteration: IterationHeads | None = None

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> tuple[int, int]:
        """``(n_layers, n_heads)`` of the model the report describes, or a clear error when its
        fields are inconsistent (run when built; again by every function taking a report)."""
        shape = table_shape(self.heads, self.layers, self.per_length)
        check_plain_fields(
            self.verdict, self.partial, self.probes, self.thresholds, self.state_sensitivity
        )
        halves: list[tuple[str, int, tuple[int, ...]]] = []
        if not isinstance(self.circuit, Circuit | None):
            raise IterationHeadsError(
                f"circuit must be a Circuit or None, got {type(self.circuit).__name__}"
            )
        if not isinstance(self.iteration, IterationHeads | None):
            raise IterationHeadsError(
                f"iteration must be IterationHeads or None, got {type(self.iteration).__name__}"
            )
        if self.circuit is not None:
            c = self.circuit
            c.__post_init__()
            halves += [("circuit eoi", c.eoi_layer, c.eoi_heads)]
            halves += [("circuit iteration", c.iteration_layer, c.iteration_heads)]
        if self.iteration is not None:
            self.iteration.__post_init__()
            halves += [("iteration", self.iteration.layer, self.iteration.heads)]
        for name, layer, heads in halves:
            check_within(f"report {name}", layer, heads, shape)
        return shape

    @property
    def has_iteration_heads(self) -> bool:
        """Whether the model has iteration heads that read the current state, whatever tells
        them the position (the paper's EoI head or another route)."""
        s = self.state_sensitivity
        minimum = float(self.thresholds.get("min_state_sensitivity", 0.5))
        return self.iteration is not None and s is not None and s >= minimum

    @property
    def has_iteration_circuit(self) -> bool:
        """Whether an EoI head precedes an iteration head in a model that uses its state."""
        return self.circuit is not None and self.circuit.found

    @property
    def table(self) -> pd.DataFrame:
        """Every head's scores (the same as :attr:`heads`)."""
        return self.heads

    def found(self, kind: str) -> list[tuple[int, int]]:
        """``(layer, head)`` of every head that passes the rule for ``kind`` alone."""
        return passing(self.heads, self.layers, kind)[0]

    def found_summed(self, kind: str) -> list[int]:
        """The layers whose summed heads pass the rule for ``kind`` while none of their heads
        passes alone. With :meth:`found`, everything the verdict may name (one criterion)."""
        return passing(self.heads, self.layers, kind)[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of everything (NaN becomes None)."""
        return plain(
            {
                "verdict": self.verdict,
                "has_iteration_circuit": self.has_iteration_circuit,
                "has_iteration_heads": self.has_iteration_heads,
                "iteration": self.iteration.to_dict() if self.iteration else None,
                "circuit": self.circuit.to_dict() if self.circuit else None,
                "state_sensitivity": self.state_sensitivity,
                "eoi_heads": self.found("eoi"),
                "iteration_heads": self.found("iteration"),
                "eoi_summed_layers": self.found_summed("eoi"),
                "iteration_summed_layers": self.found_summed("iteration"),
                "partial": list(self.partial),
                "probes": self.probes,
                "thresholds": self.thresholds,
                "heads": self.heads.to_dict("records"),
                "layers": self.layers.to_dict("records"),
                "per_length": self.per_length.to_dict("records"),
            }
        )

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as strict JSON (``kwargs`` go to :func:`json.dumps`)."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)

    def format(self) -> str:
        """The verdict, the heads table (and layer sums when layers have several heads)."""
        lines = [self.verdict, self._probe_line(), _text(self.heads, ["layer", "head"])]
        if int(self.layers["n_heads"].max()) > 1:
            lines += ["heads summed per layer:", _text(self.layers, ["layer", "n_heads"])]
        lines += [f"partial: {p}" for p in self.partial]
        return "\n".join(lines)

    def _probe_line(self) -> str:
        p, s = self.probes, self.state_sensitivity
        sensitivity = "not measured (no attention circuit)" if s is None else f"{s:.2f}"
        return (
            f"{p['n']} probes ({p['source']}), lengths {p['lengths']}, averaged over "
            f"{p['summary_lengths']}; state sensitivity {sensitivity}"
        )

    def __repr__(self) -> str:
        return self.format()

    def _repr_html_(self) -> str:
        """A self-contained HTML view for notebooks (no scripts, no network)."""
        columns = ["layer", "head", *_SHOWN, "role", "partial"]
        table = self.heads[columns].rename(columns=_SHOWN)
        parts = [
            f"<p><b>{html.escape(self.verdict)}</b></p>",
            f"<p>{html.escape(self._probe_line())}</p>",
            table.to_html(index=False, float_format=lambda v: f"{v:.2f}"),
        ]
        if self.partial:
            items = "".join(f"<li>{html.escape(p)}</li>" for p in self.partial)
            parts.append(f"<p>Partial patterns:</p><ul>{items}</ul>")
        return "<div>" + "".join(parts) + "</div>"


def passing(
    heads: pd.DataFrame, layers: pd.DataFrame, kind: str
) -> tuple[list[tuple[int, int]], list[int]]:
    """The one criterion behind a report's lists and its verdict: the ``(layer, head)`` that pass
    the rule for ``kind`` alone, and the layers whose summed heads pass while none of their
    heads does (``role`` columns of the heads and layers tables).

    Example:
        >>> heads = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1],
        ...                       "role": ["", "", "iteration", ""]})
        >>> layers = pd.DataFrame({"layer": [0, 1], "role": ["eoi", "iteration"]})
        >>> passing(heads, layers, "eoi"), passing(heads, layers, "iteration")
        (([], [0]), ([(1, 0)], []))
    """
    if kind not in ("eoi", "iteration"):
        raise IterationHeadsError(f"kind {kind!r}, expected 'eoi' or 'iteration'")
    rows = heads[heads["role"].str.contains(kind)]
    alone = [(int(a), int(b)) for a, b in zip(rows["layer"], rows["head"], strict=True)]
    with_heads = {layer for layer, _ in alone}
    summed = sorted(
        int(layer)
        for layer in layers.loc[layers["role"].str.contains(kind), "layer"]
        if int(layer) not in with_heads
    )
    return alone, summed


def describe_found(kind: str, heads: list[tuple[int, int]], summed: list[int]) -> list[str]:
    """``"EoI head L0H1"``-style names of heads passing alone and of summed layers, by layer.

    Example:
        >>> describe_found("eoi", [(0, 0), (0, 1), (2, 1)], [1])
        ['EoI heads L0H0+L0H1', 'EoI layer 1, heads summed', 'EoI head L2H1']
    """
    label = "EoI" if kind == "eoi" else "iteration"
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    names = {
        layer: f"{label} head{'s' if len(hs) > 1 else ''} " + "+".join(f"L{layer}H{h}" for h in hs)
        for layer, hs in by_layer.items()
    }
    names.update({layer: f"{label} layer {layer}, heads summed" for layer in summed})
    return [names[layer] for layer in sorted(names)]


def ranges(values: list[int]) -> str:
    """Compact text for sorted integers.

    Example:
        >>> ranges([1, 2, 3, 5, 7, 8])
        '1-3, 5, 7-8'
    """
    runs: list[list[int]] = []
    for v in values:
        if runs and runs[-1][-1] == v - 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _text(frame: pd.DataFrame, index: list[str]) -> str:
    columns = [*index, *(c for c in _SHOWN if c in frame), "role"]
    return (
        frame[columns].rename(columns=_SHOWN).to_string(index=False, float_format="{:.2f}".format)
    )
