"""Who holds a run directory: the lock that a run's trainer, and this package's short steps
(cleaning, deciding to resume, finishing), take on it, and what a process that finds it held
does (:class:`RunningElsewhere`). :mod:`~iteration_heads.runs.specs` trains under it;
:mod:`~iteration_heads.runs.scheduling` and the sweeps read it.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with claimed(folder):
    ...     run_holder(folder)
    'another process'
    >>> run_holder(folder) is None
    True
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from iteration_heads._io import LOCK_FILE, is_temporary, remove_temporary, write_error
from iteration_heads.training.run_dir import RunInUse, take_run_lock


class RunningElsewhere(RunInUse):
    """A run directory whose lock another process holds: the run is training (or starting, or
    finishing) there, so it is neither trained nor touched here. ``holder`` says who."""

    holder: str = "another process"


def run_holder(directory: str | os.PathLike[str]) -> str | None:
    """Who holds the lock of the run ``directory`` (``process 12 on host since ...``), or None
    when no process does. Nothing is created.

    Example:
        >>> import tempfile
        >>> run_holder(tempfile.mkdtemp()) is None
        True
    """
    directory = Path(directory)
    if not (directory / LOCK_FILE).is_file():
        return None  # a holder keeps the file open (filelock never removes it on Unix)
    try:
        with claimed(directory):
            return None
    except RunningElsewhere as err:
        return err.holder


@contextmanager
def claimed(directory: Path) -> Iterator[None]:
    """Hold the lock of the run ``directory`` (created if needed) for a short step of
    :mod:`~iteration_heads.runs.specs` or :mod:`~iteration_heads.runs.scheduling` (cleaning,
    deciding to resume, finishing); :class:`RunningElsewhere` when another
    process holds it. Training takes the lock again itself
    (:func:`~iteration_heads.training.run_dir.locked_run`).

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> with claimed(run):
        ...     run_holder(run)
        'another process'
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(directory, err) from None
    try:
        lock = take_run_lock(directory)
    except RunInUse as held:
        error = RunningElsewhere(f"run {str(directory)!r} is running elsewhere ({held.holder})")
        error.holder = held.holder
        raise error from None
    try:
        yield
    finally:
        lock.release()


def remove_temporaries(folder: Path) -> None:
    """Delete what writes killed part-way left in ``folder`` (their temporary files and folders,
    by name: :func:`~iteration_heads._io.is_temporary`; not in sub-folders). Call it only
    holding the lock that guards what ``folder`` holds.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> (folder / ".wall.json.x1b2c3d4.tmp").mkdir()
        >>> remove_temporaries(folder); list(folder.iterdir())
        []
    """
    if folder.is_dir():
        for path in folder.iterdir():
            if is_temporary(path):
                remove_temporary(path)
