"""Figures of the pathway circuits: per-head patching scores for each subtask, and the pruning
curve against random heads (Dutta et al.'s head identification and circuit extraction).
"""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from iteration_heads._torch import head_names
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.pruning import PruningCurve
from iteration_heads.pathways.pruning_attribution import LinearPruningCurve
from iteration_heads.pathways.restoration import HeadPatching, PatchingMetric
from iteration_heads.tasks.task import check_number

HEATMAP_COLUMNS = 4
"""Subplots per row of :func:`head_patching_heatmap`."""


def head_patching_heatmap(
    result: HeadPatching, *, metric: str = "kl", aggregate: str = "ratio"
) -> go.Figure:
    """One layer × head heatmap of patching scores per label (subtask) and over all prompts,
    on one shared colour scale (1: patching the head alone restores the clean run) spanning
    exactly the plotted values (and 0..1); nothing is clipped. The hover text gives the plotted
    value, the mean per-prompt score ± its standard error, the median and inter-quartile range
    of the per-prompt scores, and the number of prompts.

    Args:
        result: What :func:`~iteration_heads.pathways.restoration.head_patching` returned.
        metric: ``"kl"`` or ``"logit_diff"``.
        aggregate: ``"ratio"``: the ratio of means (robust; the default), ``"mean"``: the mean
            of per-prompt scores (one prompt the corruption barely changes can stretch it).

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> from iteration_heads.pathways.restoration import head_patching
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> result = head_patching(zoo.load("polynomial_paper"), iteration_prompts(data.test, data.layout))
        >>> fig = head_patching_heatmap(result)
        >>> fig.data[-1].name, fig.data[-1].z[1][0] > 0.9, "ratio of means" in fig.layout.title.text
        ('all', True, True)
    """
    if not isinstance(result, HeadPatching):
        raise IterationHeadsError(
            f"result must be a HeadPatching (from iteration_heads.pathways.restoration), got "
            f"{type(result).__name__}"
        )
    if metric not in ("kl", "logit_diff"):
        raise IterationHeadsError(f"metric {metric!r}, expected 'kl' or 'logit_diff'")
    if aggregate not in ("ratio", "mean"):
        raise IterationHeadsError(f"aggregate {aggregate!r}, expected 'ratio' or 'mean'")
    chosen: PatchingMetric = "kl" if metric == "kl" else "logit_diff"
    scores = result.scores(chosen, "ratio" if aggregate == "ratio" else "mean")
    means, stderr = result.scores(chosen, "mean"), result.stderr(chosen)
    labels = result.groups
    n_layers, n_heads = result.values.shape
    cols = min(HEATMAP_COLUMNS, len(labels))
    rows = math.ceil(len(labels) / cols)
    titles = [
        f"{label} (n={result.n_prompts[label]}, {result.n_excluded[label]} excluded)"
        for label in labels
    ]
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[html.escape(t) for t in titles],
        horizontal_spacing=0.06,
        vertical_spacing=0.25 / rows,
    )
    finite = [v for label in labels for v in scores[label].flatten().tolist() if math.isfinite(v)]
    shown = "ratio of means" if aggregate == "ratio" else "mean per-prompt score"
    low, high = min([0.0, *finite]), max([1.0, *finite])
    for i, label in enumerate(labels):
        row, col = i // cols + 1, i % cols + 1
        z = scores[label].tolist()
        spread = result.spread(label, chosen)
        custom = [
            [
                [
                    float(means[label][lay, h]),
                    float(stderr[label][lay, h]),
                    float(spread["median"][lay, h]),
                    float(spread["iqr"][lay, h]),
                    result.n_prompts[label],
                ]
                for h in range(n_heads)
            ]
            for lay in range(n_layers)
        ]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=list(range(n_heads)),
                y=list(range(n_layers)),
                customdata=custom,
                coloraxis="coloraxis",
                name=label,
                text=[[f"{v:.2f}" for v in line] for line in z],
                texttemplate="%{text}" if n_layers * n_heads <= 64 else None,
                hovertemplate=f"{html.escape(label)} L%{{y}}H%{{x}}: %{{z:.3f}} ({shown}); "
                "per-prompt mean %{customdata[0]:.3f} ± %{customdata[1]:.3f}, median "
                "%{customdata[2]:.3f}, IQR %{customdata[3]:.3f} (n=%{customdata[4]})"
                "<extra></extra>",
            ),
            row=row,
            col=col,
        )
        fig.update_xaxes(title_text="head", dtick=1, row=row, col=col)
        fig.update_yaxes(title_text="layer", dtick=1, autorange="reversed", row=row, col=col)
    name = "KL" if metric == "kl" else "logit-difference"
    fig.update_layout(
        title=f"Head patching, clean into corrupted: {name} score per subtask, {shown} "
        "(1 = the head alone restores the clean prediction)",
        coloraxis={
            "colorscale": "RdBu",
            "reversescale": True,
            "cmin": low,
            "cmax": high,
            "cmid": 0,
            "colorbar": {"title": {"text": f"{name} score"}},
        },
        height=120 + rows * (80 + 40 * n_layers),
        width=min(1200, 260 * cols + 120),
    )
    return fig


