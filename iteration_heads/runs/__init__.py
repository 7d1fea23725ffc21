"""The machinery that runs many training runs: a run as a cached spec, where runs train (local
processes, SLURM, Ray), their progress, sweeps over a grid, their cost, and their result tables.
The paper's and Dutta et al.'s experiments (:mod:`iteration_heads.experiments`) are built on it.

* :mod:`~iteration_heads.runs.specs`: :class:`RunSpec`, :func:`run` (one run, cached by the hash
  of its spec), the paper's specs (:func:`paper_spec`, :func:`polynomial_spec`, ...) and the
  settings a spec can be trained in (:func:`~iteration_heads.runs.specs.paper_setting`,
  :func:`~iteration_heads.runs.specs.authors_setting`);
* :mod:`~iteration_heads.runs.run_lock`: who holds a run directory;
* :mod:`~iteration_heads.runs.results`: :class:`RunResult`, a finished run's figures;
* :mod:`~iteration_heads.runs.scheduling`: :func:`run_all` (many runs through an executor);
* where runs train: :mod:`~iteration_heads.runs.executors` (:class:`Executor`,
  :class:`LocalExecutor`), :mod:`~iteration_heads.runs.fork_server` and
  :mod:`~iteration_heads.runs.cluster_executors` (:class:`SlurmExecutor`, :class:`RayExecutor`,
  :func:`make_executor`); :mod:`~iteration_heads.runs.progress` shows them live;
* sweeps: :mod:`~iteration_heads.runs.sweep` (:class:`SweepSpec`, :func:`run_sweep`),
  :mod:`~iteration_heads.runs.sweep_fields` (what a spec's grid may vary),
  :mod:`~iteration_heads.runs.sweep_cost` (:func:`estimate_cost`) and
  :mod:`~iteration_heads.runs.sweep_results` (:func:`collect`, :func:`collect_curves`,
  :func:`write_table`).
* :mod:`~iteration_heads.runs.sharding`: :func:`sharded_head_patching` (exact head patching,
  its heads sharded over an executor).
"""

from iteration_heads.runs.cluster_executors import RayExecutor, SlurmExecutor, make_executor
from iteration_heads.runs.executors import Executor, LocalExecutor
from iteration_heads.runs.results import RunResult
from iteration_heads.runs.scheduling import run_all
from iteration_heads.runs.sharding import sharded_head_patching
from iteration_heads.runs.specs import (
    RunSpec,
    copy_spec,
    finished,
    paper_spec,
    polynomial_spec,
    run,
    transfer_spec,
)
from iteration_heads.runs.sweep import SweepSpec, run_sweep
from iteration_heads.runs.sweep_cost import estimate_cost
from iteration_heads.runs.sweep_results import collect, collect_curves, write_table

__all__ = [
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "RunResult",
    "RunSpec",
    "SlurmExecutor",
    "SweepSpec",
    "collect",
    "collect_curves",
    "copy_spec",
    "estimate_cost",
    "finished",
    "make_executor",
    "paper_spec",
    "polynomial_spec",
    "run",
    "run_all",
    "run_sweep",
    "sharded_head_patching",
    "transfer_spec",
    "write_table",
]
