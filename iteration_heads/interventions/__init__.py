"""Causal interventions on attention heads: ablation, planted patterns, corrupted inputs,
activation and path patching, the position shift, and the causal check of a detected circuit
(docs/paper.md §5). Every one works on native and HuggingFace-wrapped TransformerLens models and
leaves the model as it found it (mode and hooks), also after an error.

* :mod:`~iteration_heads.interventions.batch`: the data every intervention takes;
* :mod:`~iteration_heads.interventions.scores`: scores, metrics and :class:`Effect`;
* :mod:`~iteration_heads.interventions.ablation`: :func:`ablate`, :func:`ablation_effect`;
* :mod:`~iteration_heads.interventions.many_ablations`: many head sets in pooled passes (what
  :func:`verify` runs);
* :mod:`~iteration_heads.interventions.patterns`: :func:`patch_pattern`, :func:`pattern_effect`;
* :mod:`~iteration_heads.interventions.corruptions`: :func:`corrupt`;
* :mod:`~iteration_heads.interventions.patching`: :func:`activation_patching`;
* :mod:`~iteration_heads.interventions.paths`: :func:`path_patch`;
* :mod:`~iteration_heads.interventions.shift`: :func:`position_shift`;
* :mod:`~iteration_heads.interventions.verification`: :func:`verify`.
"""

from iteration_heads._torch import check_heads
from iteration_heads.interventions.ablation import (
    ABLATION_KINDS,
    ablate,
    ablation_effect,
    head_outputs,
)
from iteration_heads.interventions.batch import Batch, Data, as_batch
from iteration_heads.interventions.corruptions import CORRUPTION_KINDS, corrupt
from iteration_heads.interventions.patching import ActivationPatching, activation_patching
from iteration_heads.interventions.paths import PathPatching, path_patch
from iteration_heads.interventions.patterns import (
    PATTERN_KINDS,
    ideal_pattern,
    patch_pattern,
    pattern_effect,
)
from iteration_heads.interventions.scores import Effect, Scores, metric_fn, run_scored
from iteration_heads.interventions.shift import PositionShift, position_shift
from iteration_heads.interventions.verification import Verification, verify

__all__ = [
    "ABLATION_KINDS",
    "CORRUPTION_KINDS",
    "PATTERN_KINDS",
    "ActivationPatching",
    "Batch",
    "Data",
    "Effect",
    "PathPatching",
    "PositionShift",
    "Scores",
    "Verification",
    "ablate",
    "ablation_effect",
    "activation_patching",
    "as_batch",
    "check_heads",
    "corrupt",
    "head_outputs",
    "ideal_pattern",
    "metric_fn",
    "patch_pattern",
    "path_patch",
    "pattern_effect",
    "position_shift",
    "run_scored",
    "verify",
]
