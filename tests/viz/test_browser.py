"""A real browser opens the report and the attention views: plots drawn, no script error, and no
network request from the page (headless Debian ``chromium``, network blocked by its resolver).

``make test`` installs Debian's ``chromium`` first; without a Chromium these tests are skipped.
"""

from __future__ import annotations

import json
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import iteration_heads.zoo
from iteration_heads.auditing import audit, open_subject
from iteration_heads.model import load
from iteration_heads.viz import (
    EOI_COLOUR,
    ITERATION_COLOUR,
    attention_heatmap,
    attention_view,
    audit_report_html,
    find_chromium,
    save_html,
    write_report,
)

ZOO = Path(iteration_heads.zoo.__file__).parent
FIXTURES = Path(__file__).parent / "fixtures"
CHROMIUM = find_chromium()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium on PATH: apt-get install chromium (make test installs it)",
)


def read_png(path: Path) -> np.ndarray:
    """RGB pixels ``[height, width, 3]`` of the PNG at ``path`` (Pillow decodes it)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def browse(
    page: Path, tmp: Path, *, height: int = 900, width: int = 1200, measure: bool = False
) -> dict:
    """Open ``page`` in headless Chromium once: its screenshot, DOM, stderr and requests, and
    with ``measure`` (the page loaded from a copy with :data:`MEASURE` appended) what of it
    does not fit the window (see :func:`overflow`)."""
    if measure:
        copy = tmp / f"measured-{page.name}"
        copy.write_text(page.read_text().replace("</body>", MEASURE + "</body>", 1))
        page = copy
    png, netlog = tmp / f"{page.stem}.png", tmp / f"{page.stem}.netlog.json"
    shot = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp / ('profile-' + page.stem)}",
            "--enable-logging=stderr",
            "--v=0",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: remote loads would fail
            f"--window-size={width},{height}",
            "--virtual-time-budget=5000",
            f"--screenshot={png}",
            f"--log-net-log={netlog}",
            "--dump-dom",  # the DOM once the virtual time is spent, in the same launch
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = json.loads(netlog.read_text()).get("events", []) if netlog.is_file() else []
    requests = sorted(
        {
            e["params"]["url"]
            for e in events
            if e.get("params", {}).get("url", "").startswith(("http:", "https:", "ws:", "wss:"))
            # requests of the page (file:// site), not the browser's own background calls
            and "file://" in str(e["params"].get("site_for_cookies", ""))
        }
    )
    result = {
        "rc": shot.returncode,
        "stderr": shot.stderr,
        "png": png,
        "dom": shot.stdout,
        "requests": requests,
        "width": width,
    }
    if measure:
        found = shot.stdout.split('<pre id="measured">', 1)[1].split("</pre>", 1)[0]
        decoded = found.replace("&quot;", '"').replace("&gt;", ">").replace("&lt;", "<")
        result["measured"] = json.loads(decoded.replace("&amp;", "&"))
    return result


def check_page(result: dict, height: int) -> np.ndarray:
    """Common checks; returns the screenshot's pixels ``[height, width, 3]``."""
    assert result["rc"] == 0, result["stderr"][-2000:]
    errors = [line for line in result["stderr"].splitlines() if "Uncaught" in line]
    assert not errors, errors
    assert result["requests"] == [], f"the page requested remote resources: {result['requests']}"
    pixels = read_png(result["png"])
    assert pixels.shape == (height, result["width"], 3)
    non_white = float((pixels.min(-1) < 235).mean())
    assert non_white > 0.03, f"screenshot nearly blank: {non_white:.3%} non-white pixels"
    packed = pixels.astype(np.uint32) << np.array([16, 8, 0], dtype=np.uint32)
    colours = int(np.count_nonzero(np.bincount(packed.sum(-1).ravel(), minlength=1 << 24)))
    assert colours > 50, f"screenshot has only {colours} colours"
    return pixels


def near(pixels: np.ndarray, colour: str, tolerance: int = 40) -> int:
    """How many pixels are within ``tolerance`` (per channel) of the hex ``colour``."""
    target = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels.astype(int) - target) <= tolerance).all(-1).sum())


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("pages")
    model = load(ZOO / "polynomial_paper")
    return {
        "report": write_report(ZOO / "polynomial_paper", tmp / "report.html", n_probes=128),
        "view": attention_view(model).save(tmp / "view.html"),
        "heatmap": save_html(attention_heatmap(model), tmp / "heatmap.html"),
    }


def test_attention_heatmap_draws_in_chromium(pages: dict[str, Path], tmp_path: Path) -> None:
    result = browse(pages["heatmap"], tmp_path)
    pixels = check_page(result, 900)
    assert result["dom"].count('class="main-svg"') >= 1
    # heatmap cells near full weight (dark blue) and both overlays are on screen
    assert near(pixels, "#08306b", 30) > 500
    assert near(pixels, EOI_COLOUR) > 100
    assert near(pixels, ITERATION_COLOUR) > 100


def test_circuitsvis_view_draws_in_chromium(pages: dict[str, Path], tmp_path: Path) -> None:
    result = browse(pages["view"], tmp_path)
    pixels = check_page(result, 900)
    assert "Head Selector" in result["dom"]  # React rendered the component
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    strong_blue = int(((b > 200) & (r < 90) & (g < 90)).sum())
    assert strong_blue > 1000, strong_blue


