"""Figures, the HTML report and the ``report`` command: right content, offline, clear errors."""

from __future__ import annotations

import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

import iteration_heads.zoo
from iteration_heads import (
    ActivationPatching,
    DataConfig,
    IterationHeadsError,
    Probes,
    ablation_effect,
    detect,
    make_dataset,
    verify,
)
from iteration_heads.cli import main
from iteration_heads.model import load
from iteration_heads.viz import (
    AttentionView,
    ablation_chart,
    attention_heatmap,
    attention_view,
    detection_heatmap,
    export,
    patching_heatmap,
    report_html,
    save_html,
    save_png,
    scaling_grid,
    training_curves,
    write_report,
)
from iteration_heads.viz.page import PAGE_WIDTH, HtmlPage, fit_width

ZOO = Path(iteration_heads.zoo.__file__).parent
FIXTURES = Path(__file__).parent / "fixtures"
RESOURCE_ATTRIBUTES = ("src", "href", "srcset", "data", "poster", "action", "formaction")


class _Resources(HTMLParser):
    """Collects every URL a page would fetch: tag attributes and CSS ``url()`` / ``@import``."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if value and (name in RESOURCE_ATTRIBUTES or name == "style"):
                self.urls += _remote(value if name != "style" else _css_urls(value))

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls += _remote(_css_urls(data))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False


def _css_urls(css: str) -> str:
    found = re.findall(r"url\(\s*['\"]?([^'\")]+)", css) + re.findall(
        r"@import\s+['\"]([^'\"]+)", css
    )
    return " ".join(found)


def _remote(value: str) -> list[str]:
    return [
        part
        for part in value.replace(",", " ").split()
        if part.lower().startswith(("http:", "https:", "//", "ws:", "wss:", "ftp:"))
    ]


def remote_resources(page: str) -> list[str]:
    """URLs of remote resources a page loads (scripts' text is data here, not markup)."""
    parser = _Resources()
    parser.feed(page)
    return parser.urls


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.set_num_threads(1)
    return load(ZOO / "polynomial_paper")


@pytest.fixture(scope="module")
def report(model: torch.nn.Module):
    return detect(model, n_probes=256)


def history_records(epochs: list[int], n_layers: int = 2) -> list[dict]:
    """Synthetic history.jsonl records shaped like iteration_heads.training writes them."""
    records = []
    for epoch in epochs:
        acc = min(1.0, epoch / 100)
        records.append(
            {
                "epoch": epoch,
                "train_loss": None if epoch == 0 else 2.0 / (1 + epoch),
                "test": {
                    "lengths": [1, 2, 3],
                    "sequence_accuracy": [acc, acc / 2, acc / 4],
                    "summary": {
                        "accuracy": acc,
                        "eoi_peakiness": [acc * 0.6] + [0.0] * (n_layers - 1),
                        "iteration_peakiness": [0.1] * (n_layers - 1) + [acc],
                    },
                },
            }
        )
    return records


def write_run(directory: Path, d_model: int, max_len: int, accuracy: float) -> Path:
    directory.mkdir(parents=True)
    run = {"model": {"d_model": d_model}, "data": {"max_len": max_len}, "train": {}}
    (directory / "run.json").write_text(json.dumps(run))
    records = history_records([0, 10])
    records[-1]["test"]["summary"]["accuracy"] = accuracy
    (directory / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return directory


# ---------------------------------------------------------------- attention


def test_heatmap_shows_eoi_column_and_offset_diagonal(model: torch.nn.Module) -> None:
    fig = attention_heatmap(model, length=8)
    heat = {t.name: torch.tensor(t.z) for t in fig.data if isinstance(t, go.Heatmap)}
    marks = {
        t.name: list(zip(t.x, t.y, strict=True)) for t in fig.data if t.name and "ideal" in t.name
    }
    # length 8: EoI at 9, s_1..s_8 at 10..17; the query before s_t (EoI for t=1) reads x_t at t
    assert marks["ideal EoI"][:8] == [(9, q) for q in range(10, 18)]
    assert marks["ideal iteration"][:8] == [(t, t + 8) for t in range(1, 9)]
    eoi_column = heat["L0H0"][10:18, 9]
    diagonal = torch.stack([heat["L1H0"][t + 8, t] for t in range(1, 9)])
    assert eoi_column.mean() > 0.5, eoi_column
    assert diagonal.min() > 0.9, diagonal
    assert heat["L1H0"][10:18, 9].mean() < 0.1  # the iteration head does not look at EoI


def test_heatmap_of_one_head_on_given_tokens(model: torch.nn.Module) -> None:
    tokens = [15, 3, 2, 11, 3, 7, 12, 12, 12]  # <polynomial> 3 2 EoI 3 7 EoS + padding
    fig = attention_heatmap(model, tokens, heads=(1, 0))
    assert [t.name for t in fig.data] == ["L1H0", "ideal EoI", "ideal iteration"]
    assert len(fig.data[0].z) == 7  # padding dropped
    assert list(zip(fig.data[2].x, fig.data[2].y, strict=True)) == [(1, 3), (2, 4)]
    assert fig.layout.yaxis.ticktext[3] == "<EoI> (3)"
    probes = Probes(torch.tensor([tokens]), torch.tensor([2]))
    again = attention_heatmap(model, probes, heads=[(1, 0)], ideal=False)
    assert again.data[0].z == fig.data[0].z and len(again.data) == 1


def test_attention_view_is_offline(model: torch.nn.Module, tmp_path: Path, monkeypatch) -> None:
    import circuitsvis.utils.render as render

    def no_probe() -> bool:
        raise AssertionError("the view probed the internet")

    monkeypatch.setattr(render, "internet_on", no_probe)
    view = attention_view(model, heads=[(0, 0), (1, 0)], length=5)
    assert isinstance(view, AttentionView)
    fragment = view._repr_html_()
    assert "L0H0" in fragment and "<EoI>" in fragment
    assert "/>" not in fragment.split(">", 1)[0] + ">"  # container div is closed properly
    page = save_html(view, tmp_path / "view.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and fragment in page
    assert remote_resources(page) == []
    assert "unpkg.com" not in page and "cdn.jsdelivr" not in page


def test_saved_figures_reference_no_remote_resource(model, report, tmp_path: Path) -> None:
    for name, fig in {
        "attention": attention_heatmap(model),
        "detection": detection_heatmap(report),
        "curves": training_curves(history_records([0, 10, 20])),
    }.items():
        page = save_html(fig, tmp_path / f"{name}.html").read_text()
        assert "plotly.js v" in page, name  # the bundle is inlined
        assert remote_resources(page) == [], name
        assert 'src="https://cdn.plot.ly' not in page


def test_remote_resource_finder_finds_them() -> None:
    page = (
        '<script src="https://cdn.plot.ly/plotly.min.js"></script><link href="//x.org/a.css">'
        '<style>@import "http://y.org/b.css"; p { background: url(https://z.org/c.png) }</style>'
        '<img srcset="a.png 1x, https://w.org/d.png 2x"><script>var u = "https://ok.org";</script>'
    )
    assert remote_resources(page) == [
        "https://cdn.plot.ly/plotly.min.js",
        "//x.org/a.css",
        "https://z.org/c.png",
        "http://y.org/b.css",
        "https://w.org/d.png",
    ]


# ---------------------------------------------------------------- detection and interventions


def test_detection_heatmap_outlines_the_circuit(report) -> None:
    fig = detection_heatmap(report)
    eoi, iteration = ([[float(v) for v in row] for row in t.z] for t in fig.data)
    assert eoi == [
        [pytest.approx(report.heads["eoi_peakiness"][0])],
        [pytest.approx(report.heads["eoi_peakiness"][1])],
    ]
    assert iteration[1] == [pytest.approx(report.heads["iteration_peakiness"][1])]
    boxes = [(s.xref, s.y0, s.y1) for s in fig.layout.shapes]
    assert boxes == [("x", -0.5, 0.5), ("x2", 0.5, 1.5)]  # EoI L0H0, iteration L1H0
    assert "iteration circuit" in fig.layout.title.text


def test_patching_heatmap_rows_are_heads() -> None:
    values = torch.arange(2 * 3 * 2, dtype=torch.float).reshape(2, 3, 2)  # layer pos head
    result = ActivationPatching(
        values, values / 10, values[..., None], values[..., None], torch.ones(1),
        torch.zeros(1), "logit_diff", "denoise", "batched", 1,
    )  # fmt: skip
    fig = patching_heatmap(result, labels=["a", "b", "c"])
    assert fig.data[0].y == ("L0H0", "L0H1", "L1H0", "L1H1")
    assert fig.data[0].x == ("a (0)", "b (1)", "c (2)")
    assert list(fig.data[0].z[1]) == [1.0, 3.0, 5.0]  # L0H1 at positions 0..2
    with pytest.raises(IterationHeadsError, match="2 labels for 3 positions"):
        patching_heatmap(result, labels=["a", "b"])


def test_ablation_chart_of_effects_and_verification(model, report) -> None:
    split = make_dataset(DataConfig(max_len=8, n_train=8, n_test=16)).test
    effects = {
        f"L{layer}H0": ablation_effect(model, [(layer, 0)], split, kind="mean") for layer in (0, 1)
    }
    fig = ablation_chart(effects)
    assert fig.data[0].x == ("L0H0", "L1H0")
    assert max(fig.data[0].y) < 0.5  # either head ablated breaks the task
    assert fig.layout.shapes[0].y0 == pytest.approx(1.0)  # clean accuracy line
    check = verify(model, report, split)
    bars = ablation_chart(check).data[0]
    assert bars.x[0] == "circuit: L0H0+L1H0" and len(bars.x) == len(check.table)
    one = ablation_chart(effects["L1H0"], metric="loss")
    assert one.data[0].y[0] > one.layout.shapes[0].y0


# ---------------------------------------------------------------- runs


def test_training_curves_from_a_run_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    records = history_records([0, 10, 20])
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    fig = training_curves(run)
    names = [t.name for t in fig.data]
    assert names == [
        "L=1", "L=2", "L=3", "layer 0 EoI", "layer 0 iteration", "layer 1 EoI",
        "layer 1 iteration", "train loss",
    ]  # fmt: skip
    assert fig.data[0].y == (0.0, 0.1, 0.2) and fig.data[6].y == (0.0, 0.1, 0.2)
    assert fig.data[-1].x == (10, 20)  # no loss before training
    assert training_curves(str(run)).data[3].y == fig.data[3].y


def test_scaling_grid_averages_seeds(tmp_path: Path) -> None:
    write_run(tmp_path / "a", 32, 4, 1.0)
    write_run(tmp_path / "b", 32, 4, 0.5)  # second seed of the same cell
    write_run(tmp_path / "c", 64, 8, 0.25)
    fig = scaling_grid(tmp_path)
    accuracy = fig.data[0]
    assert accuracy.x == ("32", "64") and accuracy.y == ("4", "8")
    assert [list(row) for row in accuracy.z] == [[0.75, None], [None, 0.25]]
    assert [list(row) for row in accuracy.customdata] == [[2, 0], [0, 1]]
    assert [list(r) for r in scaling_grid([tmp_path / "c"]).data[0].z] == [[0.25]]


def test_scaling_grid_reads_model_directories() -> None:
    fig = scaling_grid([ZOO / "polynomial_paper", ZOO / "copy"])
    assert fig.data[0].z[0][0] == pytest.approx(1.0, abs=0.01)
    assert fig.data[2].z[0][0] > 0.9  # iteration peakiness


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, r: detection_heatmap(r.heads), "DetectionReport.*got DataFrame"),
        (lambda m, r: detection_heatmap(r, metric="best"), "metric 'best'"),
        (lambda m, r: patching_heatmap({"values": 1}), "ActivationPatching.*got dict"),
        (lambda m, r: ablation_chart([1, 2]), "Effects.*holding int"),
        (lambda m, r: ablation_chart(pd.DataFrame()), "got DataFrame"),
        (lambda m, r: training_curves(3), "run directory.*got int"),
        (lambda m, r: training_curves("/no/such/run"), "'/no/such/run' is not a run directory"),
        (lambda m, r: scaling_grid(7), "got int"),
        (lambda m, r: scaling_grid("/no/such/dir"), "does not exist"),
        (lambda m, r: save_html("text", "x.html"), "Figure or an AttentionView, got str"),
        (lambda m, r: save_png(r, "x.png"), "plotly Figure, got DetectionReport"),
        (
            lambda m, r: attention_heatmap(m, heads=(5, 0)),
            r"head \(layer=5, head=0\) does not exist",
        ),
        (lambda m, r: attention_heatmap(m, heads=[(0,)]), r"head \(0,\): expected"),
        (lambda m, r: attention_heatmap(m, torch.zeros(2, 5).long()), "1-D sequence"),
        (lambda m, r: attention_heatmap(m, [15, 3, 2, 3]), "no EoI token"),
        (lambda m, r: attention_heatmap(m, "15 3 11"), "Probes object.*got str"),
        (lambda m, r: attention_heatmap(m, length=12), "length=12"),
        (lambda m, r: attention_heatmap(r.heads), "TransformerLens model.*DataFrame"),
        (lambda m, r: attention_view(m, index=9, probe=[15, 3, 11, 3, 12]), "index=9"),
    ],
)
def test_bad_inputs_raise_clear_errors(model, report, call, message) -> None:
    with pytest.raises(IterationHeadsError, match=message):
        call(model, report)


