"""Detection: does a model iterate with an iteration head, and which heads do it?
(docs/paper.md §5-§6)

* :mod:`~iteration_heads.detection.probes`: probe sequences with the positions of their parts
  (and their targets), in any vocabulary;
* :mod:`~iteration_heads.detection.detector`: :func:`detect`, the rules in words;
* :mod:`~iteration_heads.detection.scoring`: every head's scores and the decision rule;
* :mod:`~iteration_heads.detection.verdict`: the circuit, partial patterns and the verdict;
* :mod:`~iteration_heads.detection.report`: :class:`DetectionReport`, what :func:`detect` returns;
* :mod:`~iteration_heads.detection.per_step`: where one head looks at every step (the
  alternative circuits of models that solve the task without a clean iteration head).
"""

from iteration_heads.detection.detector import detect
from iteration_heads.detection.per_step import StepAttention, step_attention, steps_by_head
from iteration_heads.detection.probes import Probes, spread_over_lengths
from iteration_heads.detection.report import Circuit, DetectionReport, IterationHeads
from iteration_heads.detection.scoring import (
    ALIGNMENTS,
    BASELINE_MARGIN,
    MIN_PARTIAL_SUPPORT,
    MIN_PEAKINESS,
    MIN_STATE_SENSITIVITY,
)

__all__ = [
    "ALIGNMENTS",
    "BASELINE_MARGIN",
    "MIN_PARTIAL_SUPPORT",
    "MIN_PEAKINESS",
    "MIN_STATE_SENSITIVITY",
    "Circuit",
    "DetectionReport",
    "IterationHeads",
    "Probes",
    "StepAttention",
    "detect",
    "spread_over_lengths",
    "step_attention",
    "steps_by_head",
]
