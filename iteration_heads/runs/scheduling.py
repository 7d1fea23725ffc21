"""Many runs at once: :func:`run_all` trains the runs not yet cached through an executor
(local processes by default; SLURM or Ray through
:mod:`~iteration_heads.runs.cluster_executors`), sources before the runs that fine-tune
them, never more at once than the executor's slots, and reads what finished from the run
directories. A job trains a group of runs: one after another (:func:`train_cells`), or, for
runs that differ only in their seed, stacked in one process (:func:`train_seed_batch`).

Example:
    >>> import dataclasses, tempfile
    >>> from iteration_heads.runs.specs import copy_spec
    >>> def short(seed):  # the shipped copy run, one epoch
    ...     spec = copy_spec(seed)
    ...     return dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=1))
    >>> runs = tempfile.mkdtemp()
    >>> run_all([short(0), short(1)], runs, log=lambda line: None)
    >>> [finished(short(seed), runs) for seed in (0, 1)]
    [True, True]
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import replace
from pathlib import Path

from iteration_heads._io import RUN_FILE, write_text
from iteration_heads.errors import IterationHeadsError
from iteration_heads.runs.executors import Executor, LocalExecutor
from iteration_heads.runs.progress import RunProgress
from iteration_heads.runs.run_lock import (
    RunningElsewhere,
    claimed,
    remove_temporaries,
    run_holder,
)
from iteration_heads.runs.specs import RunSpec, finish_run, finished, train_run
from iteration_heads.tasks.task import check_int

ELSEWHERE = "running elsewhere"
"""How a job reports a run whose directory another process holds (it is not a failure: the run
was neither trained nor touched here)."""


def train_cells(specs: Sequence[RunSpec], runs: str | os.PathLike[str]) -> dict[str, str]:
    """Train every spec in turn into ``runs`` (what one worker, Ray task or array task does);
    returns the one-line error of each spec that failed, by key (:func:`record_error`), or
    :data:`ELSEWHERE` and its holder for a run that another process holds. The runs themselves
    are read back from their files, never from this return value.

    Example:
        >>> import dataclasses, tempfile
        >>> from iteration_heads.runs.specs import copy_spec
        >>> spec = copy_spec()
        >>> one_epoch = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=1))
        >>> train_cells([one_epoch], tempfile.mkdtemp())
        {}
    """
    errors: dict[str, str] = {}
    for spec in specs:
        try:
            if not finished(spec, runs):
                train_run(spec, runs)  # at the spec's thread count
        except RunningElsewhere as error:
            errors[spec.key()] = f"{ELSEWHERE} ({error.holder})"
        except Exception as error:
            errors[spec.key()] = record_error(spec, runs, error)
    return errors


def record_error(spec: RunSpec, runs: str | os.PathLike[str], error: BaseException) -> str:
    """Write the traceback of a failed run next to its directory (``<run>.traceback.txt``)
    and return its one-line message.

    Example:
        >>> import tempfile
        >>> from iteration_heads.runs.specs import copy_spec
        >>> record_error(copy_spec(), tempfile.mkdtemp(), ValueError("bad input"))
        'ValueError: bad input'
    """
    directory = spec.directory(runs)
    directory.parent.mkdir(parents=True, exist_ok=True)
    write_text(directory.with_name(directory.name + ".traceback.txt"),
               "".join(traceback.format_exception(error)))  # fmt: skip
    return f"{type(error).__name__}: {error}".splitlines()[0]


def seedless(spec: RunSpec) -> str | None:
    """What runs must share to be stacked in one process: every setting but the seed, which
    must be the same for data, model and training (as a sweep's ``seed`` sets it). None for a
    run that cannot be stacked (it fine-tunes another).

    Example:
        >>> from iteration_heads.runs.specs import polynomial_spec
        >>> seedless(polynomial_spec(0)) == seedless(polynomial_spec(1))
        True
        >>> seedless(polynomial_spec(0)) == seedless(polynomial_spec(1, epochs=9))
        False
    """
    seed = spec.train.seed
    if spec.source is not None or spec.data.seed != seed or spec.model.seed != seed:
        return None
    parts = (replace(spec.data, seed=0), replace(spec.model, seed=0), replace(spec.train, seed=0))
    return repr(parts)


def seed_groups(specs: Sequence[RunSpec]) -> list[list[RunSpec]]:
    """``specs`` grouped by :func:`seedless` (runs that differ only in their seed), in order
    of first appearance; a run that cannot be stacked is a group of its own.

    Example:
        >>> from iteration_heads.runs.specs import polynomial_spec
        >>> specs = [polynomial_spec(s, max_len=L) for L in (4, 6) for s in (0, 1)]
        >>> [[spec.train.seed for spec in group] for group in seed_groups(specs)]
        [[0, 1], [0, 1]]
    """
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(seedless(spec) or spec.key(), []).append(spec)
    return list(groups.values())


def train_seed_batch(specs: Sequence[RunSpec], runs: str | os.PathLike[str]) -> dict[str, str]:
    """Train runs that differ only in their seed stacked in one process
    (:func:`~iteration_heads.training.batched.train_seeds`: each equals its separate run to
    float tolerance), then finish each (:func:`~iteration_heads.runs.specs.finish_run`;
    each run's seconds are its share of the batch's). Runs that already started resume one by
    one, as :func:`train_cells` does. Returns the errors by key.

    Example:
        >>> import dataclasses, tempfile
        >>> from iteration_heads.runs.specs import copy_spec
        >>> def short(seed):  # the shipped copy run, two epochs
        ...     spec = copy_spec(seed)
        ...     return dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=2))
        >>> runs = tempfile.mkdtemp()
        >>> train_seed_batch([short(0), short(1)], runs)
        {}
        >>> short(0).result(runs).name
        'copy-cot-d32-L6-2x1-s0-e2'
    """
    from iteration_heads.training.batched import train_seeds

    started = [s for s in specs if (s.directory(runs) / RUN_FILE).is_file()]
    fresh = [s for s in specs if s not in started and not finished(s, runs)]
    errors = train_cells(started, runs)
    held = {s.key(): run_holder(s.directory(runs)) for s in fresh}
    errors |= {key: f"{ELSEWHERE} ({who})" for key, who in held.items() if who is not None}
    fresh = [s for s in fresh if held[s.key()] is None]
    if len(fresh) < 2 or len({seedless(s) for s in fresh}) > 1 or seedless(fresh[0]) is None:
        return errors | train_cells(fresh, runs)
    try:
        for spec in fresh:  # a start that never finished starts over, under the run's lock
            with claimed(spec.directory(runs)):
                remove_temporaries(spec.directory(runs))
    except RunningElsewhere:
        return errors | train_cells(fresh, runs)
    first = fresh[0]
    tick = time.perf_counter()
    try:
        trained = train_seeds(first.model, first.data, first.train,
                              [s.train.seed for s in fresh],
                              out_dirs=[s.directory(runs) for s in fresh])  # fmt: skip
    except Exception as error:
        raced = "is in use by" in str(error) or any(run_holder(s.directory(runs)) for s in fresh)
        if raced:  # with another process: each run on its own, each held one left to it
            return errors | train_cells(fresh, runs)
        return errors | {s.key(): record_error(s, runs, error) for s in fresh}
    seconds = (time.perf_counter() - tick) / len(fresh)
    for spec, (model, _) in zip(fresh, trained, strict=True):
        try:
            with claimed(spec.directory(runs)):
                if not finished(spec, runs):
                    finish_run(spec, runs, model, seconds)
        except RunningElsewhere as error:
            errors[spec.key()] = f"{ELSEWHERE} ({error.holder})"
        except Exception as error:
            errors[spec.key()] = record_error(spec, runs, error)
    return errors


def run_all(
    specs: Sequence[RunSpec],
    runs: str | os.PathLike[str],
    *,
    jobs: int = 1,
    executor: Executor | None = None,
    runs_per_job: int = 1,
    batch_seeds: bool = False,
    log: Callable[[str], None] = print,
    on_error: Callable[[RunSpec, BaseException], None] | None = None,
    progress: bool = False,
) -> None:
    """Train every spec not yet cached (sources first) through ``executor`` (default: ``jobs``
    local processes, one thread each), giving it no more runs at once than its slots;
    ``runs_per_job`` runs share one job (one SLURM array task, say), or, with
    ``batch_seeds``, the runs that differ only in their seed share one job and train stacked
    in one process (:func:`train_seed_batch`). With ``progress``, a live view of runs done /
    running / failed and the time left.

    A run that fails stops everything, unless ``on_error`` is given: then it is called with
    the spec and the error, and the other runs go on (runs fine-tuning a failed source fail
    the same way). A run whose directory another process holds is left to it ("running
    elsewhere": neither trained nor a failure). What finished is read from the run
    directories, never from the jobs.

    Example:
        >>> import dataclasses, tempfile
        >>> from iteration_heads.runs.specs import copy_spec
        >>> spec = copy_spec()
        >>> one_epoch = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=1))
        >>> runs = tempfile.mkdtemp()
        >>> run_all([one_epoch], runs, log=lambda line: None)
        >>> finished(one_epoch, runs)
        True
    """
    runs = Path(runs)
    jobs = check_int("jobs", jobs, minimum=1)
    runs_per_job = check_int("runs_per_job", runs_per_job, minimum=1)
    todo: dict[str, RunSpec] = {}

    def add(spec: RunSpec) -> None:
        if spec.source is not None:
            add(spec.source)
        todo.setdefault(spec.key(), spec)

    for spec in specs:
        add(spec)
    todo = {k: s for k, s in todo.items() if not finished(s, runs)}
    if not todo:
        return
    pending = set(todo)  # keys to train in this call
    own = executor is None
    executor = executor or LocalExecutor(jobs)
    log(f"{len(todo)} runs to train in {runs} ({executor.describe()})")
    view = RunProgress(len(todo), enabled=progress, log=log)
    running: dict[Future[dict[str, str]], list[RunSpec]] = {}
    completed: set[str] = set()

    def ready(spec: RunSpec) -> bool:
        source = spec.source
        return source is None or source.key() not in pending or source.key() in completed

    def fail(spec: RunSpec, error: BaseException) -> None:
        if on_error is None:
            raise error
        on_error(spec, error)
        view.failed(f"{spec.name()} failed: {error}")

    try:
        while todo or running:
            free = max(executor.slots - len(running), 0)  # jobs
            chosen = [spec for spec in todo.values() if ready(spec)]
            if batch_seeds:
                groups, worker = seed_groups(chosen)[:free], train_seed_batch
            else:
                chosen = chosen[: free * runs_per_job]
                groups = [chosen[i : i + runs_per_job] for i in range(0, len(chosen), runs_per_job)]
                worker = train_cells
            if groups:
                calls = [(worker, (group, str(runs))) for group in groups]
                for future, group in zip(executor.submit_all(calls), groups, strict=True):
                    running[future] = group
                    for spec in group:
                        del todo[spec.key()]
                view.running(sum(map(len, running.values())))
            if not running:
                error = IterationHeadsError("a fine-tuning run's source could not be trained")
                for spec in list(todo.values()):
                    fail(spec, error)
                break
            complete, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in complete:
                group = running.pop(future)
                crash = future.exception()
                errors = {} if crash is not None else future.result()
                for spec in group:
                    if finished(spec, runs):
                        completed.add(spec.key())
                        view.finished(spec.result(runs).format())
                        continue
                    if errors.get(spec.key(), "").startswith(ELSEWHERE):
                        view.elsewhere(f"{spec.name()}: {errors[spec.key()]}; not trained here")
                        continue
                    message = errors.get(spec.key()) or (
                        f"the job ended without finishing the run: {crash!r}"
                        if crash is not None
                        else "the job ended without finishing the run"
                    )
                    fail(spec, IterationHeadsError(f"run {spec.name()} failed: {message}"))
            view.running(sum(map(len, running.values())))
    except BaseException:  # Ctrl-C, SIGTERM, an error: stop the jobs rather than wait
        if own:
            executor.stop()
        raise
    finally:
        view.close()
        if own:
            executor.shutdown()
