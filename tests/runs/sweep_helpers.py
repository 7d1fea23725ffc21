"""Shared by the sweep safety tests: an executor that runs each call in this process (so a test
can hold a run's lock, or a forked child can be killed at any instant without a worker pool),
and a tiny grid whose cells train in a fraction of a second."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from iteration_heads.runs.executors import Call, Executor

TINY_SPEC = """name = "{name}"
[fixed]
"data.task" = "copy"
"data.max_len" = 3
"data.n_train" = 32
"data.n_test" = 16
"model.d_model" = 16
"train.epochs" = {epochs}
"train.eval_every" = {every}
"train.checkpoint_every" = 1
[axes]
seed = {seeds}
"""


def write_spec(
    folder: Path, name: str = "tiny", epochs: int = 3, seeds: str = "[0, 1]", every: int = 1
) -> Path:
    """A tiny sweep spec file in ``folder``."""
    path = folder / f"{name}.toml"
    path.write_text(TINY_SPEC.format(name=name, epochs=epochs, seeds=seeds, every=every))
    return path


class InlineExecutor(Executor):
    """Runs every call at once, here, and hands back finished futures."""

    name = "inline"

    def submit_all(self, calls: Sequence[Call]) -> list[Future[Any]]:
        futures = []
        for fn, args in calls:
            future: Future[Any] = Future()
            try:
                future.set_result(fn(*args))
            except Exception as error:
                future.set_exception(error)
            futures.append(future)
        return futures
