"""One self-contained HTML page about a trained model: ``iteration-heads report DIR -o FILE``.

The page holds the run's configuration, its training curves (when the directory has
``history.jsonl``), the attention of every head on one probe (plotly heatmaps with the ideal
patterns overlaid, and an interactive circuitsvis view), the detection table and verdict, and
intervention results (mean ablation of every head, the causal check of the detected circuit,
activation patching). plotly.js is inlined once and circuitsvis's bundle once: the file opens
offline and references no remote resource.
"""

from __future__ import annotations

import contextlib
import datetime
import html
import os
from pathlib import Path
from typing import Any

from iteration_heads._io import HISTORY_FILE, write_text
from iteration_heads.detection.detector import detect
from iteration_heads.detection.probes import Probes
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import as_batch
from iteration_heads.interventions.many_ablations import ablation_sets
from iteration_heads.interventions.scores import Effect
from iteration_heads.interventions.verification import verify
from iteration_heads.model.checkpoint import data_config, load, model_directory, model_metadata
from iteration_heads.model.transformer import model_config
from iteration_heads.tasks.data import DataConfig
from iteration_heads.tasks.task import check_int, get_task
from iteration_heads.viz.attention import attention_heatmap, attention_view
from iteration_heads.viz.circuits import ablation_chart, detection_heatmap, input_patching
from iteration_heads.viz.curves import training_curves
from iteration_heads.viz.page import HtmlPage, key_value_table


