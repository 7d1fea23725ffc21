"""Training and evaluation: the masked chain-of-thought loss, run directories that resume
exactly, and the paper's metrics, which detection shares (docs/paper.md §4, §6).

* :mod:`~iteration_heads.training.loop`: :func:`train` and :class:`TrainConfig`;
* :mod:`~iteration_heads.training.recipe`: the library's recipe (two heads per layer, Adam 1e-3
  with a 200-step warm-up), :func:`recipe_model_config` and :func:`recipe_train_config`;
* :mod:`~iteration_heads.training.batched`: :func:`train_seeds`, several seeds of one
  configuration stacked in one process (``torch.func.vmap``), each equal to its separate run;
* :mod:`~iteration_heads.training.run_dir`: the files of a run directory and its lock;
* :mod:`~iteration_heads.training.resume`: crash-safe checkpoints to resume from;
* :mod:`~iteration_heads.training.budget`: the memory a run needs, checked before it starts;
* :mod:`~iteration_heads.training.evaluation`: :func:`evaluate` and :class:`Evaluation`;
* :mod:`~iteration_heads.training.ontology_evaluation`: accuracy on the ontology task per hop
  and subtask (:func:`evaluate_ontology`);
* :mod:`~iteration_heads.training.metrics`: target weights, peakiness and the targets of a run.
"""

from iteration_heads._io import CHECKPOINT_DIR, HISTORY_FILE, RUN_FILE
from iteration_heads.training.batched import train_seeds
from iteration_heads.training.evaluation import Evaluation, evaluate, evaluation_records
from iteration_heads.training.loop import (
    TrainConfig,
    cot_loss,
    train,
    trainable_parameters,
)
from iteration_heads.training.metrics import (
    ACCURACY_TARGET,
    PEAK_THRESHOLD,
    PEAKINESS_TARGET,
    SUMMARY_MIN_LEN,
    HeadScores,
    has_iteration_head,
    reaches_accuracy,
    score_heads,
    target_weights,
)
from iteration_heads.training.ontology_evaluation import OntologyEvaluation, evaluate_ontology
from iteration_heads.training.recipe import (
    RECIPE_HEADS_PER_LAYER,
    RECIPE_LR,
    RECIPE_WARMUP_STEPS,
    recipe_model_config,
    recipe_train_config,
)
from iteration_heads.training.run_dir import history_summary, read_history

__all__ = [
    "ACCURACY_TARGET",
    "CHECKPOINT_DIR",
    "HISTORY_FILE",
    "PEAKINESS_TARGET",
    "PEAK_THRESHOLD",
    "RECIPE_HEADS_PER_LAYER",
    "RECIPE_LR",
    "RECIPE_WARMUP_STEPS",
    "RUN_FILE",
    "SUMMARY_MIN_LEN",
    "Evaluation",
    "HeadScores",
    "OntologyEvaluation",
    "TrainConfig",
    "cot_loss",
    "evaluate",
    "evaluate_ontology",
    "evaluation_records",
    "has_iteration_head",
    "history_summary",
    "reaches_accuracy",
    "read_history",
    "recipe_model_config",
    "recipe_train_config",
    "score_heads",
    "target_weights",
    "train",
    "train_seeds",
    "trainable_parameters",
]
