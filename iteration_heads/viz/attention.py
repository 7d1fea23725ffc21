"""Attention on one probe: an interactive circuitsvis view and plotly heatmaps with the ideal
EoI and iteration patterns overlaid (docs/paper.md §5-§6).

:class:`AttentionView` displays circuitsvis's inlined bundle in Jupyter and never probes the
internet (circuitsvis's own ``RenderedHTML`` does, and falls back to a CDN when it can).
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from iteration_heads._io import write_output_text
from iteration_heads._torch import (
    Head,
    cached_run,
    check_heads,
    device_of,
    evaluating,
    pattern_hook,
    without_gradients,
)
from iteration_heads.detection.probes import Probes
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.transformer import model_config
from iteration_heads.tasks.task import check_int

ProbeLike = Probes | Tensor | Sequence[int] | None
"""A :class:`~iteration_heads.detection.Probes`, a 1-D sequence of token ids in the library
layout, or None (a test probe of the task the model was trained on)."""

EOI_COLOUR = "#e6550d"
"""Colour of the EoI pattern in every figure."""
ITERATION_COLOUR = "#31a354"
"""Colour of the iteration pattern in every figure."""


@dataclass(frozen=True)
class _Probe:
    """One probe sequence, trimmed to its own tokens, and where its parts sit."""

    tokens: list[int]
    length: int
    inputs: list[int]
    eoi: int
    queries: list[int]
    states: list[int]
    labels: list[str]

    def targets(self, kind: str) -> list[tuple[int, int]]:
        """``(query, key)`` of the ideal ``kind`` pattern (docs/paper.md §6)."""
        if kind == "eoi":
            return [(state, self.eoi) for state in self.states]
        return list(zip(self.queries, self.inputs, strict=True))


def _labels(model: Any, tokens: list[int]) -> list[str]:
    try:
        return model_config(model).layout.decode(tokens)
    except IterationHeadsError:
        return [str(t) for t in tokens]


def _one_probe(
    model: Any,
    probe: ProbeLike,
    index: int,
    length: int | None,
    labels: Callable[[list[int]], list[str]] | None = None,
) -> _Probe:
    """Resolve ``probe`` (see :func:`attention_heatmap`) to one trimmed sequence."""
    _check_model(model)
    if probe is None:
        probes = Probes.from_model(model, n=256)
        want = probes.max_len if length is None else length
        rows = (probes.lengths == want).nonzero().flatten()
        if len(rows) == 0:
            raise IterationHeadsError(
                f"length={length}: the model's test probes have lengths "
                f"{sorted(set(probes.lengths.tolist()))}"
            )
        probes = probes.select(rows)
    elif isinstance(probe, Probes):
        probes = probe
    elif isinstance(probe, Tensor | list | tuple):
        tokens = torch.as_tensor(probe)
        if tokens.ndim != 1 or tokens.dtype.is_floating_point or len(tokens) < 4:
            raise IterationHeadsError(
                f"probe tokens must be a 1-D sequence of token ids in the library layout, got "
                f"shape {tuple(tokens.shape)} and dtype {tokens.dtype}; pass Probes(...) otherwise"
            )
        try:
            eoi_token = model_config(model).layout.eoi
        except IterationHeadsError:
            raise IterationHeadsError(
                f"{type(model).__name__} was not built by iteration_heads: pass the probe as "
                "Probes(tokens, lengths, input_start=...) so its positions are known"
            ) from None
        where = (tokens == eoi_token).nonzero().flatten()
        if len(where) == 0:
            raise IterationHeadsError(
                f"probe {tokens.tolist()} holds no EoI token (id {eoi_token})"
            )
        probes = Probes(tokens[None], eoi=int(where[0]))
    else:
        raise IterationHeadsError(
            f"probe must be None, a Probes object or a 1-D sequence of token ids, got "
            f"{type(probe).__name__}"
        )
    if not -len(probes) <= index < len(probes):
        raise IterationHeadsError(f"index={index}, but there are {len(probes)} probes")
    index %= len(probes)
    n = int(probes.lengths[index])
    states = probes.state_positions[index, :n].tolist()
    end = min(states[-1] + 2, probes.width)  # keep the token after s_L, drop the padding
    ids: list[int] = probes.tokens[index, :end].tolist()
    names = labels(ids) if labels is not None else _labels(model, ids)
    if len(names) != len(ids):
        raise IterationHeadsError(f"labels gave {len(names)} names for {len(ids)} tokens")
    return _Probe(
        ids,
        n,
        probes.input_positions[index, :n].tolist(),
        int(probes.eoi[index]),
        probes.query_positions[index, :n].tolist(),
        states,
        [str(name) for name in names],
    )


def _check_model(model: Any) -> None:
    if not hasattr(model, "run_with_cache") or not hasattr(model, "cfg"):
        raise IterationHeadsError(
            f"model must be a TransformerLens model (TransformerBridge or HookedTransformer), "
            f"got {type(model).__name__}"
        )


@without_gradients()
def _patterns(model: Any, tokens: list[int]) -> Float[Tensor, "layer head query key"]:
    names = [pattern_hook(layer) for layer in range(int(model.cfg.n_layers))]
    device = device_of(model)
    with evaluating(model):
        _, cache = cached_run(
            model, torch.tensor([tokens], device=device), names_filter=lambda n: n in names
        )
    return torch.stack([cache[n][0] for n in names]).float().cpu()


def _heads(model: Any, heads: Head | Sequence[Head] | None) -> list[Head]:
    """Every head of the model (None), or the given ones, checked."""
    if heads is None:
        n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
        return [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    return check_heads(model, heads)


class AttentionView:
    """A circuitsvis attention view that works offline.

    In Jupyter it displays circuitsvis's inlined JavaScript bundle (``local_src``): no CDN and no
    internet probe. :meth:`save` writes a standalone HTML page; :meth:`to_html` returns it.

    Attributes:
        fragment: The HTML fragment (a ``div`` and an inline ``script``).
        title: Shown above the view in a saved page.
    """

    def __init__(self, fragment: str, title: str = "attention") -> None:
        # circuitsvis writes its container as ``<div id=... />``; HTML has no self-closing div,
        # so everything after it would land inside, and React would replace it on render.
        self.fragment = re.sub(r"^(\s*<div\b[^>]*?)\s*/>", r"\1></div>", fragment, count=1)
        self.title = title

    def _repr_html_(self) -> str:
        return self.fragment

    def __html__(self) -> str:
        return self.fragment

    def __repr__(self) -> str:
        return f"AttentionView({self.title!r}, {len(self.fragment)} characters of HTML)"

    def to_html(self) -> str:
        """A full, self-contained HTML page."""
        title = html.escape(self.title)
        return (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body><h3>{title}</h3>\n{self.fragment}\n</body></html>\n"
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_html` to ``path`` atomically (a crash leaves the old file or the new),
        creating missing folders; returns the path."""
        out = Path(path)
        write_output_text(out, self.to_html())
        return out