def report_html(
    directory: str | os.PathLike[str],
    *,
    n_probes: int = 256,
    task: str | None = None,
    length: int | None = None,
) -> str:
    """The HTML report of a model or run directory, as one self-contained string.

    Args:
        directory: A model directory (:func:`~iteration_heads.model.save`), a shipped model's
            name, or a run directory (``iteration-heads train --out``; its ``history.jsonl`` gives the curves).
        n_probes: Test sequences for detection and the interventions (spread over lengths).
        task: Probe this task instead of the one in the model's metadata (needed for a model
            that was built but not trained).
        length: Input length of the probe shown in the attention section (None: the longest).

    Cost: about 1 s on the 2-layer d 64 fixture and 4 s on the 3-layer × 2-head one, one CPU
    thread (detection, ablation of every head, the causal check and activation patching on
    ``n_probes`` sequences).

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> from iteration_heads.model.checkpoint import save
        >>> path = save(build_model(ModelConfig(d_model=32, max_len=4)), tempfile.mkdtemp())
        >>> page = report_html(path, task="polynomial", n_probes=32)
        >>> page.count("<h2>"), page.count("plotly.js v")  # sections; plotly.js inlined once
        (5, 1)
    """
    n_probes = check_int("n_probes", n_probes, minimum=1)
    if length is not None:
        length = check_int("length", length, minimum=1)
    if task is not None:
        get_task(task)  # an unknown task is named as such
    path = model_directory(directory)
    model = load(path)
    config = model_config(model)
    metadata = model_metadata(model)
    try:
        test_config = DataConfig.from_dict({**data_config(model, task=task).to_dict(), "cot": True})
    except IterationHeadsError:
        raise IterationHeadsError(
            f"{str(path)!r} holds no task in its metadata (built, not trained by this "
            "library?): pass task=... (--task)"
        ) from None
    task_name = test_config.task
    probes = Probes.from_model(model, task=task, n=n_probes)
    shown = sorted(set(probes.lengths.tolist()))
    if length is not None and length not in shown:
        contiguous = shown == list(range(shown[0], shown[-1] + 1))
        span = f"{shown[0]}..{shown[-1]}" if contiguous else str(shown)
        raise IterationHeadsError(
            f"length={length}, expected the length of a probe: {span} (n_probes={n_probes})"
        )
    title = f"iteration_heads report: {path.resolve().name}"
    page = HtmlPage(title)
    page.add(f"<h1>{html.escape(title)}</h1>")
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    page.add(
        f"<p>{html.escape(str(path))} — task <b>{html.escape(task_name)}</b>, "
        f"{config.n_layers} layers × {config.n_heads} head{'s' if config.n_heads > 1 else ''}, "
        f"d_model {config.d_model}, "
        f"Lmax {config.max_len}; generated {stamp}</p>"
    )

    def configuration() -> None:
        tables = [key_value_table(config.to_dict() | {"layout": config.layout.tasks}, "model")]
        for key in ("data", "train", "summary"):
            if isinstance(metadata.get(key), dict):
                values = metadata[key]
                if key == "summary":
                    values = {k: v for k, v in values.items() if k not in ("test", "train")}
                    values |= {f"test {k}": v for k, v in metadata[key].get("test", {}).items()}
                tables.append(key_value_table(values, key))
        if isinstance(metadata.get("versions"), dict):
            tables.append(key_value_table(metadata["versions"], "versions"))
        page.add('<div class="configs">' + "".join(tables) + "</div>")

    def curves() -> None:
        if not (path / HISTORY_FILE).is_file():
            page.add(
                f'<p class="note">no {HISTORY_FILE} in this directory (a model directory, '
                "not a run directory): no training curves</p>"
            )
            return
        page.figure(training_curves(path))

    def attention() -> None:
        want = config.max_len if length is None else length
        rows = (probes.lengths == want).nonzero().flatten()
        if len(rows) == 0:
            raise IterationHeadsError(f"no probe of length {want}")
        one = probes.select(rows[:1])
        page.add(
            "<p>Every head on one test probe. Open squares: the ideal EoI pattern (orange: "
            "queries s_1..s_L onto EoI) and the ideal iteration pattern (green: the query "
            "before s_t onto x_t, a diagonal offset by L+1).</p>"
        )
        page.figure(attention_heatmap(model, one, columns=2))  # 2 x 580 px: fits the page
        page.add(attention_view(model, one).fragment)

    report_box: dict[str, Any] = {}

    def detection() -> None:
        report = detect(model, probes)
        report_box["report"] = report
        page.add(report._repr_html_())
        page.figure(detection_heatmap(report))

    def interventions() -> None:
        heads = [(lay, h) for lay in range(config.n_layers) for h in range(config.n_heads)]
        batch = as_batch(model, probes)
        clean, ablated = ablation_sets(model, batch, [[head] for head in heads], kind="mean")
        effects = {
            f"L{lay}H{h}": Effect(f"mean ablation of L{lay}H{h}", clean, scores)
            for (lay, h), scores in zip(heads, ablated, strict=True)
        }
        page.add("<p>Mean ablation of each head (its output replaced by its mean):</p>")
        page.figure(ablation_chart(effects))
        report = report_box.get("report")
        if report is not None and report.circuit is not None and report.circuit.attention_found:
            check = verify(model, report, batch, kind="mean")
            page.add(f'<p class="verdict">causal check: {html.escape(check.verdict)}</p>')
            page.add(check.table.to_html(index=False, float_format=lambda v: f"{v:.3f}"))
        caption, figure = input_patching(model, probes, n=max(8, n_probes // 4))
        page.add(f"<p>{html.escape(caption)}</p>")
        page.figure(figure)

    page.section("Configuration", configuration)
    page.section("Training curves", curves)
    page.section("Attention", attention)
    page.section("Detection", detection)
    page.section("Interventions", interventions)
    return page.html()


def write_report(
    directory: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    n_probes: int = 256,
    task: str | None = None,
    length: int | None = None,
) -> Path:
    """Write :func:`report_html` of ``directory`` to ``path`` (one offline HTML file).

    Example:
        >>> import tempfile
        >>> from iteration_heads import ModelConfig, build_model
        >>> from iteration_heads.model.checkpoint import save
        >>> model_dir = save(build_model(ModelConfig(d_model=32, max_len=4)), tempfile.mkdtemp())
        >>> out = write_report(model_dir, model_dir / "report.html", task="copy", n_probes=32)
        >>> out.stat().st_size > 1_000_000  # plotly.js and circuitsvis inlined
        True
    """
    out = report_path(path)
    page = report_html(directory, n_probes=n_probes, task=task, length=length)
    created = [p for p in reversed(out.parents) if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text(out, page)
    except OSError as err:
        for folder in reversed(created):  # leave the disk as it was
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise IterationHeadsError(f"cannot write {str(out)!r}: {err.strerror or err}") from None
    return out


def report_path(path: str | os.PathLike[str]) -> Path:
    """The path of an HTML file to write, checked before any work and without creating
    anything: not a folder, and its nearest existing folder writable (missing folders are
    created when the file is written).

    Example:
        >>> report_path("/")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: output path '/' is a directory; expected a file name
        >>> report_path("/proc/self/report.html")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: cannot write '/proc/self/report.html': '/proc/self' is not writable
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise IterationHeadsError(f"output path {path!r}, expected a file name")
    out = Path(path)
    if out.is_dir():
        raise IterationHeadsError(f"output path {str(out)!r} is a directory; expected a file name")
    folder = out.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        what = "a broken symlink or symlink loop" if folder.is_symlink() else "a file"
        raise IterationHeadsError(
            f"cannot write {str(out)!r}: {str(folder)!r} is {what}, expected a folder"
        )
    read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY) if hasattr(os, "statvfs") else False
    if read_only or not os.access(folder, os.W_OK | os.X_OK):
        raise IterationHeadsError(f"cannot write {str(out)!r}: {str(folder)!r} is not writable")
    return out
