"""Figures over training and over runs: the paper's dynamics (accuracy per length, peakiness
per layer, loss) and scaling grids over d_model × Lmax.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from iteration_heads._io import (
    CONFIG_FILE,
    HISTORY_FILE,
    METADATA_FILE,
    RUN_FILE,
    read_json,
)
from iteration_heads.auditing.checkpoints import TrainingAudit
from iteration_heads.errors import IterationHeadsError
from iteration_heads.training.history import read_history
from iteration_heads.viz.attention import EOI_COLOUR, ITERATION_COLOUR


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
        records = read_history(run)  # each record checked: a bad one is a one-line error
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
        run: A run directory (with ``history.jsonl``) or the list :func:`~iteration_heads.training.loop.train`
            returns.

    Example:
        >>> from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
        >>> from iteration_heads.training.loop import TrainConfig, train
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


def _run_figures(path: Path) -> dict[str, Any]:
    """d_model, max_len and final test summary of one run or model directory."""
    meta_path, config_path = path / METADATA_FILE, path / CONFIG_FILE
    summary = None
    if (path / HISTORY_FILE).is_file():
        summary = _history(path)[-1]["test"]["summary"]
    if config_path.is_file():
        config = read_json(config_path)
        d_model, max_len = config["d_model"], config["max_len"]
        if summary is None and meta_path.is_file():
            summary = read_json(meta_path).get("summary", {}).get("test")
    elif (path / RUN_FILE).is_file():
        config = read_json(path / RUN_FILE)
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
        >>> from iteration_heads.model.checkpoint import save
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
        marks = (CONFIG_FILE, RUN_FILE)
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


def checkpoint_curves(result: TrainingAudit) -> go.Figure:
    """Accuracy and per-layer peakiness over a run's checkpoints, with the checkpoint where the
    iteration heads formed marked (the paper's dynamics figure, for any model).

    Args:
        result: What :func:`~iteration_heads.auditing.audit_checkpoints` returned.

    Example:
        >>> import pandas as pd
        >>> from iteration_heads.auditing import TrainingAudit
        >>> table = pd.DataFrame({"checkpoint": ["checkpoint-1", "checkpoint-2"], "step": [1, 2],
        ...     "epoch": [None, None], "accuracy": [0.1, 1.0], "iteration_peakiness": [[0.1, 0.2],
        ...     [0.1, 0.9]], "eoi_peakiness": [[0.1, 0.0], [0.6, 0.0]],
        ...     "has_iteration_heads": [False, True]})
        >>> [trace.name for trace in checkpoint_curves(TrainingAudit(table, "run")).data][:3]
        ['accuracy', 'layer 0 iteration', 'layer 1 iteration']
    """
    if not isinstance(result, TrainingAudit):
        raise IterationHeadsError(
            f"result must be a TrainingAudit (from iteration_heads.auditing.audit_checkpoints), "
            f"got {type(result).__name__}"
        )
    table = result.table
    epochs = table["epoch"].tolist()
    by_epoch = all(e is not None and not math.isnan(e) for e in epochs)
    x = epochs if by_epoch else table["step"].tolist()
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=table["accuracy"], name="accuracy", line={"color": "black"}))
    n_layers = len(table["iteration_peakiness"].iloc[-1])
    for kind, colour, dash in (
        ("iteration", ITERATION_COLOUR, "solid"),
        ("eoi", EOI_COLOUR, "dash"),
    ):
        for layer in range(n_layers):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[v[layer] for v in table[f"{kind}_peakiness"]],
                    name=f"layer {layer} {'EoI' if kind == 'eoi' else 'iteration'}",
                    line={"color": colour, "dash": dash, "width": 1 + 1.5 * layer},
                )
            )
    formed = result.formed_at
    if formed is not None:
        at = formed["epoch"] if by_epoch else formed["step"]
        fig.add_vline(
            x=at, line_dash="dot", annotation_text=f"heads formed ({formed['checkpoint']})"
        )
    fig.update_layout(
        title="Iteration heads over training (best head per layer)",
        xaxis_title="epoch" if by_epoch else "step",
        yaxis={"range": [-0.02, 1.02]},
        height=450,
        width=900,
    )
    return fig
