"""Figures: attention views, detection heatmaps, training dynamics, interventions, scaling grids.

Every function takes the library's own objects (a model and a probe, a
:class:`~iteration_heads.report.DetectionReport`, a run directory, an
:class:`~iteration_heads.patching.ActivationPatching`, a
:class:`~iteration_heads.verification.Verification` or :class:`~iteration_heads.interventions.Effect`)
and returns a plotly ``Figure``, or an :class:`AttentionView` (circuitsvis). Anything else raises
:class:`~iteration_heads.errors.IterationHeadsError` naming what was passed and what is expected.

Offline: :func:`save_html` writes a self-contained page (plotly.js or the circuitsvis bundle
inlined, no CDN). In Jupyter, plotly's default renderers (``plotly_mimetype``, ``notebook``) bring
their own plotly.js; :class:`AttentionView` displays circuitsvis's inlined bundle and never probes
the internet (circuitsvis's own ``RenderedHTML`` does, and falls back to a CDN when it can).
PNG export (:func:`save_png`) is optional: it needs ``kaleido>=1`` and a Chromium.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions import Effect
from iteration_heads.model import model_config
from iteration_heads.patching import ActivationPatching
from iteration_heads.probes import Probes
from iteration_heads.report import DetectionReport
from iteration_heads.verification import Verification

Head = tuple[int, int]
ProbeLike = Probes | Tensor | Sequence[int] | None

HISTORY_FILE = "history.jsonl"  # same names as iteration_heads.train (kept here: no cycle)
RUN_FILE = "run.json"
EOI_COLOUR = "#e6550d"
ITERATION_COLOUR = "#31a354"


# ---------------------------------------------------------------- probes and patterns


@dataclass(frozen=True)
class _Probe:
    """One probe sequence, trimmed to its own tokens, and where its parts sit."""

    tokens: list[int]
    length: int
    input_start: int
    eoi: int
    cot_start: int
    labels: list[str]

    def targets(self, kind: str) -> list[tuple[int, int]]:
        """``(query, key)`` of the ideal ``kind`` pattern (PAPER.md §6)."""
        steps = range(1, self.length + 1)
        if kind == "eoi":
            return [(self.cot_start + t - 1, self.eoi) for t in steps]
        return [
            (self.eoi if t == 1 else self.cot_start + t - 2, self.input_start + t - 1)
            for t in steps
        ]


def _labels(model: Any, tokens: list[int]) -> list[str]:
    try:
        return model_config(model).layout.decode(tokens)
    except IterationHeadsError:
        return [str(t) for t in tokens]


def _one_probe(model: Any, probe: ProbeLike, index: int, length: int | None) -> _Probe:
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
    start, eoi = int(probes.input_start[index]), int(probes.eoi[index])
    cot, n = int(probes.cot_start[index]), int(probes.lengths[index])
    end = min(cot + n + 1, probes.width)  # keep the EoS after s_L, drop the padding
    ids: list[int] = probes.tokens[index, :end].tolist()
    return _Probe(ids, n, start, eoi, cot, _labels(model, ids))


@contextmanager
def _evaluating(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _check_model(model: Any) -> None:
    if not hasattr(model, "run_with_cache") or not hasattr(model, "cfg"):
        raise IterationHeadsError(
            f"model must be a TransformerLens model (TransformerBridge or HookedTransformer), "
            f"got {type(model).__name__}"
        )


@torch.no_grad()
def _patterns(model: Any, tokens: list[int]) -> Float[Tensor, "layer head query key"]:
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(int(model.cfg.n_layers))]
    device = next(model.parameters()).device
    with _evaluating(model):
        _, cache = model.run_with_cache(
            torch.tensor([tokens], device=device), names_filter=lambda n: n in names
        )
    return torch.stack([cache[n][0] for n in names]).float().cpu()


def _heads(model: Any, heads: Head | Sequence[Head] | None) -> list[Head]:
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    if heads is None:
        return [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    single = isinstance(heads, tuple) and len(heads) == 2 and isinstance(heads[0], int)
    items: Sequence[Any] = [heads] if single else heads
    out = []
    for item in items:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise IterationHeadsError(f"head {item!r}: expected (layer, head)")
        layer, head = int(item[0]), int(item[1])
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise IterationHeadsError(
                f"head ({layer}, {head}) does not exist: the model has {n_layers} layers of "
                f"{n_heads} heads"
            )
        out.append((layer, head))
    return out


# ---------------------------------------------------------------- attention views


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
        """Write :meth:`to_html` to ``path``; returns the path."""
        out = Path(path)
        out.write_text(self.to_html(), encoding="utf-8")
        return out


def attention_view(
    model: Any,
    probe: ProbeLike = None,
    *,
    heads: Head | Sequence[Head] | None = None,
    index: int = 0,
    length: int | None = None,
) -> AttentionView:
    """Interactive circuitsvis view of the attention of ``heads`` on one probe.

    Args:
        model: A TransformerLens model (library models label tokens with the task layout).
        probe: None (a test probe of the task the model was trained on), a
            :class:`~iteration_heads.probes.Probes` (sequence ``index``) or a 1-D sequence of
            token ids in the library layout.
        heads: ``(layer, head)`` or a list of them (None: every head).
        index: Which probe of a ``Probes``.
        length: With ``probe=None``, the input length (None: the longest).

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> view = attention_view(model, [15, 3, 2, 11, 3, 7, 12])
        >>> view.title, "<script" in view._repr_html_()
        ('attention of L0H0, L1H0 on <polynomial> 3 2 <EoI> 3 7 <EoS>', True)
    """
    import circuitsvis.attention as cv_attention

    one = _one_probe(model, probe, index, length)
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
    one = _one_probe(model, probe, index, length)
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


# ---------------------------------------------------------------- detection


def detection_heatmap(report: DetectionReport, *, metric: str = "peakiness") -> go.Figure:
    """EoI and iteration scores of every head, layer × head; the circuit's heads outlined.

    Args:
        report: What :func:`~iteration_heads.detect.detect` returned.
        metric: ``"peakiness"``, ``"mean"``, ``"invariance"`` or ``"tl_score"``.

    Example:
        >>> from iteration_heads import ModelConfig, build_model, detect
        >>> report = detect(build_model(ModelConfig(d_model=32, max_len=6)), task="copy",
        ...                 n_probes=60)
        >>> [trace.name for trace in detection_heatmap(report).data]
        ['EoI peakiness', 'iteration peakiness']
    """
    if not isinstance(report, DetectionReport):
        raise IterationHeadsError(
            f"report must be a DetectionReport (from iteration_heads.detect), got "
            f"{type(report).__name__}"
        )
    allowed = ("peakiness", "mean", "invariance", "tl_score")
    if metric not in allowed:
        raise IterationHeadsError(f"metric {metric!r}, expected one of {list(allowed)}")
    frame = report.heads
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


# ---------------------------------------------------------------- training dynamics


def _history(run: Any) -> list[dict[str, Any]]:
    """The history records of a run directory (or a history list from ``train``)."""
    if isinstance(run, list) and all(isinstance(r, dict) and "test" in r for r in run):
        records = run
        where = "the history list"
    elif isinstance(run, str | os.PathLike):
        path = Path(run) / HISTORY_FILE
        if not path.is_file():
            raise IterationHeadsError(
                f"{str(run)!r} is not a run directory with {HISTORY_FILE} (written by "
                "iteration_heads.train / iteration-heads train --out)"
            )
        lines = path.read_text().splitlines()
        try:
            records = [json.loads(line) for line in lines if line.strip()]
        except json.JSONDecodeError as err:
            raise IterationHeadsError(f"corrupt JSON in {str(path)!r}: {err}") from err
        where = repr(str(path))
    else:
        raise IterationHeadsError(
            f"run must be a run directory (str or Path) or the history list train() returns, "
            f"got {type(run).__name__}"
        )
    if not records:
        raise IterationHeadsError(f"{where} holds no evaluation record")
    return records


def training_curves(run: str | os.PathLike[str] | list[dict[str, Any]]) -> go.Figure:
    """Test accuracy per length, peakiness per layer and training loss over epochs.

    The paper's dynamics figures: sequence accuracy of every input length; for every layer the
    best head's EoI (dashed) and iteration (solid) peakiness, averaged over lengths ``>= 4``.

    Args:
        run: A run directory (with ``history.jsonl``) or the list :func:`~iteration_heads.train.train`
            returns.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> from iteration_heads.train import TrainConfig, train
        >>> data = make_dataset(DataConfig(task="copy", max_len=4, n_train=32, n_test=32))
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> history = train(model, data, TrainConfig(epochs=1), progress=False)
        >>> len(training_curves(history).data)  # 4 lengths, 2 layers × 2 kinds, loss
        9
    """
    records = _history(run)
    epochs = [r["epoch"] for r in records]
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.07,
        subplot_titles=[
            "test sequence accuracy per input length",
            "peakiness (best head per layer, lengths >= 4)",
            "training loss",
        ],
    )
    lengths = records[-1]["test"]["lengths"]
    for i, length in enumerate(lengths):
        fig.add_trace(
            go.Scatter(
                x=epochs,
                y=[r["test"]["sequence_accuracy"][i] for r in records],
                mode="lines",
                name=f"L={length}",
                legendgroup="accuracy",
                line={"color": f"hsl({int(240 * i / max(1, len(lengths) - 1))}, 70%, 45%)"},
            ),
            row=1,
            col=1,
        )
    summaries = [r["test"]["summary"] for r in records]
    n_layers = len(summaries[-1]["iteration_peakiness"])
    for layer in range(n_layers):
        for kind, dash in (("eoi", "dash"), ("iteration", "solid")):
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[s[f"{kind}_peakiness"][layer] for s in summaries],
                    mode="lines",
                    name=f"layer {layer} {'EoI' if kind == 'eoi' else 'iteration'}",
                    legendgroup="peakiness",
                    line={
                        "dash": dash,
                        "color": EOI_COLOUR if kind == "eoi" else ITERATION_COLOUR,
                        "width": 1 + 1.5 * layer,
                    },
                ),
                row=2,
                col=1,
            )
    loss = [(r["epoch"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
    fig.add_trace(
        go.Scatter(
            x=[e for e, _ in loss],
            y=[v for _, v in loss],
            mode="lines",
            name="train loss",
            line={"color": "black"},
        ),
        row=3,
        col=1,
    )
    fig.update_yaxes(range=[-0.02, 1.02], row=1, col=1)
    fig.update_yaxes(range=[-0.02, 1.02], row=2, col=1)
    fig.update_yaxes(type="log", row=3, col=1)
    fig.update_xaxes(title_text="epoch", row=3, col=1)
    fig.update_layout(height=800, width=900, title="Training dynamics")
    return fig


# ---------------------------------------------------------------- scaling grids


def _run_figures(path: Path) -> dict[str, Any]:
    """d_model, max_len and final test summary of one run or model directory."""
    meta_path, config_path = path / "metadata.json", path / "config.json"
    summary = None
    if (path / HISTORY_FILE).is_file():
        summary = _history(path)[-1]["test"]["summary"]
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        d_model, max_len = config["d_model"], config["max_len"]
        if summary is None and meta_path.is_file():
            summary = json.loads(meta_path.read_text()).get("summary", {}).get("test")
    elif (path / RUN_FILE).is_file():
        config = json.loads((path / RUN_FILE).read_text())
        d_model, max_len = config["model"]["d_model"], config["data"]["max_len"]
    else:
        raise IterationHeadsError(
            f"{str(path)!r} is neither a run directory (run.json) nor a model directory "
            "(config.json)"
        )
    if summary is None:
        raise IterationHeadsError(
            f"{str(path)!r} has no results: no {HISTORY_FILE} and no summary in metadata.json"
        )
    return {"d_model": d_model, "max_len": max_len, **summary}


def scaling_grid(runs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> go.Figure:
    """Final test accuracy and peakiness of many runs, on a d_model × Lmax grid.

    Three panels: accuracy (lengths ``>= 4``), EoI peakiness (best head of the layers before
    the last) and iteration peakiness (best head of any layer). Runs that share a cell (seeds)
    are averaged; hovering shows how many.

    Args:
        runs: Run or model directories, or one directory whose subdirectories are runs.

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> from iteration_heads.checkpoint import save
        >>> root = Path(tempfile.mkdtemp())
        >>> for d in (16, 32):
        ...     summary = {"test": {"accuracy": d / 32, "eoi_peakiness": [0.6, 0.0],
        ...                         "iteration_peakiness": [0.1, 0.9]}}
        ...     _ = save(build_model(ModelConfig(d_model=d, max_len=4)), root / f"d{d}",
        ...              metadata={"summary": summary})
        >>> scaling_grid(root).data[0].z
        ([0.5, 1.0],)
    """
    if isinstance(runs, str | os.PathLike):
        root = Path(runs)
        if not root.is_dir():
            raise IterationHeadsError(f"runs directory {str(root)!r} does not exist")
        marks = ("config.json", RUN_FILE)
        paths = sorted(p for p in root.iterdir() if any((p / m).is_file() for m in marks))
        if not paths:
            raise IterationHeadsError(f"{str(root)!r} holds no run or model directory")
    elif isinstance(runs, Sequence) and all(isinstance(r, str | os.PathLike) for r in runs):
        paths = [Path(r) for r in runs]
        if not paths:
            raise IterationHeadsError("runs is empty: give at least one run directory")
    else:
        raise IterationHeadsError(
            f"runs must be a directory or a list of run directories, got {type(runs).__name__}"
        )
    cells: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for path in paths:
        figures = _run_figures(path)
        cells.setdefault((figures["d_model"], figures["max_len"]), []).append(figures)
    widths = sorted({d for d, _ in cells})
    lens = sorted({L for _, L in cells})

    def value(entry: dict[str, Any], name: str) -> float:
        if name == "accuracy":
            return float(entry["accuracy"])
        peaks = entry[name] or [math.nan]
        if name == "eoi_peakiness":
            peaks = peaks[:-1] or peaks
        return float(max(peaks))

    panels = ("accuracy", "eoi_peakiness", "iteration_peakiness")
    fig = make_subplots(
        rows=1, cols=3, subplot_titles=["test accuracy", "EoI peakiness", "iteration peakiness"]
    )
    for col, name in enumerate(panels, start=1):
        z: list[list[float | None]] = []
        count: list[list[int]] = []
        for L in lens:
            entries = [cells.get((d, L), []) for d in widths]
            z.append([sum(value(e, name) for e in es) / len(es) if es else None for es in entries])
            count.append([len(es) for es in entries])
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=[str(d) for d in widths],
                y=[str(L) for L in lens],
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                showscale=col == 3,
                customdata=count,
                texttemplate="%{z:.2f}",
                name=name,
                hovertemplate="d_model %{x}, Lmax %{y}: %{z:.3f} (%{customdata} runs)"
                "<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="d_model", type="category", row=1, col=col)
        fig.update_yaxes(title_text="Lmax", type="category", row=1, col=col)
    fig.update_layout(
        title="Scaling: final test figures over d_model × Lmax", height=420, width=1100
    )
    return fig


# ---------------------------------------------------------------- interventions


def patching_heatmap(
    result: ActivationPatching, *, labels: Sequence[str] | None = None
) -> go.Figure:
    """Activation patching effect of every head (rows) at every position (columns).

    Args:
        result: What :func:`~iteration_heads.patching.activation_patching` returned.
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
        effects: A :class:`~iteration_heads.verification.Verification` (one bar per ablated
            set: the circuit, each role, controls), an :class:`~iteration_heads.interventions.Effect`,
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


