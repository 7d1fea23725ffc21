"""Experiments: training runs as cached specs, the paper's experiments with their claims, and the
reproduction that writes docs/results.md (docs/paper.md §7).

* :mod:`~iteration_heads.experiments.runs`: :class:`RunSpec`, :func:`run`, :func:`run_all`;
* :mod:`~iteration_heads.experiments.results`: :class:`RunResult`, a finished run's figures;
* :mod:`~iteration_heads.experiments.claims`: :class:`Experiment`, :class:`Claim`;
* one module per family of experiments, with its specs and claims:
  :mod:`~iteration_heads.experiments.emergence`, :mod:`~iteration_heads.experiments.controls`,
  :mod:`~iteration_heads.experiments.parity`, :mod:`~iteration_heads.experiments.scaling`;
* :mod:`~iteration_heads.experiments.reproduction`: :data:`EXPERIMENTS`, :func:`reproduce`;
* :mod:`~iteration_heads.experiments.ontology`: the multi-hop model (:func:`train_ontology`).
"""

from iteration_heads.experiments.claims import Claim, Experiment, mean_spread
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
    polynomial_spec,
    run,
    run_all,
    transfer_spec,
)

__all__ = [
    "EXPERIMENTS",
    "ONTOLOGY_DATA",
    "ONTOLOGY_TRAIN",
    "Claim",
    "Experiment",
    "RunResult",
    "RunSpec",
    "copy_spec",
    "finished",
    "get_experiment",
    "mean_spread",
    "ontology_model_config",
    "polynomial_spec",
    "reproduce",
    "run",
    "run_all",
    "train_ontology",
    "transfer_spec",
]
