"""Accuracy of a library model on ontology problems: exact match of the chain of thought per
hop count, the True/False answer, and token accuracy per subtask (decision, copy, induction).

Teacher-forced exact match over the whole chain of thought equals greedy decoding's exact match:
if every next token is right given the gold prefix, greedy decoding writes the gold chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import without_gradients
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.fast_forward import Weights, forward
from iteration_heads.model.transformer import model_config
from iteration_heads.tasks.data import IGNORE
from iteration_heads.tasks.ontology import SUBTASKS, OntologyProblems
from iteration_heads.tasks.task import check_int


@dataclass(frozen=True, repr=False)
class OntologyEvaluation(Result):
    """Per-problem correctness on a set of ontology problems.

    Attributes:
        exact: Every chain-of-thought token right, per problem.
        answer: The True/False answer right, per problem.
        hops: Hops of each problem.
        token_right: Right predictions per subtask (indexed like :data:`SUBTASKS`).
        token_total: Scored predictions per subtask.
        loss: Mean cross-entropy over every scored token.
    """

    exact: Bool[Tensor, " n"]
    answer: Bool[Tensor, " n"]
    hops: Int[Tensor, " n"]
    token_right: Int[Tensor, " subtask"]
    token_total: Int[Tensor, " subtask"]
    loss: float

    def per_hop(self) -> dict[int, float]:
        """Exact-match accuracy for each hop count."""
        return {
            int(h): float(self.exact[self.hops == h].float().mean())
            for h in sorted(set(self.hops.tolist()))
        }

    def per_subtask(self) -> dict[str, float]:
        """Token accuracy for each subtask present."""
        return {
            name: float(self.token_right[i] / self.token_total[i])
            for i, name in enumerate(SUBTASKS)
            if self.token_total[i] > 0
        }

    def summary(self) -> dict[str, Any]:
        """The figures training logs: ``accuracy`` (exact match), ``answer_accuracy``,
        ``loss``, ``per_hop`` and ``per_subtask``."""
        return {
            "accuracy": float(self.exact.float().mean()),
            "answer_accuracy": float(self.answer.float().mean()),
            "loss": self.loss,
            "per_hop": {str(h): v for h, v in self.per_hop().items()},
            "per_subtask": self.per_subtask(),
            "n": len(self.exact),
        }

    def to_dict(self) -> dict[str, Any]:
        """The record of one evaluation (``summary`` only: per-problem values stay here)."""
        return {"summary": self.summary()}

    def format(self) -> str:
        """One line per hop count and one for the subtasks."""
        s = self.summary()
        hops = ", ".join(f"{h} hops {v:.3f}" for h, v in s["per_hop"].items())
        subtasks = ", ".join(f"{k} {v:.3f}" for k, v in s["per_subtask"].items())
        return (
            f"ontology: exact match {s['accuracy']:.3f}, answer {s['answer_accuracy']:.3f} "
            f"({s['n']} problems)\n  per hop: {hops}\n  per subtask (tokens): {subtasks}"
        )


def evaluate_ontology(
    model: torch.nn.Module, problems: OntologyProblems, *, batch_size: int = 512
) -> OntologyEvaluation:
    """Teacher-forced accuracy of a library model on ontology problems.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> from iteration_heads.tasks.ontology import OntologyConfig, make_ontology_problems
        >>> problems = make_ontology_problems(OntologyConfig(hops=(1, 2)), 16)
        >>> model = build_model(ModelConfig(d_model=32, d_vocab_=problems.vocab.size, n_ctx_=64))
        >>> result = evaluate_ontology(model, problems)
        >>> sorted(result.per_hop()), result.summary()["accuracy"]
        ([1, 2], 0.0)
    """
    check_int("batch_size", batch_size, minimum=1)
    if not isinstance(problems, OntologyProblems):
        raise IterationHeadsError(
            f"problems must be OntologyProblems, got {type(problems).__name__}"
        )
    config = model_config(model)
    if problems.tokens.shape[1] > config.n_ctx:
        raise IterationHeadsError(
            f"problems of width {problems.tokens.shape[1]} exceed the model's n_ctx={config.n_ctx}"
        )
    if problems.vocab.size > config.d_vocab:
        raise IterationHeadsError(
            f"the ontology vocabulary has {problems.vocab.size} tokens, the model's d_vocab is "
            f"{config.d_vocab}"
        )
    weights = Weights.of(model, config)
    device = weights["embed.weight"].device
    exact, answer, losses = [], [], []
    right = torch.zeros(len(SUBTASKS), dtype=torch.long)
    total = torch.zeros(len(SUBTASKS), dtype=torch.long)
    answer_code = SUBTASKS.index("answer")
    with without_gradients():
        for index in torch.arange(len(problems)).split(batch_size):
            tokens = problems.tokens[index].to(device)
            targets = problems.targets[index].to(device)
            logits, _ = forward(weights, tokens)
            scored = targets != IGNORE
            hit = (logits.argmax(-1) == targets) & scored
            exact.append((hit | ~scored).all(1).cpu())
            codes = problems.subtasks[index].to(device)
            answer.append((hit & (codes == answer_code)).any(1).cpu())
            for code in range(len(SUBTASKS)):
                mask = codes == code
                right[code] += int((hit & mask).sum())
                total[code] += int(mask.sum())
            losses.append(F.cross_entropy(logits[scored], targets[scored], reduction="sum").cpu())
    loss = float(torch.stack(losses).sum() / total.sum())
    return OntologyEvaluation(
        torch.cat(exact), torch.cat(answer), problems.hops.clone(), right, total, round(loss, 6)
    )
