"""Tasks, their token layout and datasets: what a model learns (docs/paper.md §1-§2).

* :mod:`~iteration_heads.tasks.task`: iterative problems ``s_t = F(s_{t-1}, x_t)`` and their
  registry;
* :mod:`~iteration_heads.tasks.layout`: the vocabulary and where each token of a chain of thought
  sits;
* :mod:`~iteration_heads.tasks.data`: train and test splits, batches, encoding;
* :mod:`~iteration_heads.tasks.ontology`: multi-hop reasoning over fictional ontologies, every
  chain-of-thought target tagged with its subtask and source;
* :mod:`~iteration_heads.tasks.ontology_world`: the fixed world a model memorises (its prior);
* :mod:`~iteration_heads.tasks.ontology_data`: training problems and held-out test splits;
* :mod:`~iteration_heads.tasks.prontoqa`: the same reasoning in English (PrOntoQA), every
  studied word of the chain of thought tagged with its subtask and source.
"""

from iteration_heads.tasks.data import IGNORE, DataConfig, Dataset, Split, encode, make_dataset
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.tasks.ontology import (
    PROBLEM_KINDS,
    SUBTASKS,
    OntologyConfig,
    OntologyProblems,
    OntologyVocab,
    make_ontology_problems,
)
from iteration_heads.tasks.ontology_data import (
    OntologyDataConfig,
    OntologyDataset,
    make_ontology_dataset,
)
from iteration_heads.tasks.ontology_world import World
from iteration_heads.tasks.prontoqa import (
    ProntoQAConfig,
    ProntoQAProblem,
    make_problem,
    make_prontoqa,
)
from iteration_heads.tasks.task import Task, get_task, list_tasks, register_task

__all__ = [
    "IGNORE",
    "PROBLEM_KINDS",
    "SUBTASKS",
    "DataConfig",
    "Dataset",
    "OntologyConfig",
    "OntologyDataConfig",
    "OntologyDataset",
    "OntologyProblems",
    "OntologyVocab",
    "ProntoQAConfig",
    "ProntoQAProblem",
    "Split",
    "Task",
    "TokenLayout",
    "World",
    "encode",
    "get_task",
    "list_tasks",
    "make_dataset",
    "make_ontology_dataset",
    "make_ontology_problems",
    "make_problem",
    "make_prontoqa",
    "register_task",
]