def test_png_export_says_what_to_install(monkeypatch) -> None:
    fig = go.Figure(go.Bar(y=[1]))
    monkeypatch.setitem(sys.modules, "kaleido", None)  # import fails
    with pytest.raises(IterationHeadsError, match=r"pip install 'kaleido>=1'"):
        save_png(fig, "x.png")
    monkeypatch.setitem(sys.modules, "kaleido", type(sys)("kaleido"))
    monkeypatch.setattr(export, "find_chromium", lambda: None)
    with pytest.raises(IterationHeadsError, match="apt-get install chromium"):
        save_png(fig, "x.png")


# ---------------------------------------------------------------- report


def test_report_of_a_model_directory(tmp_path: Path) -> None:
    model_only = tmp_path / "model"
    shutil.copytree(ZOO / "polynomial_paper", model_only)
    (model_only / "history.jsonl").unlink()
    page = report_html(model_only, n_probes=128)
    assert page.count("plotly.js v") == 1  # inlined once, shared by every figure
    assert page.count("Plotly.newPlot") == 4  # attention, detection, ablation, patching
    assert page.count('id="circuits-vis-') == 1
    assert remote_resources(page) == []
    assert "no history.jsonl" in page
    assert "iteration circuit: EoI head L0H0" in page
    assert "causal check: confirmed" in page
    assert 'class="note">skipped' not in page