def pruning_chart(curve: PruningCurve, *, threshold: float | None = None) -> go.Figure:
    """Agreement with the full model against the number of heads kept: the ranked heads' curve,
    the random heads' mean ± std as a band (as a marker with error bars where only one k has
    random draws, as after a bisection), a dashed line at ``threshold`` (None: the curve's) and
    a marker at the smallest circuit that reaches it.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> from iteration_heads.pathways.pruning import pruning_curve
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> curve = pruning_curve(zoo.load("polynomial_paper"), prompts, [(1, 0), (0, 0)], data.train.tokens)
        >>> [trace.name for trace in pruning_chart(curve).data]
        ['random + std', 'random - std', 'random heads (mean)', 'ranked heads', 'smallest circuit: 2 heads']
    """
    if not isinstance(curve, PruningCurve):
        raise IterationHeadsError(
            f"curve must be a PruningCurve (from iteration_heads.pathways.pruning), got "
            f"{type(curve).__name__}"
        )
    threshold = curve.threshold if threshold is None else threshold
    check_number("threshold", threshold, minimum=0, maximum=1)
    found = curve.smallest_circuit(threshold)  # checks the threshold
    ks = list(curve.ks)
    mean, std = curve.random_mean.tolist(), curve.random_std.tolist()
    drawn = sum(not math.isnan(m) for m in mean)  # ks with random draws (a bisection: one)
    grey = "rgba(120, 120, 120, 0.25)"
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=ks,
            y=[m + s for m, s in zip(mean, std, strict=True)],
            mode="lines",
            line={"width": 0},
            name="random + std",
            showlegend=False,
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=ks,
            y=[m - s for m, s in zip(mean, std, strict=True)],
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor=grey,
            name="random - std",
            showlegend=False,
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=ks,
            y=mean,
            customdata=std,
            mode="lines" if drawn > 1 else "markers",
            line={"color": "grey", "dash": "dot"},
            error_y={"array": std, "visible": drawn == 1},
            name="random heads (mean)",
            hovertemplate="%{x} random heads kept: %{y:.3f} ± %{customdata:.3f}<extra></extra>",
        )
    )
    kept = [html.escape(head_names(curve.ranking[:k])) for k in ks]
    fig.add_trace(
        go.Scatter(
            x=ks,
            y=curve.agreement.tolist(),
            customdata=list(zip(curve.accuracy.tolist(), kept, strict=True)),
            mode="lines+markers",
            line={"color": "#3182bd"},
            name="ranked heads",
            hovertemplate="top %{x} heads kept (%{customdata[1]}): agreement %{y:.3f}, "
            "accuracy %{customdata[0]:.3f}<extra></extra>",
        )
    )
    if found is not None:
        k, heads = found
        fig.add_trace(
            go.Scatter(
                x=[k],
                y=[float(curve.agreement[ks.index(k)])],
                mode="markers",
                marker={"color": "red", "size": 14, "symbol": "star"},
                name=f"smallest circuit: {k} heads",
                hovertemplate=f"{html.escape(head_names(heads))}: %{{y:.3f}}<extra></extra>",
            )
        )
    fig.add_hline(
        y=threshold,
        line_dash="dash",
        line_color="black",
        annotation_text=f"threshold {threshold:g}",
        annotation_position="bottom right",
    )
    circuit = "no k reaches it" if found is None else f"smallest circuit {found[0]} heads"
    fig.update_layout(
        title=f"Pruning: agreement with the full model on {len(curve.labels)} prompts "
        f"(threshold {threshold:g}: {circuit})",
        xaxis_title="heads kept (others mean-ablated)",
        yaxis_title="agreement with the full model",
        yaxis_range=[0, 1.05],
        height=450,
        width=900,
    )
    return fig


