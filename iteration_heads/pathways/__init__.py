"""Pathways of chain-of-thought reasoning in any TransformerLens model (Dutta et al.'s analyses,
docs/guide/pathways.md): which heads matter for each subtask, the smallest circuit that keeps the
model's answers, which heads write the answer, where the in-context answer overtakes the prior,
how information flows to the answer, and how much comes from each part of the prompt.

* :mod:`~iteration_heads.pathways.prompts`: the prompts every analysis takes;
* :mod:`~iteration_heads.pathways.restoration`: per-head activation patching with KL and
  logit-difference scores per subtask (:func:`head_patching`);
* :mod:`~iteration_heads.pathways.pruning`: mean-ablation pruning curves against random heads,
  and the causal check of named heads (:func:`pruning_curve`, :func:`ablation_check`);
* :mod:`~iteration_heads.pathways.noising`: the check that matches head patching, named heads
  fed the corrupted prompt against random ones (:func:`noising_check`);
* :mod:`~iteration_heads.pathways.random_control`: the random heads both checks compare with,
  and their result (:class:`AblationCheck`);
* :mod:`~iteration_heads.pathways.writers`: direct logit attribution of every head onto the
  answer, split by the segment it reads (:func:`answer_writers`);
* :mod:`~iteration_heads.pathways.rift`: the logit lens per layer, prior against in-context
  answer, and the rift (:func:`logit_lens`);
* :mod:`~iteration_heads.pathways.flow`: backward information-flow tracing, value and query
  sides (:func:`trace_flow`);
* :mod:`~iteration_heads.pathways.segments`: many traces aggregated, and attention knockouts
  of each segment (:func:`trace_many`, :func:`segment_pathways`).
"""

from iteration_heads.pathways.flow import FlowEdge, FlowGraph, FlowNode, trace_flow, trace_flows
from iteration_heads.pathways.noising import noising_check
from iteration_heads.pathways.prompts import (
    ITERATION_SEGMENTS,
    ONTOLOGY_SEGMENTS,
    Prompts,
    iteration_prompts,
    ontology_prompts,
    ontology_steps,
)
from iteration_heads.pathways.pruning import (
    PruningCurve,
    ablation_check,
    pruned_logits,
    pruned_predictions,
    pruning_curve,
)
from iteration_heads.pathways.random_control import (
    AblationCheck,
    all_heads,
    mean_by_label,
    random_head_sets,
)
from iteration_heads.pathways.restoration import HeadPatching, head_patching
from iteration_heads.pathways.rift import (
    LogitLens,
    Rift,
    context_free_prior,
    lens_logits,
    logit_lens,
    rift_layer,
)
from iteration_heads.pathways.segments import (
    FlowSummary,
    SegmentPathways,
    knockout_hooks,
    knockout_mask,
    knockout_pattern,
    segment_pathways,
    trace_many,
)
from iteration_heads.pathways.writers import AnswerWriters, answer_writers

__all__ = [
    "ITERATION_SEGMENTS",
    "ONTOLOGY_SEGMENTS",
    "AblationCheck",
    "AnswerWriters",
    "FlowEdge",
    "FlowGraph",
    "FlowNode",
    "FlowSummary",
    "HeadPatching",
    "LogitLens",
    "Prompts",
    "PruningCurve",
    "Rift",
    "SegmentPathways",
    "ablation_check",
    "all_heads",
    "answer_writers",
    "context_free_prior",
    "head_patching",
    "iteration_prompts",
    "knockout_hooks",
    "knockout_mask",
    "knockout_pattern",
    "lens_logits",
    "logit_lens",
    "mean_by_label",
    "noising_check",
    "ontology_prompts",
    "ontology_steps",
    "pruned_logits",
    "pruned_predictions",
    "pruning_curve",
    "random_head_sets",
    "rift_layer",
    "segment_pathways",
    "trace_flow",
    "trace_flows",
    "trace_many",
]
