"""Tasks, their token layout and datasets: what a model learns (docs/paper.md §1-§2).

* :mod:`~iteration_heads.tasks.task`: iterative problems ``s_t = F(s_{t-1}, x_t)`` and their
  registry;
* :mod:`~iteration_heads.tasks.layout`: the vocabulary and where each token of a chain of thought
  sits;
* :mod:`~iteration_heads.tasks.data`: train and test splits, batches, encoding;
* :mod:`~iteration_heads.tasks.ontology`: multi-hop reasoning over fictional ontologies, every
  chain-of-thought target tagged with its subtask and source.
"""

from iteration_heads.tasks.data import IGNORE, DataConfig, Dataset, Split, encode, make_dataset
from iteration_heads.tasks.layout import TokenLayout
from iteration_heads.tasks.task import Task, get_task, list_tasks, register_task

__all__ = [
    "IGNORE",
    "DataConfig",
    "Dataset",
    "Split",
    "Task",
    "TokenLayout",
    "encode",
    "get_task",
    "list_tasks",
    "make_dataset",
    "register_task",
]
