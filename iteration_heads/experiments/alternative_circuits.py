"""Alternative circuits, shown: for trained runs, where every head looks at each step of the
chain of thought (:func:`~iteration_heads.detection.per_step.step_attention`) and the attention
maps on one probe of the longest length, as one markdown page and one HTML page.

A run that solves the task (test accuracy >= 0.99) with a layer-2 iteration peakiness below
0.9 uses an alternative circuit: at some steps the last layer's head reads EoI or the first
token instead of ``x_t``. The page names those steps and the head, if any, that reads ``x_t``
there instead (a division of labour between layers).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from iteration_heads._io import HISTORY_FILE, write_text
from iteration_heads._torch import Head
from iteration_heads.detection.per_step import ON_TARGET, StepAttention, steps_by_head
from iteration_heads.detection.probes import Probes
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.checkpoint import load
from iteration_heads.model.transformer import model_config
from iteration_heads.training.run_dir import read_history
from iteration_heads.viz.attention import attention_heatmap
from iteration_heads.viz.page import HtmlPage


@dataclass(frozen=True)
class RunCircuit:
    """Where every head of one trained run looks, step by step.

    Attributes:
        name: The run directory's name.
        summary: Its last evaluation (``accuracy``, ``iteration_peakiness`` per layer, ...).
        heads: Every head's :class:`~iteration_heads.detection.per_step.StepAttention`.
        covered: For each step where the iteration head (the last layer's head that reads
            ``x_t`` most) reads elsewhere, ``(L, t, head)`` with another head that puts >= 0.5
            on ``x_t`` there, or None.
    """

    name: str
    summary: dict[str, Any]
    heads: dict[Head, StepAttention]
    covered: list[tuple[int, int, Head | None]]

    def markdown(self) -> str:
        """The run's section of the markdown page."""
        peak = self.summary.get("iteration_peakiness", [])
        lines = [
            f"### {self.name}",
            "",
            f"Test accuracy {self.summary.get('accuracy', float('nan')):.3f}, iteration "
            f"peakiness per layer {', '.join(f'{p:.2f}' for p in peak)}.",
            "",
        ]
        if self.covered:
            taken = [f"L={n} t={t}: {'nobody' if h is None else f'L{h[0]}H{h[1]}'}"
                     for n, t, h in self.covered]  # fmt: skip
            lines += [
                f"Steps the iteration head leaves, and who reads `x_t` there: {'; '.join(taken)}.",
                "",
            ]
        lines += ["```", *(found.format() for found in self.heads.values()), "```", ""]
        return "\n".join(lines)


def run_circuit(run: str | os.PathLike[str], *, n_probes: int = 1024) -> RunCircuit:
    """Step-by-step attention of every head of the trained run (or model directory) ``run``.

    Example:
        >>> from pathlib import Path
        >>> import iteration_heads.zoo
        >>> found = run_circuit(Path(iteration_heads.zoo.__file__).parent / "polynomial_paper", n_probes=64)
        >>> found.covered, sorted(found.heads)
        ([], [(0, 0), (1, 0)])
    """
    return _circuit(Path(run), load(run), n_probes)


def _circuit(folder: Path, model: Any, n_probes: int) -> RunCircuit:
    """:func:`run_circuit` of a model already loaded from ``folder``."""
    heads = steps_by_head(model, Probes.from_model(model, n=n_probes))
    last = max(layer for layer, _ in heads)
    # the iteration head: the last layer's head that reads x_t most, over every step
    best = max((h for h in heads if h[0] == last), key=lambda h: heads[h].table.on_input.mean())
    on_input = {head: found.table.set_index(["length", "step"]).on_input
                for head, found in heads.items()}  # fmt: skip
    covered = []
    for length, step, _key, _weight in heads[best].off_target():
        readers = [h for h in heads if h != best and on_input[h][(length, step)] >= ON_TARGET]
        covered.append((length, step, readers[0] if readers else None))
    history = read_history(folder) if (folder / HISTORY_FILE).is_file() else []
    summary = history[-1]["test"]["summary"] if history else {}
    return RunCircuit(folder.name, summary, heads, covered)


def write_alternative_circuits(
    runs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    name: str = "alternative-circuits",
    command: str = "",
    labels: Sequence[str] | None = None,
    n_probes: int = 1024,
) -> list[Path]:
    """Write ``out/<name>.md`` (every run's step table) and ``out/<name>.html`` (the same with
    each run's attention maps on one probe of its longest length); returns both paths. Pages
    next to a shared ``plotly.min.js`` (as in ``docs/results/``) reference it. ``labels`` name
    the runs' sections (default: the run directories' names).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import iteration_heads.zoo
        >>> paths = write_alternative_circuits(
        ...     [Path(iteration_heads.zoo.__file__).parent / "polynomial"], tempfile.mkdtemp(),
        ...     n_probes=64)
        >>> [p.suffix for p in paths], "L1H0: weight on x_t" in paths[0].read_text()
        (['.md', '.html'], True)
    """
    if isinstance(runs, (str, os.PathLike)) or not runs:
        raise IterationHeadsError(f"runs={runs!r}: expected a non-empty list of run directories")
    folder = Path(out)
    if not folder.is_dir():
        raise IterationHeadsError(f"out={str(out)!r} is not a directory")
    if labels is not None and len(labels) != len(runs):
        raise IterationHeadsError(f"{len(labels)} labels for {len(runs)} runs; expected one each")
    models = [load(run) for run in runs]
    found = [_circuit(Path(run), model, n_probes)
             for run, model in zip(runs, models, strict=True)]  # fmt: skip
    if labels is not None:
        found = [
            replace(circuit, name=str(label)) for circuit, label in zip(found, labels, strict=True)
        ]
    title = "Alternative circuits: where each head looks, step by step"
    intro = (
        f"For each step t of the chain of thought (per input length L), the mean attention weight "
        f"of each head from the query before s_t onto x_t; where it is below {ON_TARGET}, the key "
        "it weights most instead (x_j, s_j, EoI, or the first token)."
    )
    parts = [f"# {title}", "", f"Command: `{command}`" if command else "", "", intro, ""]
    parts += [circuit.markdown() for circuit in found]
    shared = (folder / "plotly.min.js").is_file()
    page = HtmlPage(title, plotly="directory" if shared else "inline")
    page.add(f"<h1>{html.escape(title)}</h1><p>{html.escape(command)}</p>")
    page.add(f"<p>{html.escape(intro)}</p>")
    for circuit, model in zip(found, models, strict=True):

        def build(circuit: RunCircuit = circuit, model: Any = model) -> None:
            page.add(f"<pre>{html.escape(circuit.markdown())}</pre>")
            page.figure(attention_heatmap(model, columns=max(2, model_config(model).n_heads)))

        page.section(circuit.name, build)
    paths = [folder / f"{name}.md", folder / f"{name}.html"]
    write_text(paths[0], "\n".join(parts))
    write_text(paths[1], page.html())
    return paths
