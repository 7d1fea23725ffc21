"""Experiments: training runs as cached specs, the paper's experiments with their claims, and the
reproduction that writes docs/results.md (docs/paper.md §7).

* :mod:`~iteration_heads.experiments.runs`: :class:`RunSpec`, :func:`run`;
  :mod:`~iteration_heads.experiments.scheduling`: :func:`run_all` (many runs through an executor);
* :mod:`~iteration_heads.experiments.results`: :class:`RunResult`, a finished run's figures;
* :mod:`~iteration_heads.experiments.claims`: :class:`Experiment`, :class:`Claim`;
* one module per family of experiments, with its specs and claims:
  :mod:`~iteration_heads.experiments.emergence`, :mod:`~iteration_heads.experiments.controls`,
  :mod:`~iteration_heads.experiments.parity`, :mod:`~iteration_heads.experiments.scaling`;
* :mod:`~iteration_heads.experiments.reproduction`: :data:`EXPERIMENTS`, :func:`reproduce`;
* :mod:`~iteration_heads.experiments.ontology`: the multi-hop model (:func:`train_ontology`);
* sweeps: :mod:`~iteration_heads.experiments.sweep` (:class:`SweepSpec`, :func:`run_sweep`),
  :mod:`~iteration_heads.experiments.sweep_results` (:func:`collect`, :func:`collect_curves`,
  :func:`write_table`),
  :mod:`~iteration_heads.experiments.sweep_cost` (:func:`estimate_cost`);
* where runs train: :mod:`~iteration_heads.experiments.executors` (:class:`Executor`,
  :class:`LocalExecutor`) and :mod:`~iteration_heads.experiments.cluster_executors`
  (:class:`SlurmExecutor`, :class:`RayExecutor`, :func:`make_executor`);
  :mod:`~iteration_heads.experiments.run_progress` shows them live.
"""

from iteration_heads.experiments.claims import Claim, Experiment, mean_spread
from iteration_heads.experiments.cluster_executors import (
    RayExecutor,
    SlurmExecutor,
    make_executor,
)
from iteration_heads.experiments.executors import Executor, LocalExecutor
from iteration_heads.experiments.ontology import (
    ONTOLOGY_DATA,
    ONTOLOGY_TRAIN,
    ontology_model_config,
    train_ontology,
)
from iteration_heads.experiments.reproduction import EXPERIMENTS, get_experiment, reproduce
from iteration_heads.experiments.results import RunResult
from iteration_heads.experiments.runs import (
    RunSpec,
    copy_spec,
    finished,
    paper_spec,
    polynomial_spec,
    run,
    transfer_spec,
)
from iteration_heads.experiments.scheduling import run_all
from iteration_heads.experiments.sweep import SweepSpec, run_sweep
from iteration_heads.experiments.sweep_cost import estimate_cost
from iteration_heads.experiments.sweep_results import collect, collect_curves, write_table

__all__ = [
    "EXPERIMENTS",
    "ONTOLOGY_DATA",
    "ONTOLOGY_TRAIN",
    "Claim",
    "Executor",
    "Experiment",
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
    "get_experiment",
    "make_executor",
    "mean_spread",
    "ontology_model_config",
    "paper_spec",
    "polynomial_spec",
    "reproduce",
    "run",
    "run_all",
    "run_sweep",
    "train_ontology",
    "transfer_spec",
    "write_table",
]
