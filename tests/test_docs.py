"""The documentation site: it builds with ``mkdocs build --strict``, works offline, and its API
reference documents every public object of the package with its docstring example."""

from __future__ import annotations

import html
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import iteration_heads

ROOT = Path(__file__).resolve().parents[1]
DOCTEST_FLAG = re.compile(r"\s*#\s*doctest:.*$")  # mkdocstrings trims these from examples
TAG = re.compile(r"<[^>]+>")


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
    assert (site / "guide" / "detection" / "index.html").is_file()


def test_site_loads_nothing_remote(site: Path) -> None:
    remote = re.compile(r"<(?:script|img|iframe)[^>]*\ssrc=\"https?:|<link[^>]*\shref=\"https?:")
    for page in [*site.glob("**/index.html"), site / "404.html"]:
        assert not remote.search(page.read_text()), f"{page} loads a remote resource"


@pytest.mark.parametrize("name", modules())
def test_api_reference_documents_module(site: Path, name: str) -> None:
    module = importlib.import_module(name)
    page_name = page_of(name)
    page_path = site / "api" / page_name / "index.html"
    assert page_path.is_file(), f"no API page for {name}: add docs/api/{page_name}.md"
    home = (site / "index.html").read_text()
    assert f'href="api/{page_name}/"' in home, f"api/{page_name}.md is not in the nav of mkdocs.yml"
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
            assert f'href="{page_of(obj.__name__)}/"' in overview, f"{name} is not in the overview"
            continue
        module = obj.__module__
        page = (site / "api" / page_of(module) / "index.html").read_text()
        check_documented(page, module, obj.__qualname__, obj)
        link = f'href="{page_of(module)}/#{module}.{obj.__qualname__}"'
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
