"""The documentation site: it builds with ``mkdocs build --strict``, works offline, and its API
reference documents every public object of the package with its docstring example."""

from __future__ import annotations

import html
import importlib
import inspect
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlsplit

import pytest
import yaml

import iteration_heads

ROOT = Path(__file__).resolve().parents[1]
DOCTEST_FLAG = re.compile(r"\s*#\s*doctest:.*$")  # mkdocstrings trims these from examples
TAG = re.compile(r"<[^>]+>")
LINK = re.compile(r"""<[a-z]+\s[^>]*?\b(?:href|src)=["']([^"']*)["']""", re.IGNORECASE)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the site once, as ``make docs`` does; fail with mkdocs's own output."""
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file"]
    cmd += [str(ROOT / "mkdocs.yml"), "--site-dir", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


def modules() -> list[str]:
    """Every public module of the package (``iteration_heads.detection.probes``, ...)."""
    found = pkgutil.walk_packages(iteration_heads.__path__, prefix="iteration_heads.")
    return sorted(m.name for m in found if not any(p.startswith("_") for p in m.name.split(".")))


def page_of(module: str) -> str:
    """The API page that documents a module: its top-level subpackage's (or its own)."""
    return module.split(".")[1]


def public_objects(module: ModuleType) -> list[str]:
    """Public functions and classes defined in ``module`` (not imported into it)."""
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    ]


def example_lines(obj: object) -> list[str]:
    """The ``>>>`` lines of an object's docstring, as the rendered page shows them."""
    doc = inspect.getdoc(obj) or ""
    lines = [line.strip() for line in doc.splitlines() if line.strip().startswith(">>>")]
    return [" ".join(DOCTEST_FLAG.sub("", line).split()) for line in lines]


def page_text(page: str) -> str:
    """Visible text of an HTML fragment, whitespace-normalised (Pygments splits code in spans)."""
    return " ".join(html.unescape(TAG.sub("", page)).split())


def test_site_builds_strict(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "guide" / "detection.html").is_file()


def test_site_loads_nothing_remote(site: Path) -> None:
    remote = re.compile(r"<(?:script|img|iframe)[^>]*\ssrc=\"https?:|<link[^>]*\shref=\"https?:")
    for page in site.glob("**/*.html"):
        assert not remote.search(page.read_text()), f"{page} loads a remote resource"


@pytest.mark.parametrize("name", modules())
def test_api_reference_documents_module(site: Path, name: str) -> None:
    module = importlib.import_module(name)
    page_name = page_of(name)
    page_path = site / "api" / f"{page_name}.html"
    assert page_path.is_file(), f"no API page for {name}: add docs/api/{page_name}.md"
    home = (site / "index.html").read_text()
    assert f'href="api/{page_name}.html"' in home, (
        f"api/{page_name}.md is not in the nav of mkdocs.yml"
    )
    page = page_path.read_text()
    assert f'id="{name}"' in page, f"{name} is missing from docs/api/{page_name}.md"
    for obj_name in public_objects(module):
        check_documented(page, module.__name__, obj_name, getattr(module, obj_name))


def test_api_reference_has_one_page_per_subpackage(site: Path) -> None:
    pages = {page_of(name) for name in modules()}
    assert pages == {p.stem for p in (ROOT / "docs" / "api").glob("*.md")} - {"index"}
    assert {"tasks", "model", "training", "detection", "interventions", "viz"} <= pages


def test_api_reference_documents_all(site: Path) -> None:
    overview = (site / "api" / "index.html").read_text().split('role="main"', 1)[1]  # no sidebar
    for name in iteration_heads.__all__:
        obj = getattr(iteration_heads, name)
        if inspect.ismodule(obj):  # the namespaces viz, zoo, experiments
            assert f'href="{page_of(obj.__name__)}.html"' in overview, (
                f"{name} is not in the overview"
            )
            continue
        module = obj.__module__
        page = (site / "api" / f"{page_of(module)}.html").read_text()
        check_documented(page, module, obj.__qualname__, obj)
        link = f'href="{page_of(module)}.html#{module}.{obj.__qualname__}"'
        assert link in overview, f"iteration_heads.{name} is not listed in docs/api/index.md"


def check_documented(page: str, module: str, name: str, obj: object) -> None:
    """``module.name`` has a heading on ``page`` and its examples follow it, in order."""
    anchor = f'id="{module}.{name}"'
    assert anchor in page, f"{module}.{name} is missing from its API page"
    text = page_text(page.split(anchor, 1)[1])
    start = 0
    for line in example_lines(obj):
        found = text.find(line, start)
        assert found >= 0, f"{module}.{name}: example line {line!r} not rendered after its heading"
        start = found + len(line)


def local_target(page: Path, url: str) -> Path | None:
    """The file an internal link of ``page`` opens from disk, or None for external links."""
    parts = urlsplit(html.unescape(url))
    if parts.scheme or parts.netloc or not parts.path:  # https:, mailto:, data:, "#anchor"
        return None
    return (page.parent / unquote(parts.path)).resolve()