# ---------------------------------------------------------------- saving


def save_html(obj: go.Figure | AttentionView, path: str | os.PathLike[str]) -> Path:
    """Write a figure or attention view as one self-contained HTML file (no CDN).

    Example:
        >>> import tempfile
        >>> path = save_html(go.Figure(go.Bar(y=[1, 2])), Path(tempfile.mkdtemp()) / "f.html")
        >>> "cdn.plot.ly/plotly" in path.read_text()
        False
    """
    out = Path(path)
    if isinstance(obj, AttentionView):
        return obj.save(out)
    if isinstance(obj, go.Figure):
        obj.write_html(out, include_plotlyjs=True, full_html=True)
        return out
    raise IterationHeadsError(
        f"save_html takes a plotly Figure or an AttentionView, got {type(obj).__name__}"
    )


def find_chromium() -> str | None:
    """Path of a Chromium to drive headless (``BROWSER_PATH``, then ``chromium`` on PATH).

    Example:
        >>> find_chromium() is None or Path(find_chromium()).exists()
        True
    """
    explicit = os.environ.get("BROWSER_PATH")
    if explicit and Path(explicit).exists():
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "chromium-headless-shell"):
        found = shutil.which(name)
        if found:
            return found
    return None


def save_png(fig: go.Figure, path: str | os.PathLike[str], *, scale: float = 1.0) -> Path:
    """Export a figure as PNG (optional: needs ``kaleido>=1`` and a Chromium).

    Raises:
        IterationHeadsError: saying what to install when kaleido or a browser is missing.
    """
    if not isinstance(fig, go.Figure):
        raise IterationHeadsError(f"save_png takes a plotly Figure, got {type(fig).__name__}")
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise IterationHeadsError(
            "PNG export needs kaleido>=1: pip install 'kaleido>=1' (and a Chromium: "
            "apt-get install chromium); HTML export needs neither (save_html)"
        ) from None
    browser = find_chromium()
    if browser is None:
        raise IterationHeadsError(
            "PNG export needs a Chromium browser: apt-get install chromium (Debian), or set "
            "BROWSER_PATH to a chromium-headless-shell; HTML export needs none (save_html)"
        )
    os.environ.setdefault("BROWSER_PATH", browser)
    out = Path(path)
    fig.write_image(out, format="png", scale=scale)
    return out