def test_report_of_a_run_directory_has_curves(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(ZOO / "polynomial_paper", run)
    records = history_records([0, 10, 20])
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    page = report_html(run, n_probes=64)
    assert "Training dynamics" in page and "no history.jsonl" not in page
    assert page.count("Plotly.newPlot") == 5


def test_report_of_a_shipped_model_shows_its_training_curves() -> None:
    page = report_html(ZOO / "polynomial_paper", n_probes=64)
    assert "Training dynamics" in page and page.count("Plotly.newPlot") == 5


def test_report_command(tmp_path: Path, capsys) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(ZOO / "copy"), "-o", str(out), "--n-probes", "64"]) == 0
    assert "wrote" in capsys.readouterr().out
    text = out.read_text()
    assert "copy" in text and remote_resources(text) == []
    assert main(["report", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_write_report_of_a_no_cot_model(tmp_path: Path) -> None:
    out = write_report(ZOO / "polynomial_nocot", tmp_path / "r.html", n_probes=64)
    assert "Detection" in out.read_text()


def test_page_scales_wide_figures_to_its_width() -> None:
    """A 1,740 px figure (3 columns of 580) is drawn at the page's 1,200 px, aspect kept; the
    figure passed in is left as it was, and a figure that fits is not touched."""
    wide = go.Figure(go.Bar(y=[1]), layout={"width": 1740, "height": 1000})
    page = HtmlPage("t")
    page.figure(wide)
    assert '"width":1200' in page.html() and '"height":690' in page.html()
    assert wide.layout.width == 1740
    narrow = go.Figure(layout={"width": 600, "height": 300})
    assert fit_width(narrow) is narrow and fit_width(go.Figure()).layout.width is None
    assert PAGE_WIDTH == 1200
