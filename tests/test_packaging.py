"""The package's descriptions: PyPI's (PYPI.md) works off the repository, where relative links and
images would not resolve; its code, the README's and the docs home's run as shown, and their
commands parse."""

from __future__ import annotations

import contextlib
import functools
import io
import re
import sys
from pathlib import Path

import pytest
from helpers import shell_commands

from iteration_heads.cli import build_parser

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PYPI = ROOT / PROJECT["readme"]["file"]
DESCRIPTIONS = [ROOT / "README.md", PYPI]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_pypi_description_is_markdown_and_shipped() -> None:
    assert PROJECT["readme"]["content-type"] == "text/markdown"
    assert f"include {PYPI.name}" in (ROOT / "MANIFEST.in").read_text().splitlines()


def test_pypi_description_links_and_images_resolve_off_the_repository() -> None:
    text = PYPI.read_text()
    targets = re.findall(r"\]\(([^)\s]+)", text) + re.findall(r"(?:src|href)=\"([^\"]+)", text)
    assert targets, "no link at all"
    relative = [t for t in targets if not t.startswith("https://")]
    assert relative == [], f"{PYPI.name}: links that only resolve in the repository: {relative}"
    assert "<img" not in text, "an HTML image: write it as ![...](https://...)"


@pytest.mark.parametrize("path", DESCRIPTIONS, ids=lambda p: p.name)
def test_every_command_shown_parses(path: Path) -> None:
    commands = shell_commands(path)
    assert commands, f"{path.name} shows no iteration-heads command"
    for argv in commands:
        build_parser().parse_args(argv)  # an unknown command or option raises


@functools.lru_cache
def printed(statements: str) -> list[str]:
    """What ``statements`` print, run once (the descriptions show the same code)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(statements, {})
    return out.getvalue().splitlines()


@pytest.mark.parametrize("path", [*DESCRIPTIONS, ROOT / "docs" / "index.md"], ids=lambda p: p.name)
def test_python_shown_prints_what_its_comments_say(path: Path) -> None:
    (code,) = blocks(path.read_text(), "python")
    statements = "\n".join(line.split("  # ", 1)[0] for line in code.splitlines())
    shown = [line.split("# ", 1)[1] for line in code.splitlines() if line.startswith("print(")]
    for got, comment in zip(printed(statements), shown, strict=True):
        pattern = ".*".join(re.escape(part.strip()) for part in comment.split("..."))
        assert re.match(pattern, got), (got, comment)  # "..." stands for anything