def attention_view(
    model: Any,
    probe: ProbeLike = None,
    *,
    heads: Head | Sequence[Head] | None = None,
    index: int = 0,
    length: int | None = None,
    labels: Callable[[list[int]], list[str]] | None = None,
) -> AttentionView:
    """Interactive circuitsvis view of the attention of ``heads`` on one probe.

    Args:
        model: A TransformerLens model (library models label tokens with the task layout).
        probe: None (a test probe of the task the model was trained on), a
            :class:`~iteration_heads.detection.probes.Probes` (sequence ``index``) or a 1-D sequence of
            token ids in the library layout.
        heads: ``(layer, head)`` or a list of them (None: every head).
        index: Which probe of a ``Probes``.
        length: With ``probe=None``, the input length (None: the longest).
        labels: Names of token ids (e.g. a tokenizer's ``convert_ids_to_tokens``); default: the
            library layout's names, or the ids.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> view = attention_view(model, [15, 3, 2, 11, 3, 7, 12])
        >>> view.title, "<script" in view._repr_html_()
        ('attention of L0H0, L1H0 on <polynomial> 3 2 <EoI> 3 7 <EoS>', True)
    """
    check_int("index", index)
    check_int("length", length, minimum=1, none=True)
    import circuitsvis.attention as cv_attention

    one = _one_probe(model, probe, index, length, labels)
    chosen = _heads(model, heads)
    pattern = _patterns(model, one.tokens)
    names = [f"L{layer}H{head}" for layer, head in chosen]
    rendered = cv_attention.attention_heads(
        attention=torch.stack([pattern[layer, head] for layer, head in chosen]).numpy(),
        tokens=[f"{label} " for label in one.labels],
        attention_head_names=names,
    )
    title = f"attention of {', '.join(names)} on {' '.join(one.labels)}"
    return AttentionView(rendered.local_src, title)


