"""Pathways of chain-of-thought reasoning in any TransformerLens model (Dutta et al.'s analyses,
docs/guide/pathways.md): which heads matter for each subtask, the smallest circuit that keeps the
model's answers, which heads write the answer, where the in-context answer overtakes the prior,
how information flows to the answer, and how much comes from each part of the prompt.

* :mod:`~iteration_heads.pathways.prompts`: the prompts every analysis takes.
"""

from iteration_heads.pathways.prompts import (
    ITERATION_SEGMENTS,
    ONTOLOGY_SEGMENTS,
    Prompts,
    iteration_prompts,
    ontology_prompts,
)

__all__ = [
    "ITERATION_SEGMENTS",
    "ONTOLOGY_SEGMENTS",
    "Prompts",
    "iteration_prompts",
    "ontology_prompts",
]
