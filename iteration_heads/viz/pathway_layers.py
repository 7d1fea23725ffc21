"""Figures of where the answer is written, layer by layer: the answer-writing heads
(:func:`writers_chart`), the logit lens of the in-context answer against the prior, with the
rift between them (:func:`logit_lens_chart`), where probes tell how two words are related
(:func:`relation_probes_chart`), and which layers still read a fact from the context as the
chain of thought goes on (:func:`horizon_chart`).
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.horizon import HorizonPatching
from iteration_heads.pathways.probing import RelationProbes
from iteration_heads.pathways.rift import LogitLens
from iteration_heads.pathways.writers import AnswerWriters
from iteration_heads.viz.attention import EOI_COLOUR, ITERATION_COLOUR

WRITER_SEGMENT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f")
"""Colours of the prompt segments in :func:`writers_chart` (the last one, grey, for "other")."""


def writers_chart(result: AnswerWriters, *, label: str = "all", share: float = 0.8) -> go.Figure:
    """Direct logit attribution of every head (layer × head), how many writer heads each layer
    holds, and from which segment of the prompt each writer takes the answer.

    Args:
        result: What :func:`~iteration_heads.pathways.writers.answer_writers` returned.
        label: The prompts' label to show (``"all"``: every prompt).
        share: The writers are the fewest heads holding this share of the positive DLA.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> from iteration_heads.pathways.writers import answer_writers
        >>> data = make_dataset(DataConfig(max_len=8, n_train=4, n_test=2))
        >>> result = answer_writers(zoo.load("polynomial_paper"), iteration_prompts(data.test, data.layout))
        >>> [trace.name for trace in writers_chart(result).data][:3]
        ['DLA', 'writer heads', 'from input']
    """
    if not isinstance(result, AnswerWriters):
        raise IterationHeadsError(
            f"result must be AnswerWriters (from iteration_heads.pathways.answer_writers), got "
            f"{type(result).__name__}"
        )
    chosen = result.writers(label, share=share)  # checks label and share
    values, stderr = result.dla[label], result.stderr[label]
    n_layers, n_heads = values.shape
    fig = make_subplots(
        rows=2,
        cols=2,
        specs=[[{}, {}], [{"colspan": 2}, None]],
        subplot_titles=[
            "direct logit attribution to the answer",
            f"writer heads per layer ({share:.0%} of positive DLA)",
            "where each writer reads the answer from (DLA by source segment)",
        ],
        vertical_spacing=0.18,
    )
    bound = float(values.abs().max()) or 1.0
    fig.add_trace(
        go.Heatmap(
            z=values.tolist(),
            x=list(range(n_heads)),
            y=list(range(n_layers)),
            customdata=stderr.tolist(),
            zmid=0,
            zmin=-bound,
            zmax=bound,
            colorscale="RdBu",
            reversescale=True,
            colorbar={"len": 0.45, "y": 0.8, "title": "DLA"},
            texttemplate="%{z:.2f}",
            name="DLA",
            hovertemplate="L%{y}H%{x}: DLA %{z:.3f} ± %{customdata:.3f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    histogram = result.layer_histogram(label, share)
    fig.add_trace(
        go.Bar(
            x=histogram["layer"].tolist(),
            y=histogram["writers"].tolist(),
            customdata=histogram[["writer_dla", "mass"]].values.tolist(),
            marker_color=ITERATION_COLOUR,
            name="writer heads",
            hovertemplate="layer %{x}: %{y} writer heads, DLA %{customdata[0]:.3f}; "
            "%{customdata[1]:.0%} of the positive head DLA<extra></extra>",
        ),
        row=1,
        col=2,
    )
    names = [f"L{layer}H{head}" for layer, head in chosen]
    for s, segment in enumerate(result.segment_names):
        colour = WRITER_SEGMENT_COLOURS[-1 if s == len(result.segment_names) - 1 else s % 5]
        fig.add_trace(
            go.Bar(
                x=names,
                y=[float(result.segment_dla[label][lay, h, s]) for lay, h in chosen],
                marker_color=colour,
                name=f"from {segment}",
                hovertemplate=f"%{{x}} from {segment}: %{{y:.3f}}<extra></extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_xaxes(title_text="head", dtick=1, row=1, col=1)
    fig.update_yaxes(title_text="layer", dtick=1, autorange="reversed", row=1, col=1)
    fig.update_xaxes(title_text="layer", dtick=1, row=1, col=2)
    fig.update_yaxes(title_text="writer heads", row=1, col=2)
    fig.update_xaxes(title_text="writer head (largest DLA first)", type="category", row=2, col=1)
    fig.update_yaxes(title_text="DLA", row=2, col=1)
    fig.update_layout(
        title=f"Answer-writing heads ({label}, {len(names)} writers)",
        barmode="relative",
        height=700 + 30 * n_layers,
        width=1000,
    )
    return fig


def logit_lens_chart(result: LogitLens, *, label: str = "all") -> go.Figure:
    """Logit-lens probability of the in-context answer (and of the prior token) at every layer
    boundary, with 95% bootstrap bands and a vertical line at the rift.

    Args:
        result: What :func:`~iteration_heads.pathways.rift.logit_lens` returned.
        label: The prompts' label to show (``"all"``: every prompt).

    Example:
        >>> import torch
        >>> from iteration_heads.pathways.rift import LogitLens
        >>> ranks = torch.tensor([[3, 2], [0, 0]])
        >>> lens = LogitLens(("0_pre", "final_post"), -ranks.float(), ranks, -torch.ones(2, 2),
        ...                  torch.ones(2, 2, dtype=torch.long), torch.tensor([1, 2]),
        ...                  torch.tensor([3, 4]), ("a", "b"), n_boot=50)
        >>> [trace.name for trace in logit_lens_chart(lens).data]
        ['answer 95% CI', 'answer', 'prior 95% CI', 'prior']
    """
    if not isinstance(result, LogitLens):
        raise IterationHeadsError(
            f"result must be a LogitLens (from iteration_heads.pathways.logit_lens), got "
            f"{type(result).__name__}"
        )
    if label not in result.groups:
        raise IterationHeadsError(f"label {label!r}, expected one of {result.groups}")
    x = list(range(len(result.boundaries)))
    fig = go.Figure()
    tokens = [("answer", ITERATION_COLOUR)]
    if result.prior is not None:
        tokens.append(("prior", EOI_COLOUR))
    for token, colour in tokens:
        mean, low, high = result.curve(f"{token}_prob", label)
        fig.add_trace(
            go.Scatter(
                x=x + x[::-1],
                y=high.tolist() + low.tolist()[::-1],
                fill="toself",
                fillcolor=colour,
                opacity=0.2,
                line={"width": 0},
                hoverinfo="skip",
                name=f"{token} 95% CI",
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=mean.tolist(),
                customdata=[[lo, hi] for lo, hi in zip(low.tolist(), high.tolist(), strict=True)],
                text=list(result.boundaries),
                mode="lines+markers",
                line={"color": colour},
                name=token,
                hovertemplate=f"{token} at %{{text}}: p %{{y:.3f}} "
                "[%{customdata[0]:.3f}, %{customdata[1]:.3f}]<extra></extra>",
            )
        )
    title = f"Logit lens of the answer ({label})"
    if result.prior is not None:
        rift = result.rift(label)
        if rift.layer is not None:
            fig.add_vline(
                x=rift.layer,
                line_dash="dot",
                annotation_text=f"rift: {rift.boundary} (CI {rift.low:g}–{rift.high:g})",
            )
            title += f": the answer overtakes the prior at {rift.boundary}"
        else:
            title += ": the answer never stays ahead of the prior"
    fig.update_xaxes(title_text="layer boundary", tickvals=x, ticktext=list(result.boundaries))
    fig.update_yaxes(title_text="probability", range=[-0.02, 1.02])
    fig.update_layout(title=title, height=450, width=900)
    return fig


def relation_probes_chart(result: RelationProbes) -> go.Figure:
    """Held-out-vocabulary test accuracy of the linear and MLP relation probes at every layer
    boundary, the same probes on shuffled labels (the control task, dashed) and chance (dotted).

    Args:
        result: What :func:`~iteration_heads.pathways.probing.relation_probes` (or
            :func:`~iteration_heads.pathways.probing.fit_relation_probes`) returned.

    Example:
        >>> import torch
        >>> from iteration_heads.pathways.probing import fit_relation_probes
        >>> g = torch.Generator().manual_seed(0)
        >>> labels, words = torch.arange(1000) % 2, torch.randint(0, 40, (1000, 2), generator=g)
        >>> features = torch.randn(2, 1000, 8, generator=g) + labels[None, :, None]
        >>> result = fit_relation_probes(features, labels, words, epochs=20)
        >>> [trace.name for trace in relation_probes_chart(result).data]
        ['linear', 'MLP', 'linear control', 'MLP control', 'chance']
    """
    if not isinstance(result, RelationProbes):
        raise IterationHeadsError(
            f"result must be RelationProbes (from iteration_heads.pathways.relation_probes), "
            f"got {type(result).__name__}"
        )
    x = list(range(len(result.boundaries)))
    fig = go.Figure()
    lines = [
        ("linear", result.linear_accuracy, result.linear_f1, ITERATION_COLOUR, "solid"),
        ("MLP", result.mlp_accuracy, result.mlp_f1, EOI_COLOUR, "solid"),
        ("linear control", result.control_linear, None, ITERATION_COLOUR, "dash"),
        ("MLP control", result.control_mlp, None, EOI_COLOUR, "dash"),
    ]
    for name, accuracy, f1, colour, dash in lines:
        extra = [] if f1 is None else f1.tolist()
        fig.add_trace(
            go.Scatter(
                x=x,
                y=accuracy.tolist(),
                customdata=extra or None,
                text=list(result.boundaries),
                mode="lines+markers",
                line={"color": colour, "dash": dash},
                name=name,
                hovertemplate=f"{name} at %{{text}}: accuracy %{{y:.3f}}"
                + (", macro-F1 %{customdata:.3f}" if extra else "")
                + "<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[result.chance] * len(x),
            mode="lines",
            line={"color": "grey", "dash": "dot"},
            name="chance",
            hovertemplate=f"chance {result.chance:.3f}<extra></extra>",
        )
    )
    test = sum(result.counts["test"].values())
    fig.update_xaxes(title_text="layer boundary", tickvals=x, ticktext=list(result.boundaries))
    fig.update_yaxes(title_text="test accuracy (held-out words)", range=[0, 1.02])
    fig.update_layout(
        title=f"Probes of {'/'.join(result.classes)} word pairs ({test} test pairs)",
        height=450,
        width=900,
    )
    return fig


def horizon_chart(result: HorizonPatching, *, measure: str = "matched") -> go.Figure:
    """The horizon experiment: per patched layer (then every layer at once, and the corrupted
    prompt alone), the share of problems whose regenerated chain of thought still equals the
    clean one, one line per prefix (gold sentences given), one panel per corruption.

    Args:
        result: What :func:`~iteration_heads.pathways.horizon.horizon_patching` returned.
        measure: ``"matched"`` (Dutta et al.'s), ``"followed"`` (equals the corrupted
            prompt's own) or ``"kept"`` (share of the clean suffix before the first change).

    Example:
        >>> import torch
        >>> from iteration_heads.pathways.horizon import HorizonPatching
        >>> values = torch.ones(1, 4, 2)
        >>> result = HorizonPatching(("last",), ("L0", "all", "none", "corrupted"), (0, 1),
        ...                          values, values, values, 5, 5, 0)
        >>> [trace.name for trace in horizon_chart(result).data]
        ['prefix 0', 'prefix 1']
    """
    if not isinstance(result, HorizonPatching):
        raise IterationHeadsError(
            f"result must be HorizonPatching (from iteration_heads.pathways.horizon_patching), "
            f"got {type(result).__name__}"
        )
    if measure not in ("matched", "followed", "kept"):
        raise IterationHeadsError(f"measure={measure!r}, expected 'matched', 'followed' or 'kept'")
    values = getattr(result, measure)
    shown = [j for j, row in enumerate(result.rows) if row != "none"]
    labels = [{"all": "all layers", "corrupted": "corrupted prompt"}.get(r, r) for r in result.rows]
    fig = make_subplots(rows=1, cols=len(result.corruptions), shared_yaxes=True,
                        subplot_titles=[f"corruption {c!r}" for c in result.corruptions])  # fmt: skip
    palette = ["#08519c", "#3182bd", "#6baed6", "#31a354", "#e6550d", "#756bb1", "#636363"]
    for i, corruption in enumerate(result.corruptions):
        for q, prefix in enumerate(result.prefixes):
            fig.add_trace(
                go.Scatter(
                    x=[labels[j] for j in shown],
                    y=[float(values[i, j, q]) for j in shown],
                    mode="lines+markers",
                    line={"color": palette[q % len(palette)]},
                    name=f"prefix {prefix}",
                    legendgroup=f"prefix {prefix}",
                    showlegend=i == 0,
                    hovertemplate=f"{corruption}, prefix {prefix}, patched %{{x}}: {measure} "
                    "%{y:.2f}<extra></extra>",
                ),
                row=1,
                col=i + 1,
            )
        fig.update_xaxes(title_text="patched", type="category", row=1, col=i + 1)
    none = values[:, result.rows.index("none")] if "none" in result.rows else None
    note = "" if none is None else f"; unpatched: {float(none.min()):.2f}-{float(none.max()):.2f}"
    fig.update_yaxes(title_text=f"{measure} (share of problems)", range=[-0.02, 1.02], row=1,
                     col=1)  # fmt: skip
    fig.update_layout(
        title=f"Horizon: regenerated chain of thought with one layer fed the corrupted fact "
        f"({result.n_problems} problems{note})",
        height=450,
        width=max(600, 420 * len(result.corruptions)),
    )
    return fig