def test_report_draws_in_chromium(pages: dict[str, Path], tmp_path: Path) -> None:
    result = browse(pages["report"], tmp_path, height=3000, width=1300, measure=True)
    pixels = check_page(result, 3000)
    fits(result["measured"], "polynomial_paper")  # the 2 x 1 model's report fits the window
    dom = result["dom"]
    # training curves (the shipped model keeps its history), attention, detection, ablation and
    # patching figures; circuitsvis rendered; every section
    assert dom.count('class="plot-container plotly"') == 5
    assert "Head Selector" in dom
    for title in ("Configuration", "Training curves", "Attention", "Detection", "Interventions"):
        assert f"<h2>{title}</h2>" in dom
    assert near(pixels, "#08306b", 30) > 200
    assert near(pixels, EOI_COLOUR) > 50 and near(pixels, ITERATION_COLOUR) > 50


def test_read_png_roundtrip(tmp_path: Path) -> None:
    width, height = 3, 2
    pixels = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9), (200, 100, 50), (1, 2, 3)]
    raw = b"".join(
        b"\x00" + bytes(v for p in pixels[y * width : (y + 1) * width] for v in p)
        for y in range(height)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    png = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    )
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    (tmp_path / "t.png").write_bytes(png)
    assert read_png(tmp_path / "t.png").reshape(-1, 3).tolist() == [list(p) for p in pixels]


# Appended to a copy of a page: after plotly and circuitsvis have drawn, every element that ends
# right of the window or scrolls sideways, and the page's own scroll width.
MEASURE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const out = {page: document.documentElement.scrollWidth, wide: []};
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    const scrolls = el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== "visible";
    if (box.width > 0 && (box.right > window.innerWidth + 1 || scrolls))
      out.wide.push(`${el.tagName}.${el.getAttribute("class")}: right ${Math.round(box.right)}`);
  }
  const pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 1000));
</script>"""


def overflow(page: Path, tmp: Path, width: int = 1300) -> dict:
    """What of ``page`` does not fit a ``width`` px window: the page's scroll width (a vertical
    scroll bar included) and the elements wider than the window."""
    return browse(page, tmp, width=width, measure=True)["measured"]


def fits(measured: dict, name: str) -> None:
    """Assert that nothing of the page ``name``, as :data:`MEASURE` measured it, is wider than
    1,300 px."""
    assert measured["wide"] == [], f"{name}: wider than 1,300 px: {measured['wide'][:5]}"
    assert measured["page"] <= 1300, f"{name}: the page scrolls to {measured['page']} px"


def test_reports_fit_a_1300px_window(tmp_path: Path) -> None:
    """The report of a 2 x 2 model (the attention grid of 4 heads) and an audit report: every
    view fits a 1,300 px window, nothing scrolls sideways (the paper's 2 x 1 model's report:
    :func:`test_report_draws_in_chromium`)."""
    subject = open_subject(ZOO / "polynomial", n_probes=64)
    reports = {
        "polynomial": write_report(ZOO / "polynomial", tmp_path / "polynomial.html", n_probes=64),
        "audit": tmp_path / "audit.html",
    }
    reports["audit"].write_text(audit_report_html(subject, audit(subject.model, subject.probes)))
    for name, page in reports.items():
        fits(overflow(page, tmp_path), name)


def test_pathways_report_draws_and_fits_a_1300px_window(tmp_path: Path) -> None:
    """``iteration-heads pathways ontology --ontology --report``: every figure drawn, no script
    error, no remote request, nothing wider than a 1,300 px window."""
    from iteration_heads.cli import main

    page = tmp_path / "pathways.html"
    argv = ["pathways", "ontology", "--ontology", "--n", "2", "--prior", "context-free"]
    assert main([*argv, "--n-random", "1", "--n-traced", "2", "--report", str(page)]) == 0
    result = browse(page, tmp_path, height=3000, width=1300, measure=True)
    check_page(result, 3000)
    assert result["dom"].count('class="plot-container plotly"') == 6
    fits(result["measured"], page.name)


def test_pathways_report_of_the_llama_fixture_draws_every_analysis(tmp_path: Path) -> None:
    """The Llama trained elsewhere on natural-language PrOntoQA (tests/fixtures/llama_prontoqa),
    its own held-out problems as JSON Lines: every analysis's figure drawn, the page fits."""
    import json

    from transformers import AutoTokenizer

    from iteration_heads.cli import main
    from iteration_heads.pathways import prontoqa_records
    from iteration_heads.tasks import ProntoQAConfig, make_prontoqa

    folder = Path(__file__).parents[1] / "fixtures" / "llama_prontoqa"
    spec = json.loads((folder / "ground_truth.json").read_text())["problems"]
    config = ProntoQAConfig(
        **{k: tuple(v) if k == "hops" else v for k, v in spec["config"].items()}
    )
    drawn = make_prontoqa(config, spec["drawn"], seed=spec["seed"])
    held_out = [drawn[i] for i in spec["indices"][:2]]
    records = prontoqa_records(held_out, AutoTokenizer.from_pretrained(folder))
    prompts = tmp_path / "held_out.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in records))
    page = tmp_path / "pathways.html"
    argv = ["pathways", str(folder), "--prompts", str(prompts), "--prior", "context-free"]
    argv += ["--n-random", "1", "--n-traced", "2", "--report", str(page), "--threads", "1"]
    assert main(argv) == 0
    result = browse(page, tmp_path, height=3000, width=1300, measure=True)
    check_page(result, 3000)
    assert result["dom"].count('class="plot-container plotly"') == 6
    fits(result["measured"], page.name)
