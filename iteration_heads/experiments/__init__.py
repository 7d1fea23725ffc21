"""Experiments: the paper's experiments with their claims, the multi-hop (ontology) study, and
the reproduction that writes docs/results.md (docs/paper.md §7). Runs, sweeps and where they
train are the machinery below them, in :mod:`iteration_heads.runs`.

* :mod:`~iteration_heads.experiments.claims`: :class:`Experiment`, :class:`Claim`, the two arms
  every experiment runs in (the paper's setting and the library's recipe);
* one module per family of experiments, with its specs and claims:
  :mod:`~iteration_heads.experiments.emergence`, :mod:`~iteration_heads.experiments.controls`,
  :mod:`~iteration_heads.experiments.parity`, :mod:`~iteration_heads.experiments.scaling`,
  :mod:`~iteration_heads.experiments.alternative_circuits`;
* :mod:`~iteration_heads.experiments.registry`: :data:`EXPERIMENTS` by name;
* :mod:`~iteration_heads.experiments.reproduction`: :func:`reproduce` writes each experiment's
  records, :func:`rejudge` judges written records again with the current claims;
  :mod:`~iteration_heads.experiments.results_page` writes docs/results.md from them;
  :mod:`~iteration_heads.experiments.extending` adds seeds to written results;
* :mod:`~iteration_heads.experiments.ontology`: the multi-hop model (:func:`train_ontology`),
  :mod:`~iteration_heads.experiments.ontology_study` and
  :mod:`~iteration_heads.experiments.ontology_results` (its pathway study).
"""

from iteration_heads.experiments.claims import Claim, Experiment, mean_spread
from iteration_heads.experiments.ontology import (
    ONTOLOGY_DATA,
    ONTOLOGY_TRAIN,
    ontology_model_config,
    train_ontology,
)
from iteration_heads.experiments.registry import EXPERIMENTS, get_experiment
from iteration_heads.experiments.reproduction import rejudge, reproduce

__all__ = [
    "EXPERIMENTS",
    "ONTOLOGY_DATA",
    "ONTOLOGY_TRAIN",
    "Claim",
    "Experiment",
    "get_experiment",
    "mean_spread",
    "ontology_model_config",
    "rejudge",
    "reproduce",
    "train_ontology",
]