def test_site_links_open_from_disk(site: Path) -> None:
    """Opened as files (build/site/index.html), every internal href and src is a file, not a
    folder whose browser listing ("Index of ...") would show instead of a page."""
    broken = []
    for page in sorted(site.glob("**/*.html")):
        if page == site / "404.html":  # a server's answer to a missing URL: links from the root
            continue
        for url in LINK.findall(page.read_text()):
            target = local_target(page, url)
            if target is not None and not target.is_file():
                broken.append(f"{page.relative_to(site)}: {url}")
    assert not broken, f"{len(broken)} links do not open a file, e.g. {broken[:5]}"
    index = json.loads((site / "search" / "search_index.json").read_text())
    for doc in index["docs"]:  # search results link to these, relative to the site's root
        target = local_target(site / "index.html", doc["location"])
        assert target is not None and target.is_file(), f"search result {doc['location']!r}"


def test_result_figures_keep_their_names(site: Path) -> None:
    """docs/results/NAME.html (curves) and NAME.md (table) are both on the site."""
    for figure in (ROOT / "docs" / "results").glob("*.html"):
        assert (site / "results" / figure.name).read_bytes() == figure.read_bytes()
        assert (site / "results" / f"{figure.stem}.table.html").is_file()


def nav_pages(entries: list[object]) -> list[tuple[str, str]]:
    """(title, page) for every page of mkdocs.yml's nav, in order."""
    found: list[tuple[str, str]] = []
    for entry in entries:
        assert isinstance(entry, dict), f"nav entry {entry!r} has no title"
        for title, value in entry.items():
            found += nav_pages(value) if isinstance(value, list) else [(title, value)]
    return found


def config() -> dict[str, object]:
    """mkdocs.yml, with its ``!!python/name`` tags (none today) read as plain strings."""
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def test_nav_titles_are_page_titles() -> None:
    """The sidebar names each page as the page names itself (its first ``# `` heading)."""
    for title, page in nav_pages(config()["nav"]):  # type: ignore[arg-type]
        text = (ROOT / "docs" / page).read_text()
        heading = next(
            (line[2:].strip() for line in text.splitlines() if line.startswith("# ")), None
        )
        if heading is None:  # an API page: its heading is the module, written by mkdocstrings
            assert text.lstrip().startswith(":::"), f"{page} has no '# ' heading"
            continue
        assert title == heading, f"{page}: nav title {title!r} != page heading {heading!r}"


def test_home_page_links_every_guide_page_and_notebook() -> None:
    home = (ROOT / "docs" / "index.md").read_text()
    for page in sorted((ROOT / "docs" / "guide").glob("*.md")):
        assert f"](guide/{page.name})" in home, f"docs/index.md does not link guide/{page.name}"
    for notebook in sorted((ROOT / "examples").glob("*.ipynb")):
        assert f"examples/{notebook.name}" in home, f"docs/index.md omits {notebook.name}"
    makefile = (ROOT / "Makefile").read_text()
    for target in ["demo", "train-demo"]:  # what the home page says each make target does
        recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        said = next(line for line in home.splitlines() if line.startswith(f"make {target} "))
        trains = "iteration-heads train " in recipe
        assert trains == ("trains" in said), f"docs/index.md on make {target}: {said!r}"


def test_home_page_renders_no_raw_markdown(site: Path) -> None:
    """Markdown inside raw HTML blocks (the figure's caption) is not rendered: no ``**``, ``](``."""
    home = (site / "index.html").read_text()
    for caption in re.findall(r"<figcaption>(.*?)</figcaption>", home, re.DOTALL):
        text = page_text(caption)
        assert "](" not in text and "**" not in text and "`" not in text, text


RENDERER = "viz.notebook_figures()"
PLOTLY_JSON = "application/vnd.plotly.v1+json"


def first_code_cell(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


@pytest.mark.parametrize("notebook", sorted((ROOT / "examples").glob("*.ipynb")), ids=str)
def test_notebook_figures_have_a_static_form(notebook: Path) -> None:
    """Each notebook (and its paired script) stores figures as HTML too, from its first cell."""
    assert RENDERER in first_code_cell(notebook), f"{notebook.name}: no {RENDERER!r} first"
    assert RENDERER in notebook.with_suffix(".py").read_text(), f"{notebook.stem}.py is not synced"


def test_notebook_renderer_embeds_figures_offline(tmp_path: Path) -> None:
    """Executed in a kernel, the notebooks' first cell makes every figure carry a static HTML
    form next to plotly's JSON, with plotly.js embedded once (no CDN), and tqdm finds ipywidgets."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    setup = first_code_cell(ROOT / "examples" / "01_quickstart.ipynb")
    figure = "import plotly.graph_objects as go\ngo.Figure(go.Bar(y=[1, 2]))"
    progress = "from tqdm.auto import tqdm\nfor _ in tqdm(range(2)): pass"
    cells = [nbformat.v4.new_code_cell(code) for code in (setup, figure, figure, progress)]
    notebook = nbformat.v4.new_notebook(cells=cells)
    nbclient.NotebookClient(notebook, timeout=120, resources={"metadata": {"path": ROOT}}).execute()
    outputs = [o for cell in notebook.cells for o in cell.outputs]
    figures = [o["data"] for o in outputs if PLOTLY_JSON in o.get("data", {})]
    assert len(figures) == 2
    for data in figures:  # drawn by the embedded library, nothing fetched
        assert "Plotly.newPlot" in data["text/html"], sorted(data)
        assert "cdn" not in data["text/html"] and "src=" not in data["text/html"]
    pages = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert sum("plotly.js v" in page for page in pages) == 1  # the library, embedded once
    assert not any(re.search(r"<script[^>]*\s(?:src=|type=.module)", page[:2000]) for page in pages)
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "IProgress not found" not in stderr
