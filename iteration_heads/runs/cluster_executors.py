"""Executors for clusters: SLURM through submitit (job arrays, requeued runs that resume) and
Ray (one task per call, on a cluster or a runtime started here), and :func:`make_executor`,
which picks any executor by name. Both engines are optional extras, imported when an executor
is made: ``pip install "iteration-heads[slurm]"`` or
``"iteration-heads[ray]"``.

Example:
    >>> import tempfile
    >>> with SlurmExecutor(tempfile.mkdtemp(), cluster="local", slots=1) as executor:
    ...     print(executor.describe())
    slurm-local executor, 1 at a time (submitit, 1 thread each)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from iteration_heads.errors import IterationHeadsError
from iteration_heads.runs.executors import (
    Call,
    Executor,
    LocalExecutor,
    available_cores,
    limit_threads,
    missing_extra,
)
from iteration_heads.tasks.task import check_int, check_number

EXECUTORS = ("local", "ray", "slurm", "slurm-local")
"""The executors :func:`make_executor` knows (``slurm-local``: submitit's local executor,
which runs SLURM's code path as processes on this machine)."""


class ResumableCall:
    """A call that submitit may requeue: on pre-emption or time-out it is submitted again with
    the same arguments, and the runs it trains resume from their checkpoints.

    Example:
        >>> ResumableCall(pow, threads=1)(2, 3)
        8
    """

    def __init__(self, function: Callable[..., Any], *, threads: int) -> None:
        self.function, self.threads = function, threads

    def __call__(self, *args: Any) -> Any:
        return call_with_threads(self.threads, self.function, *args)

    def checkpoint(self, *args: Any) -> Any:
        """What submitit runs after a requeue: this call again (the runs resume from disk)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args)


class SlurmExecutor(Executor):
    """SLURM through submitit: the calls of one :meth:`submit_all` become one job array, each
    task asking for ``threads_per_run`` CPUs (and ``gpus_per_run`` GPUs) on ``partition`` for
    ``time_min`` minutes; a pre-empted or timed-out task is requeued up to ``max_requeues``
    times and its runs resume. ``slots`` caps the array's parallelism (SLURM queues the rest).

    ``cluster="local"`` is submitit's local executor: the same code path, as processes on this
    machine. It has no queue (it would start every job at once), so there ``slots`` defaults
    to what the cores allow and the caller submits no more than that.

    Extra keyword options go to submitit (``slurm_qos``, ``slurm_account``,
    ``slurm_additional_parameters``, ...). Job files (logs, pickles) go to ``folder``.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        cluster: str = "slurm",
        slots: int | None = None,
        threads_per_run: int = 1,
        partition: str | None = None,
        time_min: int = 60,
        mem_gb: float | None = None,
        gpus_per_run: int = 0,
        max_requeues: int = 3,
        poll_seconds: float = 1.0,
        **options: Any,
    ) -> None:
        if cluster not in ("slurm", "local"):
            raise IterationHeadsError(f"cluster={cluster!r}, expected 'slurm' or 'local'")
        threads_per_run = check_int("threads_per_run", threads_per_run, minimum=1)
        time_min = check_int("time_min", time_min, minimum=1)
        slots = None if slots is None else check_int("slots", slots, minimum=1)
        gpus_per_run = check_int("gpus_per_run", gpus_per_run, minimum=0)
        max_requeues = check_int("max_requeues", max_requeues, minimum=0)
        poll_seconds = check_number("poll_seconds", poll_seconds, minimum=0, open_min=True)
        if mem_gb is not None:
            mem_gb = check_number("mem_gb", mem_gb, minimum=0, open_min=True)
        try:
            import submitit
        except ImportError:
            raise missing_extra("slurm", "slurm") from None
        self.name = "slurm" if cluster == "slurm" else "slurm-local"
        self.threads = threads_per_run
        local = max(available_cores() // threads_per_run, 1)
        self.slots = slots or (local if cluster == "local" else 10**6)
        self._executor = submitit.AutoExecutor(
            folder=Path(folder), cluster=cluster, slurm_max_num_timeout=max_requeues
        )
        parameters: dict[str, Any] = {
            "name": "iteration-heads",
            "timeout_min": time_min,
            "cpus_per_task": threads_per_run,
            **options,
        }
        if gpus_per_run:
            parameters["gpus_per_node"] = gpus_per_run
        if mem_gb is not None:
            parameters["mem_gb"] = mem_gb
        if cluster == "slurm":
            parameters["slurm_array_parallelism"] = min(self.slots, 10**4)
            if partition is not None:
                parameters["slurm_partition"] = partition
        try:
            self._executor.update_parameters(**parameters)
        except (ValueError, TypeError) as err:
            raise IterationHeadsError(f"submitit refused the options: {err}") from None
        self._poll = poll_seconds
        self._pending: list[tuple[Any, Future[Any]]] = []
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    def submit_all(self, calls: Sequence[Call]) -> list[Future[Any]]:
        """Submit every call as one job array; the futures complete as the jobs end."""
        with self._executor.batch():
            jobs = [
                self._executor.submit(ResumableCall(fn, threads=self.threads), *args)
                for fn, args in calls
            ]
        futures: list[Future[Any]] = [Future() for _ in jobs]
        for future in futures:
            future.set_running_or_notify_cancel()
        with self._lock:
            self._pending += list(zip(jobs, futures, strict=True))
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, daemon=True)
            self._watcher.start()
        return futures

    def _watch(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pending = list(self._pending)
            for job, future in pending:
                try:
                    if not job.done():
                        continue
                    future.set_result(job.result())
                except Exception as err:  # the job failed (its traceback is in its log)
                    future.set_exception(err)
                with self._lock:
                    self._pending.remove((job, future))
            self._stop.wait(self._poll)

    def shutdown(self) -> None:
        """Stop watching; jobs that still run are cancelled."""
        self._stop.set()
        with self._lock:
            pending, self._pending = self._pending, []
        for job, future in pending:
            job.cancel(check=False)
            future.cancel()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None

    def describe(self) -> str:
        """One line for logs."""
        slots = "queued by SLURM" if self.slots >= 10**6 else f"{self.slots} at a time"
        threads = f"{self.threads} thread{'s' * (self.threads > 1)} each"
        return f"{self.name} executor, {slots} (submitit, {threads})"


def call_with_threads(threads: int, function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args)`` with ``threads`` math-library threads (the body of a Ray task).

    Example:
        >>> call_with_threads(1, pow, 2, 5)
        32
    """
    limit_threads(threads)
    return function(*args)


class RayExecutor(Executor):
    """Ray: one task per call, asking for ``threads_per_run`` CPUs and ``gpus_per_run`` GPUs
    (a fraction lets several small runs share one GPU). It attaches to the cluster at
    ``address`` (default: the ``RAY_ADDRESS`` variable), or starts a local runtime of
    ``local_cpus`` CPUs that :meth:`shutdown` stops. ``slots`` defaults to the cluster's CPUs
    divided by ``threads_per_run``."""

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        slots: int | None = None,
        threads_per_run: int = 1,
        gpus_per_run: float = 0.0,
        local_cpus: int | None = None,
    ) -> None:
        threads_per_run = check_int("threads_per_run", threads_per_run, minimum=1)
        gpus_per_run = check_number("gpus_per_run", gpus_per_run, minimum=0)
        slots = None if slots is None else check_int("slots", slots, minimum=1)
        local_cpus = check_int("local_cpus", local_cpus, minimum=1, none=True)
        try:
            import ray
        except ImportError:
            raise missing_extra("ray", "ray") from None
        self._ray, self._started = ray, False
        address = address or os.environ.get("RAY_ADDRESS")
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=local_cpus or available_cores(),
                    include_dashboard=False,
                    log_to_driver=False,
                    object_store_memory=256 * 2**20,
                )
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.threads = threads_per_run
        self.slots = slots or max(cpus // threads_per_run, 1)
        self._task = ray.remote(call_with_threads).options(
            num_cpus=threads_per_run, num_gpus=gpus_per_run, max_retries=0
        )

    def submit_all(self, calls: Sequence[Call]) -> list[Future[Any]]:
        """Start one Ray task per call."""
        return [self._task.remote(self.threads, fn, *args).future() for fn, args in calls]

    def shutdown(self) -> None:
        """Stop the local runtime this executor started (an attached cluster keeps running)."""
        if self._started:
            self._ray.shutdown()
            self._started = False


def make_executor(
    kind: str = "local",
    *,
    jobs: int | None = None,
    threads_per_run: int = 1,
    folder: str | os.PathLike[str] = "runs/sweeps/jobs",
    **options: Any,
) -> Executor:
    """The executor called ``kind`` (one of :data:`EXECUTORS`). ``jobs`` caps the runs at once;
    ``folder`` holds submitit's job files; other options go to the engine's executor
    (:class:`~iteration_heads.runs.cluster_executors.SlurmExecutor`,
    :class:`~iteration_heads.runs.cluster_executors.RayExecutor`).

    Example:
        >>> make_executor("local", jobs=1).describe()
        'local executor, 1 at a time (1 thread each)'
        >>> make_executor("dask")
        Traceback (most recent call last):
        ...
        iteration_heads.errors.IterationHeadsError: executor 'dask', expected one of ('local', 'ray', 'slurm', 'slurm-local')
    """
    if kind not in EXECUTORS:
        raise IterationHeadsError(f"executor {kind!r}, expected one of {EXECUTORS}")
    if kind == "local":
        if options:
            raise IterationHeadsError(f"the local executor takes no options {sorted(options)}")
        return LocalExecutor(jobs, threads_per_run=threads_per_run)
    if kind == "ray":
        return RayExecutor(slots=jobs, threads_per_run=threads_per_run, **options)
    cluster = "local" if kind == "slurm-local" else "slurm"
    return SlurmExecutor(
        folder, cluster=cluster, slots=jobs, threads_per_run=threads_per_run, **options
    )
