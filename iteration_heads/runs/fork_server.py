"""Imported by the fork server of the local workers
(:data:`~iteration_heads.runs.executors.PRELOAD`), and there only: a worker that the
sweep stopped (Ctrl-C) while the server was still forking it dies quietly, instead of
printing the traceback of its half-done start (the sweep already released the queues it was
reading). Anywhere else, importing it changes nothing.

Example:
    >>> quiet_interrupted_start(FileNotFoundError, FileNotFoundError(2, "gone"), None)
"""

from __future__ import annotations

import sys
from types import TracebackType


def quiet_interrupted_start(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    """The fork server's ``sys.excepthook``: silent for a start cut short (a queue or pipe of
    the sweep that is gone), the default hook for anything else."""
    if isinstance(error, (FileNotFoundError, EOFError, BrokenPipeError, ConnectionError)):
        return
    sys.__excepthook__(kind, error, trace)


def in_fork_server() -> bool:
    """Whether this process is a fork server of :mod:`multiprocessing`.

    Example:
        >>> in_fork_server()
        False
    """
    return any("multiprocessing.forkserver import main" in arg for arg in sys.orig_argv)


if in_fork_server():
    sys.excepthook = quiet_interrupted_start
