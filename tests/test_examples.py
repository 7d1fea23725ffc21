"""The notebooks in examples/: every jupytext script has a paired .ipynb with the same cells,
and no notebook stores outputs (running them is `make notebooks`, with nbmake)."""

from pathlib import Path

import jupytext
import nbformat
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def cells(path: Path) -> list[tuple[str, str]]:
    """(type, source) of every cell, trailing whitespace ignored."""
    notebook = jupytext.read(path)
    return [(cell.cell_type, cell.source.rstrip()) for cell in notebook.cells]


def test_there_are_examples():
    assert SCRIPTS, f"no example script in {EXAMPLES}"
    assert (EXAMPLES / "README.md").is_file()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_paired_with_a_notebook(script):
    notebook = script.with_suffix(".ipynb")
    assert notebook.is_file(), f"{notebook.name} missing: run `jupytext --to ipynb {script}`"
    formats = jupytext.read(script).metadata.get("jupytext", {}).get("formats", "")
    assert formats == "ipynb,py:percent", f"{script.name}: jupytext formats {formats!r}"
    assert cells(script) == cells(notebook), (
        f"{script.name} and {notebook.name} differ: run `jupytext --sync {script}`"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_a_script_and_no_outputs(notebook):
    assert notebook.with_suffix(".py").is_file(), f"{notebook.name} has no paired .py script"
    stored = nbformat.read(notebook, as_version=4)
    for index, cell in enumerate(stored.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{notebook.name} cell {index} stores outputs"
            assert cell.execution_count is None, f"{notebook.name} cell {index} was executed"
