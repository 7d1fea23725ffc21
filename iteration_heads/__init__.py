"""iteration_heads: mechanistic interpretability of chain-of-thought with TransformerLens.

Reproduces "Iteration Head: A Mechanistic Study of Chain-of-Thought" (Cabannes et al., 2024).
"""

from iteration_heads import zoo as zoo  # the shipped models: ih.zoo.load(name)
from iteration_heads.checkpoint import load, save
from iteration_heads.data import DataConfig, Dataset, Split, encode, make_dataset
from iteration_heads.detect import detect
from iteration_heads.errors import IterationHeadsError
from iteration_heads.evaluate import Evaluation, evaluate
from iteration_heads.html_report import report_html, write_report
from iteration_heads.interventions import Effect, ablate, ablation_effect
from iteration_heads.layout import TokenLayout
from iteration_heads.model import (
    ModelConfig,
    build_model,
    count_parameters,
    model_config,
    paper_parameter_count,
)
from iteration_heads.patching import (
    ActivationPatching,
    PathPatching,
    activation_patching,
    corrupt,
    path_patch,
)
from iteration_heads.patterns import patch_pattern, pattern_effect
from iteration_heads.plots import (
    AttentionView,
    ablation_chart,
    attention_heatmap,
    attention_view,
    detection_heatmap,
    patching_heatmap,
    save_html,
    save_png,
    scaling_grid,
    training_curves,
)
from iteration_heads.probes import Probes
from iteration_heads.report import DetectionReport
from iteration_heads.shift import PositionShift, position_shift
from iteration_heads.tasks import Task, get_task, list_tasks, register_task
from iteration_heads.train import TrainConfig, train
from iteration_heads.verification import Verification, verify

__version__ = "0.1.0"

__all__ = [
    "ActivationPatching",
    "AttentionView",
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
    "ablation_chart",
    "ablation_effect",
    "activation_patching",
    "attention_heatmap",
    "attention_view",
    "build_model",
    "corrupt",
    "count_parameters",
    "detect",
    "detection_heatmap",
    "encode",
    "evaluate",
    "get_task",
    "list_tasks",
    "load",
    "make_dataset",
    "model_config",
    "paper_parameter_count",
    "patch_pattern",
    "patching_heatmap",
    "path_patch",
    "pattern_effect",
    "position_shift",
    "register_task",
    "report_html",
    "save",
    "save_html",
    "save_png",
    "scaling_grid",
    "train",
    "training_curves",
    "verify",
    "write_report",
]
