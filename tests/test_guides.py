"""The guides' code runs as shown: every ``python`` block of a docs page runs, in order, in one
namespace per page, and an expression whose comment shows a value (``x  # (19, 16)``) or a
``print`` followed by comment lines shows what it gives ("..." stands for anything, whitespace is
free). A block that cannot run here says why just above its fence, visibly to the reader of the
Markdown source: ``<!-- not run by the tests: REASON -->``; a block of minutes is marked
``<!-- slow -->`` and runs under ``-m slow`` (``make slow``). Every command shown in a fenced
shell block of the docs parses."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import re
import shlex
import tokenize
from pathlib import Path

import pytest
import torch
from helpers import shell_commands

import iteration_heads.tasks.task as task_module
from iteration_heads.cli import build_parser
from iteration_heads.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(  # the home page's code is run by test_packaging.py
    p for p in DOCS.rglob("*.md") if "```python" in p.read_text() and p.name != "index.md"
)
BLOCK = re.compile(
    r"(?:<!-- (?:not run by the tests: (?P<why>[^>]+?)|(?P<slow>slow)) -->\n)?"
    r"```python\n(?P<code>.*?)```",
    flags=re.DOTALL,
)
VALUE = re.compile(r"""^(['"(\[{]|-?\d|True\b|False\b|None\b|tensor\(|torch\.|[A-Z]\w*\()""")


@dataclasses.dataclass(frozen=True)
class Block:
    """A ``python`` block of a page: its code, the line it starts on, and how the tests run it."""

    code: str
    line: int
    slow: bool
    skip: str | None


def page_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    return [
        Block(
            code=match.group("code"),
            line=text.count("\n", 0, match.start("code")) + 1,
            slow=match.group("slow") is not None,
            skip=match.group("why"),
        )
        for match in BLOCK.finditer(text)
    ]


def normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def shows(got: str, shown: str) -> bool:
    """Whether ``got`` is what ``shown`` says, "..." standing for anything; ``shown`` may go on
    after the value (``103360: the parameters``), at a colon, a semicolon or " ("."""
    got, shown = normalised(got), normalised(shown)
    cuts = [len(shown)] + [i for i, c in enumerate(shown) if c in ":;" or shown[i : i + 2] == " ("]
    for cut in cuts:
        pattern = ".*".join(re.escape(part.strip()) for part in shown[:cut].split("..."))
        if re.fullmatch(pattern, got, flags=re.DOTALL):
            return True
    return False


def comments(code: str) -> tuple[dict[int, str], set[int]]:
    """Each line's comment, and the lines that hold nothing else."""
    found, alone = {}, set()
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT:
            row, column = token.start
            found[row] = token.string[1:].strip()
            if not token.line[:column].strip():
                alone.add(row)
    return found, alone


def following(found: dict[int, str], alone: set[int], row: int) -> list[str]:
    lines = []
    while row + 1 in alone:
        row += 1
        lines.append(found[row])
    return lines


def run_block(block: Block, namespace: dict, where: str) -> None:
    """Run ``block`` statement by statement in ``namespace``, checking what its comments show."""
    tree = ast.parse(block.code)
    found, alone = comments(block.code)
    for statement in tree.body:
        line = f"{where}:{block.line + statement.lineno - 1}"
        end = statement.end_lineno or statement.lineno
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            if isinstance(statement, ast.Expr):
                value = eval(compile(ast.Expression(statement.value), line, "eval"), namespace)
            else:
                exec(compile(ast.Module([statement], []), line, "exec"), namespace)
        after = following(found, alone, end)
        if not isinstance(statement, ast.Expr):
            continue
        call = statement.value
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "print":
            if after:
                printed, shown = out.getvalue(), " ".join(after)
                assert shows(printed, shown), f"{line} prints {printed!r}, not {shown!r}"
        else:
            inline = [found[end]] if end in found and end not in alone else []
            shown = " ".join(inline + after)
            if VALUE.match(shown):
                assert shows(repr(value), shown), f"{line} gives {value!r}, not {shown!r}"


@pytest.fixture
def guide_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch working folder where the repository's ``tests/fixtures`` resolve, as they do
    from a clone's root; what the guides write lands here."""
    (tmp_path / "tests").symlink_to(ROOT / "tests", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    # the built-in tasks only, as a reader starts, whatever tests or doctests registered before;
    # what the guide registers is gone after it
    builtins = {name: get_task(name) for name in task_module.BUILTIN_TASKS}
    monkeypatch.setattr(task_module, "_REGISTRY", builtins)
    state = torch.random.get_rng_state()
    yield tmp_path
    torch.random.set_rng_state(state)


def run_page(path: Path, slow: bool) -> dict:
    """Run the page's blocks in order in one namespace (the slow ones only if ``slow``); return
    the namespace."""
    namespace: dict = {"__name__": "__guide__"}
    for block in page_blocks(path):
        if block.skip is None and (slow or not block.slow):
            run_block(block, namespace, path.name)
    return namespace


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_guide_code_runs_and_shows_what_it_gives(path: Path, guide_folder: Path) -> None:
    run_page(path, slow=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", [p for p in PAGES if any(b.slow for b in page_blocks(p))], ids=lambda p: p.name
)
def test_guide_code_runs_with_its_slow_blocks(path: Path, guide_folder: Path) -> None:
    run_page(path, slow=True)


def test_every_block_left_out_says_why() -> None:
    for path in PAGES:
        text = path.read_text()
        marked = text.count("<!-- not run by the tests") + text.count("<!-- slow")
        described = sum(b.skip is not None or b.slow for b in page_blocks(path))
        assert marked == described, f"{path.name}: a marker not just above a ```python fence"


def test_the_checker_reads_values_prints_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nx = [1, 2, 3]\nlen(x)  # 3: three items\nx  # [1, ..., 3]\n"
        "print('a\\nb')\n# a\n# b\nsum(x)  # the total\n```\n"
        "<!-- not run by the tests: needs a hub -->\n```python\nraise SystemExit\n```\n"
        "<!-- slow -->\n```python\nx.append(4)\n```\n"
    )
    blocks = page_blocks(page)
    assert [(b.skip, b.slow) for b in blocks] == [
        (None, False),
        ("needs a hub", False),
        (None, True),
    ]
    assert run_page(page, slow=True)["x"] == [1, 2, 3, 4]
    namespace = run_page(page, slow=False)
    assert namespace["x"] == [1, 2, 3]
    for wrong in ("len(x)  # 4", "x  # [1, ..., 4]", "print('a')\n# b"):
        with pytest.raises(AssertionError):
            run_block(Block(wrong, 1, False, None), namespace, "page.md")
    assert shows("'iteration circuit: L1H0'", "'iteration circuit:\n  L1H0'")
    assert not shows("103", "1030: parameters")


@pytest.mark.parametrize("path", sorted(DOCS.rglob("*.md")), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_command_in_the_docs_parses(path: Path) -> None:
    for argv in shell_commands(path):
        try:
            build_parser().parse_args(argv)
        except SystemExit as error:  # an unknown command or option
            raise AssertionError(f"{path.name}: iteration-heads {shlex.join(argv)}") from error
