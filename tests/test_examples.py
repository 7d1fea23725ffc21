"""The notebooks in examples/: every jupytext script has a paired .ipynb with the same cells,
and no notebook stores outputs (`make notebooks` runs them with nbmake, `make test` with
examples/conftest.py, whose failures are checked here)."""

import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if p.name != "conftest.py")
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


def test_make_test_runs_notebooks_in_process_and_reports_the_failing_cell(tmp_path):
    """examples/conftest.py: each notebook in a fresh namespace, in its folder; a raising cell
    fails with its number, source and error; no shell is left, and __main__ is pytest's again."""
    (tmp_path / "conftest.py").write_text((EXAMPLES / "conftest.py").read_text())
    notebooks = {
        "a_good": ["x = 41", "x + 1", "import os\nassert os.path.isfile('a_good.ipynb')"],
        "b_fresh": ["assert 'x' not in dir(), 'the namespace of a_good leaked'"],
        "c_bad": ["y = 1", "raise ValueError('boom')", "z = 3"],
    }
    for name, sources in notebooks.items():
        cells = [nbformat.v4.new_code_cell(source) for source in sources]
        nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / f"{name}.ipynb")
    (tmp_path / "test_z_after.py").write_text(
        "import builtins, sys\nfrom IPython import get_ipython\n\ndef test_no_shell_is_left():\n"
        "    assert sys.modules['__main__'].__spec__.name == 'pytest.__main__'\n"
        "    assert get_ipython() is None and not hasattr(builtins, '__IPYTHON__')\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert (
        "code cell 2 of c_bad.ipynb raised ValueError: boom\nraise ValueError('boom')" in run.stdout
    )
    assert "\x1b[" not in run.stdout  # the shell's own traceback, captured, without colours
    assert "1 failed, 3 passed" in run.stdout, run.stdout
