"""The notebooks as tests, run inside the pytest process (``make test``).

Each notebook runs top to bottom, in its own folder, in a new IPython shell inside the pytest
worker: every cell through IPython's ``run_cell`` (a notebook's last expression is displayed, so
its figures are rendered in every format a Jupyter kernel asks for), and a cell that raises fails
the test with the cell's number, source and traceback. The worker has imported torch,
TransformerLens and the package already, so a notebook pays only for its own work: a Jupyter
kernel per notebook (nbmake) cost about 8 s of start-up each. What a kernel adds, plotly's
figures as HTML and tqdm's widgets, is checked in a real kernel by ``tests/test_docs.py``;
``make notebooks`` runs the notebooks with nbmake, in kernels, and then this collector steps
aside.
"""

from __future__ import annotations

import atexit
import builtins
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest


class NotebookCellFailed(Exception):
    """A cell of a notebook raised."""


class Notebook(pytest.File):
    """A ``.ipynb`` file: one test that runs it."""

    def collect(self) -> Iterator[pytest.Item]:
        yield NotebookRun.from_parent(self, name=self.path.name)


class NotebookRun(pytest.Item):
    """Runs every code cell of the notebook, in order, in a fresh namespace."""

    def runtest(self) -> None:
        notebook = nbformat.read(self.path, as_version=4)
        kept = keep_process_state()
        shell = notebook_shell()
        try:
            os.chdir(self.path.parent)  # where Jupyter, and nbmake, run a notebook
            code = [cell for cell in notebook.cells if cell.cell_type == "code"]
            for number, cell in enumerate(code, start=1):
                result = shell.run_cell(cell.source, store_history=False)
                error = result.error_before_exec or result.error_in_exec
                if error is not None:
                    raise NotebookCellFailed(number, cell.source) from error
        finally:
            close_shell(shell)
            kept()

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if not isinstance(excinfo.value, NotebookCellFailed):
            return str(super().repr_failure(excinfo))
        number, source = excinfo.value.args
        cause = excinfo.value.__cause__  # runtest raises it ``from`` the cell's error
        trace = pytest.ExceptionInfo.from_exception(cause).getrepr(style="short")
        head = f"code cell {number} of {self.path.name} raised {type(cause).__name__}: {cause}"
        return f"{head}\n{source}\n\n{trace}"

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"notebook {self.path.name}"


def notebook_shell() -> Any:
    """A new IPython shell: no history file, every display format on (as a Jupyter kernel asks),
    tracebacks without colours."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False  # no sqlite file and no saving thread
    config.InteractiveShell.colors = "nocolor"  # tracebacks in the captured output
    shell = InteractiveShell.instance(config=config)
    formatter = shell.display_formatter
    formatter.active_types = list(formatter.formatters)
    return shell


def close_shell(shell: Any) -> None:
    """Drop ``shell`` and what it holds (the notebook's models and tensors): after it, IPython's
    ``get_ipython()`` is None again in this process."""
    shell.reset(new_session=False)
    shell.atexit_operations()
    atexit.unregister(shell.atexit_operations)
    type(shell).clear_instance()


def keep_process_state() -> Any:
    """What a notebook, or its shell, may change in the process, and a function that puts it
    back: the working folder, ``__main__`` (the shell installs its own), the builtins (it adds
    ``__IPYTHON__`` and ``display``), plotly's default renderer, torch's random state and
    threads."""
    import plotly.io as pio
    import torch

    folder, main, names = os.getcwd(), sys.modules["__main__"], set(vars(builtins))
    renderer, rng, threads = pio.renderers.default, torch.get_rng_state(), torch.get_num_threads()

    def restore() -> None:
        os.chdir(folder)
        sys.modules["__main__"] = main
        for name in set(vars(builtins)) - names:
            delattr(builtins, name)
        pio.renderers.default = renderer
        torch.set_rng_state(rng)
        torch.set_num_threads(threads)

    return restore


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.File | None:
    """Collect ``*.ipynb`` unless nbmake runs the notebooks (``--nbmake``)."""
    if file_path.suffix != ".ipynb" or parent.config.getoption("nbmake", default=False):
        return None
    return Notebook.from_parent(parent, path=file_path)
