"""Pathways of chain-of-thought reasoning in any TransformerLens model (Dutta et al.'s analyses,
docs/guide/pathways.md): which heads matter for each subtask, the smallest circuit that keeps the
model's answers, which heads write the answer, where the in-context answer overtakes the prior,
how information flows to the answer, and how much comes from each part of the prompt.

* :mod:`~iteration_heads.pathways.prompts`: the prompts every analysis takes;
* :mod:`~iteration_heads.pathways.records`: prompts from your own data, text through any
  tokenizer or token ids (:func:`prompts_from_records`);
* :mod:`~iteration_heads.pathways.text_ontology`: natural-language PrOntoQA prompts through any
  tokenizer, and the zoo's ontology problems as text (:func:`prontoqa_prompts`);
* :mod:`~iteration_heads.pathways.text_iteration`: the paper's tasks written as text through a
  model's tokenizer, as prompt records (:func:`iteration_records`);
* :mod:`~iteration_heads.pathways.solved`: the prompts a model solves, by step or whole
  sequence (:func:`solved_prompts`);
* :mod:`~iteration_heads.pathways.jsonl`: prompts as JSON Lines files (:func:`read_prompts`,
  :func:`write_prompts`);
* :mod:`~iteration_heads.pathways.restoration`: per-head activation patching with KL and
  logit-difference scores per subtask (:func:`head_patching`);
* :mod:`~iteration_heads.pathways.attribution`: attribution patching, the fast first-order path
  of head patching (``head_patching(method="attribution")``, :func:`choose_method`);
* :mod:`~iteration_heads.pathways.pruning`: mean-ablation pruning curves against random heads,
  and the causal check of named heads (:func:`pruning_curve`, :func:`ablation_check`);
* :mod:`~iteration_heads.pathways.pruning_attribution`: pruning curves estimated by attribution,
  with the final circuit checked exactly (:func:`linear_pruning_curve`);
* :mod:`~iteration_heads.pathways.pruning_bisection`: the smallest circuit found by bisection
  over k, every point exact (:func:`bisected_pruning_curve`);
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
  of each segment (:func:`trace_many`, :func:`segment_pathways`);
* :mod:`~iteration_heads.pathways.probing`: probes of how two words are related, per layer,
  on held-out words against a control task (:func:`relation_probes`), on the word pairs of
  :mod:`~iteration_heads.pathways.probing_pairs` (:func:`relation_pairs`; natural-language
  PrOntoQA through any tokenizer: :func:`prontoqa_pairs`);
* :mod:`~iteration_heads.pathways.horizon`: the horizon experiment, one fact corrupted and each
  layer fed the corrupted run while the chain of thought is regenerated from each prefix
  (:func:`horizon_patching`, :func:`corrupt_fact`), on the patched greedy generation of
  :mod:`~iteration_heads.pathways.generation` (:func:`patched_generation`,
  :func:`patched_logits`).
"""

from iteration_heads.pathways.attribution import (
    choose_method,
    exact_cost,
    transformer_lens_estimates,
)
from iteration_heads.pathways.flow import FlowEdge, FlowGraph, FlowNode, trace_flow, trace_flows
from iteration_heads.pathways.generation import patched_generation, patched_logits
from iteration_heads.pathways.horizon import HorizonPatching, corrupt_fact, horizon_patching
from iteration_heads.pathways.jsonl import read_prompts, records_from_prompts, write_prompts
from iteration_heads.pathways.noising import noising_check
from iteration_heads.pathways.probing import RelationProbes, fit_relation_probes, relation_probes
from iteration_heads.pathways.probing_pairs import (
    RelationPairs,
    ontology_pairs,
    prontoqa_pairs,
    relation_pairs,
)
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
    pruning_sweep,
)
from iteration_heads.pathways.pruning_attribution import LinearPruningCurve, linear_pruning_curve
from iteration_heads.pathways.pruning_bisection import bisected_pruning_curve
from iteration_heads.pathways.random_control import (
    AblationCheck,
    all_heads,
    mean_by_label,
    random_head_sets,
)
from iteration_heads.pathways.records import prompts_from_records
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
from iteration_heads.pathways.solved import (
    SequenceAccuracy,
    sequence_accuracy,
    solved_prompts,
    step_accuracy,
)
from iteration_heads.pathways.text_iteration import iteration_records
from iteration_heads.pathways.text_ontology import (
    ontology_records,
    ontology_text,
    ontology_tokenizer,
    prontoqa_prompts,
    prontoqa_records,
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
    "HorizonPatching",
    "LinearPruningCurve",
    "LogitLens",
    "Prompts",
    "PruningCurve",
    "RelationPairs",
    "RelationProbes",
    "Rift",
    "SegmentPathways",
    "SequenceAccuracy",
    "ablation_check",
    "all_heads",
    "answer_writers",
    "bisected_pruning_curve",
    "choose_method",
    "context_free_prior",
    "corrupt_fact",
    "exact_cost",
    "fit_relation_probes",
    "head_patching",
    "horizon_patching",
    "iteration_prompts",
    "iteration_records",
    "knockout_hooks",
    "knockout_mask",
    "knockout_pattern",
    "lens_logits",
    "linear_pruning_curve",
    "logit_lens",
    "mean_by_label",
    "noising_check",
    "ontology_pairs",
    "ontology_prompts",
    "ontology_records",
    "ontology_steps",
    "ontology_text",
    "ontology_tokenizer",
    "patched_generation",
    "patched_logits",
    "prompts_from_records",
    "prontoqa_pairs",
    "prontoqa_prompts",
    "prontoqa_records",
    "pruned_logits",
    "pruned_predictions",
    "pruning_curve",
    "pruning_sweep",
    "random_head_sets",
    "read_prompts",
    "records_from_prompts",
    "relation_pairs",
    "relation_probes",
    "rift_layer",
    "segment_pathways",
    "sequence_accuracy",
    "solved_prompts",
    "step_accuracy",
    "trace_flow",
    "trace_flows",
    "trace_many",
    "transformer_lens_estimates",
    "write_prompts",
]