def linear_pruning_chart(curve: LinearPruningCurve, *, threshold: float | None = None) -> go.Figure:
    """A pruning curve estimated by attribution: the ESTIMATED agreement of the ranked heads and
    of random heads (dashed), the circuit run EXACTLY (a star) and its random sets of as many
    heads run exactly (crosses), and a dashed line at ``threshold`` (default: the curve's).

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts, linear_pruning_curve
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> curve = linear_pruning_curve(zoo.load("polynomial_paper"), prompts, [(1, 0), (0, 0)],
        ...                              data.train.tokens, n_random=1)
        >>> [trace.name for trace in linear_pruning_chart(curve).data]
        ['random heads (estimated mean)', 'ranked heads (estimated)', 'random heads, run exactly', 'circuit of 2 heads, run exactly']
    """
    if not isinstance(curve, LinearPruningCurve):
        raise IterationHeadsError(
            "curve must be a LinearPruningCurve (from iteration_heads.pathways."
            f"pruning_attribution), got {type(curve).__name__}"
        )
    threshold = curve.threshold if threshold is None else threshold
    check_number("threshold", threshold, minimum=0, maximum=1)
    ks, k = list(curve.ks), curve.circuit_k
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=ks, y=curve.estimated_random_agreement.mean(-1).tolist(), mode="lines",
        line={"color": "grey", "dash": "dot"}, name="random heads (estimated mean)",
        hovertemplate="%{x} random heads kept: estimated %{y:.3f}<extra></extra>",
    ))  # fmt: skip
    kept = [html.escape(head_names(curve.ranking[:j])) for j in ks]
    fig.add_trace(go.Scatter(
        x=ks, y=curve.estimated_agreement.tolist(), customdata=kept, mode="lines+markers",
        line={"color": "#3182bd", "dash": "dash"}, name="ranked heads (estimated)",
        hovertemplate="top %{x} heads kept (%{customdata}): estimated agreement %{y:.3f}"
        "<extra></extra>",
    ))  # fmt: skip
    randoms = curve.exact_random_agreement.tolist()
    fig.add_trace(go.Scatter(
        x=[k] * len(randoms), y=randoms, mode="markers", name="random heads, run exactly",
        marker={"color": "grey", "size": 10, "symbol": "x"},
        hovertemplate=f"{k} random heads, exact: %{{y:.3f}}<extra></extra>",
    ))  # fmt: skip
    fig.add_trace(go.Scatter(
        x=[k], y=[curve.exact_agreement], mode="markers",
        marker={"color": "red", "size": 14, "symbol": "star"},
        name=f"circuit of {k} heads, run exactly",
        hovertemplate=f"{html.escape(head_names(curve.circuit))}: exact %{{y:.3f}} "
        f"(estimated {curve.estimated_circuit_agreement:.3f})<extra></extra>",
    ))  # fmt: skip
    fig.add_hline(y=threshold, line_dash="dash", line_color="black",
                  annotation_text=f"threshold {threshold:g}",
                  annotation_position="bottom right")  # fmt: skip
    verdict = "reaches" if curve.exact_agreement >= threshold else "misses"
    fig.update_layout(
        title=f"Pruning by attribution on {len(curve.labels)} prompts: the curve is ESTIMATED; "
        f"the circuit of {k} heads, run exactly, {verdict} {threshold:g} "
        f"({curve.exact_agreement:.3f})",
        xaxis_title="heads kept (others mean-ablated)",
        yaxis_title="agreement with the full model",
        yaxis_range=[0, 1.05],
        height=450,
        width=900,
    )
    return fig
