"""Where runs train: local processes (the default), a SLURM cluster through submitit, or a Ray
cluster, behind one small interface in the shape of :mod:`concurrent.futures`.

An executor takes calls (``submit_all``) and hands back futures; it says how many calls it
runs at once (``slots``), and :func:`~iteration_heads.runs.scheduling.run_all` never gives it
more than that, because submitit's local executor and a bare process pool have no queue of
their own. Results never travel through the futures: every run writes its directory, and
what finished is read back from the files. The cluster engines are optional extras
(``pip install "iteration-heads[ray]"`` or ``[slurm]``); their executors, and
:func:`~iteration_heads.runs.cluster_executors.make_executor` that picks one by name,
are in :mod:`iteration_heads.runs.cluster_executors`.

Example:
    >>> with LocalExecutor(jobs=1) as executor:
    ...     [future.result() for future in executor.submit_all([(pow, (2, 10))])]
    [1024]
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.task import check_int

Call = tuple[Callable[..., Any], tuple[Any, ...]]
"""A function and its arguments: what an executor runs."""


def available_cores() -> int:
    """The CPU cores this process may use (its affinity, not the machine's count).

    Example:
        >>> available_cores() >= 1
        True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def limit_threads(threads: int) -> None:
    """Set the thread count of every math library to ``threads``, before torch starts in this
    process if it has not yet (the variables) and for torch itself if it has.

    Example:
        >>> limit_threads(1); os.environ["OMP_NUM_THREADS"]
        '1'
    """
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


PRELOAD = [
    "iteration_heads.runs.fork_server",
    "iteration_heads.runs.specs",
    "iteration_heads.detection.detector",
]
"""What the local workers' fork server imports once, so that each worker starts in a fraction
of a second instead of importing torch and TransformerLens anew."""


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of local workers: a fork server that preloads the library (Linux,
    macOS), else spawn. Neither copies this process's state, threads or CUDA context.

    Example:
        >>> worker_context().get_start_method() in ("forkserver", "spawn")
        True
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


@contextlib.contextmanager
def unreadable_main_hidden() -> Iterator[None]:
    """While local workers start: hide ``__main__.__file__`` if it names no file (``<stdin>``
    for ``python -`` or a heredoc). A spawned or fork-server worker runs the main script again
    from that path first, and one it cannot open kills the worker before its call starts. The
    calls come from importable modules, so a worker needs nothing from such a script.

    Example:
        >>> import __main__
        >>> had = __main__.__dict__.get("__file__"); __main__.__file__ = "<stdin>"
        >>> with unreadable_main_hidden():
        ...     hasattr(__main__, "__file__")
        False
        >>> __main__.__file__
        '<stdin>'
        >>> __main__.__file__ = had
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not isinstance(path, str) or os.path.isfile(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def start_worker(threads: int, sweep: int | None = None) -> None:
    """What a local worker does first: :func:`limit_threads`, and, given the process id of
    the ``sweep`` that started it, watch that process from a daemon thread and end this worker
    when it is gone, so that a killed sweep leaves no worker training on (a fork server's
    workers are not the sweep's children, and the server lives as long as they do).

    Example:
        >>> start_worker(1); os.environ["MKL_NUM_THREADS"]
        '1'
    """
    limit_threads(threads)
    from tqdm import tqdm

    # tqdm's default lock is a named semaphore of multiprocessing: a worker ended by stop()
    # would leave it for the resource tracker to report as leaked. A worker needs no more than
    # a lock of its own threads.
    tqdm.set_lock(threading.RLock())
    if sweep is not None:
        threading.Thread(target=_end_with, args=(sweep,), daemon=True).start()


def _end_with(pid: int, every: float = 0.5) -> None:
    while True:
        time.sleep(every)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)  # the run in progress resumes from its checkpoint next time
        except PermissionError:  # alive, under another user
            continue


class Executor(ABC):
    """Runs calls somewhere and hands back futures. ``slots`` calls run at once; ``name``
    says which engine it is. Use it as a context manager (or call :meth:`shutdown`)."""

    name: str = "executor"
    slots: int = 1

    @abstractmethod
    def submit_all(self, calls: Sequence[Call]) -> list[Future[Any]]:
        """Start every call (a cluster executor submits them as one job array)."""

    def shutdown(self) -> None:  # noqa: B027 (nothing to release by default)
        """Release the workers (and a runtime the executor started)."""

    def stop(self) -> None:
        """Stop now (Ctrl-C, an error): drop the calls not started and end those running,
        whose runs resume from their checkpoints next time. By default, :meth:`shutdown`."""
        self.shutdown()

    def describe(self) -> str:
        """One line for logs: the engine and how many runs it takes at once."""
        return f"{self.name} executor, {self.slots} at a time"

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:
            self.shutdown()
        else:  # leaving on an exception (Ctrl-C included): do not wait for the jobs
            self.stop()


class LocalExecutor(Executor):
    """Processes on this machine: ``jobs`` workers of ``threads_per_run`` threads each, the
    thread count set before torch starts in each worker. ``jobs`` defaults to what the cores
    allow, and more than that is refused: on a small machine oversubscription costs several
    times the time.

    Example:
        >>> LocalExecutor(jobs=1, threads_per_run=1).describe()
        'local executor, 1 at a time (1 thread each)'
        >>> LocalExecutor(jobs=1000)
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: jobs=1000 with 1 thread per run needs 1000 cores; this process may use ...
    """

    name = "local"

    def __init__(self, jobs: int | None = None, *, threads_per_run: int = 1) -> None:
        cores = available_cores()
        threads_per_run = check_int("threads_per_run", threads_per_run, minimum=1)
        jobs = (max(cores // threads_per_run, 1) if jobs is None
                else check_int("jobs", jobs, minimum=1))  # fmt: skip
        if jobs > 1 and jobs * threads_per_run > cores:
            raise IterationHeadsError(
                f"jobs={jobs} with {threads_per_run} thread{'s' * (threads_per_run > 1)} per "
                f"run needs {jobs * threads_per_run} cores; this process may use {cores}"
            )
        self.slots, self.threads = jobs, threads_per_run
        self._pool: ProcessPoolExecutor | None = None
        self._known: set[Any] = set()  # this process's children before the pool started

    def submit_all(self, calls: Sequence[Call]) -> list[Future[Any]]:
        """Start every call in a worker process. Workers are forked from a server process that
        imported the library once (not from this one, so no state leaks from it), or spawned
        where the platform has no fork server."""
        if self._pool is None:
            self._known = set(multiprocessing.active_children())
            self._pool = ProcessPoolExecutor(
                max_workers=self.slots,
                mp_context=worker_context(),
                initializer=start_worker,
                initargs=(self.threads, os.getpid()),
            )
        with unreadable_main_hidden():  # the pool starts its workers as calls come
            return [self._pool.submit(fn, *args) for fn, args in calls]

    def shutdown(self) -> None:
        """Wait for the calls submitted, then end the workers and the pool's own thread: a pool
        left to the interpreter's exit can race its shutdown there and print a traceback.

        Example:
            >>> executor = LocalExecutor(jobs=1)
            >>> futures = executor.submit_all([(abs, (-1,))]); executor.shutdown()
            >>> futures[0].result(), executor._pool is None
            (1, True)
        """
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def stop(self) -> None:
        """End the worker processes at once (SIGTERM; every file they write is atomic, and a
        run resumes from its last checkpoint), then release the pool.

        Example:
            >>> executor = LocalExecutor(jobs=1)
            >>> futures = executor.submit_all([(time.sleep, (60,))])
            >>> tick = time.perf_counter(); executor.stop(); time.perf_counter() - tick < 10
            True
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # the pool's workers, and any that a Ctrl-C caught before the pool recorded it
        processes = {*(getattr(pool, "_processes", None) or {}).values()}
        processes |= set(multiprocessing.active_children()) - self._known
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=10)
        pool.shutdown(wait=True, cancel_futures=True)

    def describe(self) -> str:
        """One line for logs."""
        return f"{super().describe()} ({self.threads} thread{'s' * (self.threads > 1)} each)"


def missing_extra(engine: str, extra: str) -> IterationHeadsError:
    """The error for an engine that is not installed, naming the extra that installs it.

    Example:
        >>> print(missing_extra("ray", "ray"))
        the ray executor needs the ray package: pip install "iteration-heads[ray]"
    """
    return IterationHeadsError(
        f'the {engine} executor needs the {engine} package: pip install "iteration-heads[{extra}]"'
    )
