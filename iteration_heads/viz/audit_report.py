"""One self-contained HTML page about an audited model, any model: its configuration, the
three-layer verdict with the measurements behind it, the attention on a probe, and activation
patching (``iteration-heads audit PATH --report FILE``)."""

from __future__ import annotations

import datetime
import html
import os
from pathlib import Path

from iteration_heads._io import checked_output, write_output_text
from iteration_heads.auditing.auditor import Audit
from iteration_heads.auditing.sources import Subject
from iteration_heads.viz.attention import attention_heatmap, attention_view
from iteration_heads.viz.circuits import (
    ablation_chart,
    detection_heatmap,
    input_patching,
    route_chart,
)
from iteration_heads.viz.page import HtmlPage, key_value_table

PATCHED_PROBES = 64
"""Probes of the longest length used for the activation patching section."""


def audit_report_html(subject: Subject, result: Audit) -> str:
    """The HTML report of an audit, as one self-contained string (plotly.js and circuitsvis's
    bundle inlined once each; no remote resource).

    Example:
        >>> from iteration_heads.auditing import TaskWriting, audit, open_subject
        >>> writing = TaskWriting(template="<s> {inputs} {eoi} {states} </s>")
        >>> subject = open_subject("tests/fixtures/gpt2_text_polynomial", writing, n_probes=128)
        >>> page = audit_report_html(subject, audit(subject.model, subject.probes))
        >>> page.count("<h2>"), "not an EoI head" in page, page.count("plotly.js v")
        (6, True, 1)
    """
    model, probes = subject.model, subject.probes
    labels = None
    if subject.tokenizer is not None:
        labels = subject.tokenizer.convert_ids_to_tokens
    title = f"iteration_heads audit: {subject.path.resolve().name}"
    page = HtmlPage(title)
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    page.add(f"<h1>{html.escape(title)}</h1>")
    page.add(
        f"<p>{html.escape(str(subject.path))} — {subject.source} model, {model.cfg.n_layers} "
        f"layers × {model.cfg.n_heads} heads, d_model {model.cfg.d_model}; {len(probes)} probes "
        f"({html.escape(probes.source)}), lengths 1..{probes.max_len}; generated {stamp}</p>"
    )
    page.add(f'<p class="verdict">{html.escape(result.verdict)}</p>')
    if result.probe_accuracy is not None:
        solved = "solves" if result.solves_probes else "does NOT solve"
        page.add(
            f'<p class="probe-accuracy">The model {solved} its probes: token accuracy '
            f"{result.probe_accuracy:.2f} (whole chains {result.sequence_accuracy:.2f}), chance "
            f"{result.chance:.2f}.</p>"
        )

    def configuration() -> None:
        shown = {k: v for k, v in subject.config.items() if not isinstance(v, dict | list)}
        page.add('<div class="configs">' + key_value_table(shown, "model config") + "</div>")

    def attention() -> None:
        one = probes.select((probes.lengths == probes.max_len).nonzero().flatten()[:1])
        page.add(
            "<p>Every head on one probe. Open squares: the ideal EoI pattern (orange: each "
            "state onto the end-of-input marker) and the ideal iteration pattern (green: the "
            "query of s_t onto x_t).</p>"
        )
        page.figure(attention_heatmap(model, one, columns=3, labels=labels))
        page.add(attention_view(model, one, labels=labels).fragment)

    def found() -> None:
        page.add(result.report._repr_html_())
        page.figure(detection_heatmap(result.report))

    def used() -> None:
        if not result.solves_probes:
            page.add('<p class="note">the model does not solve its probes: nothing to ablate</p>')
            return
        if result.ablation is None:
            page.add('<p class="note">no iteration heads: nothing to ablate</p>')
            return
        page.add(f'<p class="verdict">{html.escape(result.ablation.verdict)}</p>')
        page.add(result.ablation.table.to_html(index=False, float_format=lambda v: f"{v:.3f}"))
        page.figure(ablation_chart(result.ablation))

    def route() -> None:
        if result.route is None:
            page.add('<p class="note">the position route was not measured</p>')
            return
        page.add(f'<p class="verdict">{html.escape(result.route.verdict)}</p>')
        page.figure(route_chart(result.route))

    def patching() -> None:
        caption, figure = input_patching(model, probes, n=PATCHED_PROBES, labels=labels)
        page.add(f"<p>{html.escape(caption)}</p>")
        page.figure(figure)

    page.section("Configuration", configuration)
    page.section("Attention", attention)
    page.section("1. Iteration heads", found)
    page.section("2. Used", used)
    page.section("3. Position route", route)
    page.section("Activation patching", patching)
    return page.html()


def write_audit_report(subject: Subject, result: Audit, path: str | os.PathLike[str]) -> Path:
    """Write :func:`audit_report_html` to ``path`` (one offline HTML file).

    Example:
        >>> import tempfile
        >>> from iteration_heads.auditing import audit, open_subject
        >>> subject = open_subject("copy", n_probes=64)
        >>> out = write_audit_report(subject, audit(subject.model, subject.probes),
        ...                          Path(tempfile.mkdtemp()) / "audit.html")
        >>> out.stat().st_size > 1_000_000
        True
    """
    out = checked_output(path)
    write_output_text(out, audit_report_html(subject, result))
    return out