def attention_heatmap(
    model: Any,
    probe: ProbeLike = None,
    *,
    heads: Head | Sequence[Head] | None = None,
    index: int = 0,
    length: int | None = None,
    ideal: bool = True,
    columns: int = 2,
    labels: Callable[[list[int]], list[str]] | None = None,
) -> go.Figure:
    """Attention of ``heads`` on one probe, query × key, with the ideal patterns overlaid.

    Open squares mark the ideal EoI pattern (queries ``s_1..s_L`` onto EoI, orange) and the ideal
    iteration pattern (the query before ``s_t`` onto ``x_t``: the diagonal offset by ``L+1``,
    green). Arguments as :func:`attention_view`; ``columns`` panels per row.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> fig = attention_heatmap(model, [15, 3, 2, 11, 3, 7, 12], heads=(1, 0))
        >>> [trace.name for trace in fig.data]
        ['L1H0', 'ideal EoI', 'ideal iteration']
    """
    check_int("index", index)
    check_int("length", length, minimum=1, none=True)
    check_int("columns", columns, minimum=1)
    one = _one_probe(model, probe, index, length, labels)
    chosen = _heads(model, heads)
    pattern = _patterns(model, one.tokens)
    n = len(one.tokens)
    cols = max(1, min(columns, len(chosen)))
    rows = math.ceil(len(chosen) / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[f"L{layer}H{head}" for layer, head in chosen],
        horizontal_spacing=0.18,
        vertical_spacing=0.12 if rows > 1 else 0.1,
    )
    ticks = [f"{label} ({i})" for i, label in enumerate(one.labels)]
    for i, (layer, head) in enumerate(chosen):
        row, col = i // cols + 1, i % cols + 1
        z = pattern[layer, head].tolist()
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=list(range(n)),
                y=list(range(n)),
                zmin=0,
                zmax=1,
                colorscale="Blues",
                showscale=i == 0,
                name=f"L{layer}H{head}",
                customdata=[[[ticks[q], ticks[k]] for k in range(n)] for q in range(n)],
                hovertemplate="query %{customdata[0]}<br>key %{customdata[1]}<br>"
                "weight %{z:.3f}<extra></extra>",
            ),
            row=row,
            col=col,
        )
        if ideal:
            for kind, colour, label in (
                ("eoi", EOI_COLOUR, "ideal EoI"),
                ("iteration", ITERATION_COLOUR, "ideal iteration"),
            ):
                points = one.targets(kind)
                fig.add_trace(
                    go.Scatter(
                        x=[k for _, k in points],
                        y=[q for q, _ in points],
                        mode="markers",
                        marker={
                            "symbol": "square-open",
                            "size": max(6, int(360 / n)),
                            "color": colour,
                            "line": {"width": 2},
                        },
                        name=label,
                        legendgroup=label,
                        showlegend=i == 0,
                        hoverinfo="skip",
                    ),
                    row=row,
                    col=col,
                )
        fig.update_xaxes(
            title_text="key",
            tickangle=-90,
            tickmode="array",
            tickvals=list(range(n)),
            ticktext=one.labels,
            row=row,
            col=col,
        )
        fig.update_yaxes(
            title_text="query",
            autorange="reversed",
            scaleanchor=f"x{i + 1 if i else ''}",
            tickmode="array",
            tickvals=list(range(n)),
            ticktext=ticks,
            row=row,
            col=col,
        )
    fig.update_layout(
        title={"text": f"Attention on a probe of length {one.length}", "x": 0.5},
        height=500 * rows,
        width=580 * cols,
        plot_bgcolor="white",
        legend={"orientation": "h", "x": 0, "y": 1.0 + 0.12 / rows, "yanchor": "bottom"},
    )
    return fig
