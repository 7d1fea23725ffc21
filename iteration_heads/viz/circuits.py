"""Figures of what detection and the interventions found: every head's scores, activation
patching per head and position, and ablation against the clean accuracy.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from iteration_heads.auditing.route import PositionRoute
from iteration_heads.detection.checks import check_fields
from iteration_heads.detection.probes import Probes
from iteration_heads.detection.report import DetectionReport
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.corruptions import corrupt
from iteration_heads.interventions.patching import ActivationPatching, activation_patching
from iteration_heads.interventions.scores import Effect
from iteration_heads.interventions.verification import Verification
from iteration_heads.viz.attention import EOI_COLOUR


def detection_heatmap(report: DetectionReport, *, metric: str = "peakiness") -> go.Figure:
    """EoI and iteration scores of every head, layer × head; the circuit's heads outlined.

    Args:
        report: What :func:`~iteration_heads.detection.detector.detect` returned.
        metric: ``"peakiness"``, ``"mean"``, ``"invariance"`` or ``"tl_score"``.

    Example:
        >>> from iteration_heads import ModelConfig, build_model, detect
        >>> report = detect(build_model(ModelConfig(d_model=32, max_len=6)), task="copy",
        ...                 n_probes=60)
        >>> [trace.name for trace in detection_heatmap(report).data]
        ['EoI peakiness', 'iteration peakiness']
    """
    check_fields(report)
    allowed = ("peakiness", "mean", "invariance", "tl_score")
    if metric not in allowed:
        raise IterationHeadsError(f"metric {metric!r}, expected one of {list(allowed)}")
    frame = report.heads
    missing = [c for c in (f"eoi_{metric}", f"iteration_{metric}") if c not in frame]
    if missing:
        raise IterationHeadsError(f"report heads table lacks the columns {missing}")
    n_layers, n_heads = int(frame["layer"].max()) + 1, int(frame["head"].max()) + 1
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"EoI {metric}", f"iteration {metric}"])
    circuit = report.circuit
    for col, kind in enumerate(("eoi", "iteration"), start=1):
        z = [[math.nan] * n_heads for _ in range(n_layers)]
        for layer, head, value in zip(
            frame["layer"], frame["head"], frame[f"{kind}_{metric}"], strict=True
        ):
            z[int(layer)][int(head)] = float(value)
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=list(range(n_heads)),
                y=list(range(n_layers)),
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=col == 2,
                text=[[f"{v:.2f}" for v in row] for row in z],
                texttemplate="%{text}",
                name=f"{'EoI' if kind == 'eoi' else 'iteration'} {metric}",
                hovertemplate="L%{y}H%{x}: %{z:.3f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        if circuit is not None and circuit.attention_found:
            layer = circuit.eoi_layer if kind == "eoi" else circuit.iteration_layer
            chosen = circuit.eoi_heads if kind == "eoi" else circuit.iteration_heads
            spans = [(h, h) for h in chosen] or [(0, n_heads - 1)]  # summed: the whole layer
            for first, last in spans:
                fig.add_shape(
                    type="rect",
                    x0=first - 0.5,
                    x1=last + 0.5,
                    y0=layer - 0.5,
                    y1=layer + 0.5,
                    line={"color": "red", "width": 4},
                    row=1,
                    col=col,
                )
        fig.update_xaxes(title_text="head", dtick=1, row=1, col=col)
        fig.update_yaxes(title_text="layer", dtick=1, autorange="reversed", row=1, col=col)
    fig.update_layout(
        title={"text": html.escape(_shorten(report.verdict, 110)), "font": {"size": 13}},
        height=220 + 60 * n_layers,
        width=900,
    )
    return fig


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def patching_heatmap(
    result: ActivationPatching, *, labels: Sequence[str] | None = None
) -> go.Figure:
    """Activation patching effect of every head (rows) at every position (columns).

    Args:
        result: What :func:`~iteration_heads.interventions.patching.activation_patching` returned.
        labels: Optional token labels of the positions (e.g. one sequence decoded).

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> from iteration_heads import activation_patching, corrupt
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> clean = make_dataset(DataConfig(max_len=4, n_train=8, n_test=8)).test
        >>> result = activation_patching(model, clean, corrupt(clean, "input", task="polynomial"))
        >>> patching_heatmap(result).data[0].y
        ('L0H0', 'L1H0')
    """
    if not isinstance(result, ActivationPatching):
        raise IterationHeadsError(
            f"result must be an ActivationPatching (from iteration_heads.activation_patching), "
            f"got {type(result).__name__}"
        )
    n_layers, n_pos, n_heads = result.values.shape
    if labels is not None and len(labels) != n_pos:
        raise IterationHeadsError(f"{len(labels)} labels for {n_pos} positions")
    names = [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
    values = result.values.permute(0, 2, 1).reshape(-1, n_pos)  # (layer head) pos
    stderr = result.stderr.permute(0, 2, 1).reshape(-1, n_pos)
    x = [f"{lab} ({i})" for i, lab in enumerate(labels)] if labels else list(range(n_pos))
    bound = float(values.abs().max()) or 1.0  # scale to the data: single cells are small
    fig = go.Figure(
        go.Heatmap(
            z=values.tolist(),
            x=x,
            y=names,
            customdata=stderr.tolist(),
            zmid=0,
            zmin=-bound,
            zmax=bound,
            colorscale="RdBu",
            reversescale=True,
            hovertemplate="%{y} at %{x}: %{z:.3f} ± %{customdata:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="position", type="category")
    fig.update_yaxes(title_text="head", autorange="reversed")
    fig.update_layout(
        title=f"Activation patching ({result.direction}, metric {result.metric}, normalised)",
        height=200 + 40 * len(names),
        width=900,
    )
    return fig


def ablation_chart(
    effects: Verification | Effect | Sequence[Effect] | Mapping[str, Effect],
    *,
    metric: str = "accuracy",
) -> go.Figure:
    """Bar chart of the ``metric`` after ablation, against the clean value.

    Args:
        effects: A :class:`~iteration_heads.interventions.verification.Verification` (one bar per ablated
            set: the circuit, each role, controls), an :class:`~iteration_heads.interventions.ablation.Effect`,
            or several (a list, or a mapping from a name to an effect).
        metric: ``"accuracy"``, ``"token_accuracy"``, ``"loss"`` or ``"logit_diff"``.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> from iteration_heads import ablation_effect
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> split = make_dataset(DataConfig(max_len=4, n_train=8, n_test=16)).test
        >>> effects = {"L0H0": ablation_effect(model, [(0, 0)], split, kind="zero")}
        >>> ablation_chart(effects).data[0].x
        ('L0H0',)
    """
    allowed = ("accuracy", "token_accuracy", "loss", "logit_diff")
    if metric not in allowed:
        raise IterationHeadsError(f"metric {metric!r}, expected one of {list(allowed)}")
    if isinstance(effects, Verification):
        table = effects.table
        names = [f"{r}: {h}" for r, h in zip(table["role"], table["heads"], strict=True)]
        values = [float(v) for v in table[metric]]
        clean = effects.clean_accuracy if metric == "accuracy" else None
        title = _shorten(effects.verdict, 110)
    else:
        if isinstance(effects, Effect):
            items = [(effects.description, effects)]
        elif isinstance(effects, Mapping):
            items = list(effects.items())
        elif isinstance(effects, Sequence) and not isinstance(effects, str):
            items = [(e.description if isinstance(e, Effect) else "?", e) for e in effects]
        else:
            items = [("", effects)]
        bad = [type(e).__name__ for _, e in items if not isinstance(e, Effect)]
        if bad or not items:
            raise IterationHeadsError(
                f"effects must be a Verification, an Effect, or a list or mapping of Effects, "
                f"got {type(effects).__name__}" + (f" holding {bad[0]}" if bad else " (empty)")
            )
        names = [str(name) for name, _ in items]
        values = [e.summary()["intervened"][metric] for _, e in items]
        cleans = [e.summary()["clean"][metric] for _, e in items]
        clean = cleans[0] if max(cleans) - min(cleans) < 1e-9 else None
        title = f"{metric} after ablation"
    fig = go.Figure(
        go.Bar(
            x=names,
            y=values,
            name=f"ablated {metric}",
            marker_color="#3182bd",
            texttemplate="%{y:.2f}",
            textposition="outside",
        )
    )
    if clean is not None:
        fig.add_hline(
            y=clean,
            line_dash="dash",
            line_color="black",
            annotation_text=f"clean {clean:.2f}",
            annotation_position="top left",
        )
    fig.update_layout(title=html.escape(title), yaxis_title=metric, height=420, width=900)
    return fig


def route_chart(route: PositionRoute) -> go.Figure:
    """The position route: each earlier component's share of the length change's effect on the
    iteration heads' attention, patched into their queries (EoI heads in orange).

    Example:
        >>> from iteration_heads import Probes, load
        >>> from iteration_heads.auditing import position_route
        >>> model = load("polynomial_paper")
        >>> route = position_route(model, Probes.from_model(model, n=64), [(1, 0)],
        ...                        eoi_heads=[(0, 0)])
        >>> route_chart(route).data[0].x[0]
        'L0H0'
    """
    if not isinstance(route, PositionRoute):
        raise IterationHeadsError(
            f"route must be a PositionRoute (from iteration_heads.auditing.position_route), "
            f"got {type(route).__name__}"
        )
    table = route.table
    colours = [EOI_COLOUR if eoi else "#3182bd" for eoi in table["is_eoi_head"]]
    fig = go.Figure(
        go.Bar(
            x=list(table["component"]),
            y=list(table["share"]),
            marker_color=colours,
            texttemplate="%{y:.2f}",
            textposition="outside",
        )
    )
    fig.update_layout(
        title=html.escape(_shorten(route.verdict, 110)),
        yaxis_title="share of the effect",
        height=420,
        width=900,
    )
    return fig


def input_patching(
    model: Any,
    probes: Probes,
    *,
    n: int = 64,
    labels: Callable[[list[int]], list[str]] | None = None,
) -> tuple[str, go.Figure]:
    """Activation patching on up to ``n`` of the longest ``probes``, one input ``x_k`` changed
    at random: a caption and the head × position heatmap (positions named by their part:
    ``x1``, ``EoI``, ``s1``, ..., else by ``labels`` or the token id).

    Example:
        >>> from iteration_heads import Probes, load
        >>> model = load("polynomial_paper")
        >>> caption, fig = input_patching(model, Probes.from_model(model, n=64), n=8)
        >>> caption.startswith("Activation patching on 8 probes of length 8"), fig.data[0].x[1]
        (True, 'x1 (1)')
    """
    longest = probes.select((probes.lengths == probes.max_len).nonzero().flatten()[:n])
    patched = activation_patching(model, longest, corrupt(longest, "input"))
    first = longest.tokens[0].tolist()
    names = labels(first) if labels is not None else [str(t) for t in first]
    length = longest.max_len
    for t in range(length):
        names[int(longest.input_positions[0, t])] = f"x{t + 1}"
        names[int(longest.state_positions[0, t])] = f"s{t + 1}"
    names[int(longest.eoi[0])] = "EoI"
    caption = (
        f"Activation patching on {len(longest)} probes of length {length}: one input x_k changed "
        "at random (recomputed states); each head's clean output patched into the corrupted "
        "run at one position (1 = restores the clean logit difference)."
    )
    return caption, patching_heatmap(patched, labels=[str(v) for v in names])
