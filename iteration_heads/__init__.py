"""iteration_heads: mechanistic interpretability of chain-of-thought with TransformerLens.

Reproduces "Iteration Head: A Mechanistic Study of Chain-of-Thought" (Cabannes et al., 2024;
docs/paper.md) and audits any TransformerLens model for the same circuit. The package follows
the pipeline: :mod:`~iteration_heads.tasks` → :mod:`~iteration_heads.model` →
:mod:`~iteration_heads.training` → :mod:`~iteration_heads.detection` →
:mod:`~iteration_heads.interventions` → :mod:`~iteration_heads.auditing` →
:mod:`~iteration_heads.pathways` → :mod:`~iteration_heads.viz` →
:mod:`~iteration_heads.runs` → :mod:`~iteration_heads.experiments`, with the shipped models in :mod:`~iteration_heads.zoo`.
The verbs and result types users call most are importable from here.

Importing the package is cheap: each name (and each namespace, ``ih.viz``) is imported on first
use (PEP 562), so ``import iteration_heads`` and ``iteration-heads --help`` do not load torch or
TransformerLens until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and readers see; at run time, __getattr__ below
    from iteration_heads import experiments as experiments  # the paper's experiments, reproduced
    from iteration_heads import pathways as pathways  # Dutta et al.'s analyses, on any model
    from iteration_heads import runs as runs  # runs, sweeps, executors (local, SLURM, Ray)
    from iteration_heads import viz as viz  # figures, attention views, the HTML report
    from iteration_heads import zoo as zoo  # the shipped models: ih.zoo.load(name)
    from iteration_heads.auditing import Audit, audit
    from iteration_heads.detection import DetectionReport, Probes, detect
    from iteration_heads.errors import IterationHeadsError
    from iteration_heads.interventions import (
        ActivationPatching,
        Effect,
        PathPatching,
        PositionShift,
        Verification,
        ablate,
        ablation_effect,
        activation_patching,
        corrupt,
        patch_pattern,
        path_patch,
        pattern_effect,
        position_shift,
        verify,
    )
    from iteration_heads.model import ModelConfig, build_model, load, save, wrap_hf_model
    from iteration_heads.tasks import (
        DataConfig,
        Dataset,
        Split,
        Task,
        TokenLayout,
        get_task,
        list_tasks,
        make_dataset,
        register_task,
    )
    from iteration_heads.training import (
        Evaluation,
        TrainConfig,
        evaluate,
        recipe_model_config,
        recipe_train_config,
        train,
    )

__version__ = "0.1.0"

__all__ = [
    "ActivationPatching",
    "Audit",
    "DataConfig",
    "Dataset",
    "DetectionReport",
    "Effect",
    "Evaluation",
    "IterationHeadsError",
    "ModelConfig",
    "PathPatching",
    "PositionShift",
    "Probes",
    "Split",
    "Task",
    "TokenLayout",
    "TrainConfig",
    "Verification",
    "ablate",
    "ablation_effect",
    "activation_patching",
    "audit",
    "build_model",
    "corrupt",
    "detect",
    "evaluate",
    "experiments",
    "get_task",
    "list_tasks",
    "load",
    "make_dataset",
    "patch_pattern",
    "path_patch",
    "pathways",
    "pattern_effect",
    "position_shift",
    "recipe_model_config",
    "recipe_train_config",
    "register_task",
    "runs",
    "save",
    "train",
    "verify",
    "viz",
    "wrap_hf_model",
    "zoo",
]

_SUBPACKAGES = frozenset({"experiments", "pathways", "runs", "viz", "zoo"})
_EXPORTS = {
    "auditing": "Audit audit",
    "detection": "DetectionReport Probes detect",
    "errors": "IterationHeadsError",
    "interventions": "ActivationPatching Effect PathPatching PositionShift Verification ablate "
    "ablation_effect activation_patching corrupt patch_pattern path_patch pattern_effect "
    "position_shift verify",
    "model": "ModelConfig build_model load save wrap_hf_model",
    "tasks": "DataConfig Dataset Split Task TokenLayout get_task list_tasks make_dataset "
    "register_task",
    "training": "Evaluation TrainConfig evaluate recipe_model_config recipe_train_config train",
}
_HOMES = {name: home for home, names in _EXPORTS.items() for name in names.split()}
"""The subpackage each exported name is imported from, on first use."""


def __getattr__(name: str) -> Any:
    """The exported name ``name``, imported from its subpackage on first use (PEP 562)."""
    if name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _HOMES:
        value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
