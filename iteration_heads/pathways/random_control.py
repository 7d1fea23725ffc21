"""The random control of a causal check: named heads knocked out against as many random other
heads, and the result both checks report (:func:`~iteration_heads.pathways.pruning.ablation_check`
mean-ablates, :func:`~iteration_heads.pathways.noising.noising_check` feeds the corrupted prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from iteration_heads._results import Result, plain
from iteration_heads._torch import Head, check_heads, head_names
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.tasks.task import check_int


def all_heads(model: Any) -> list[Head]:
    """Every ``(layer, head)`` of a model, layer by layer.

    Example:
        >>> from iteration_heads import zoo
        >>> all_heads(zoo.load("polynomial_3x2"))[:3]
        [(0, 0), (0, 1), (1, 0)]
    """
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    return [(layer, head) for layer in range(n_layers) for head in range(n_heads)]


def random_head_sets(
    model: Any, heads: Sequence[Head], *, n_random: int, seed: int
) -> tuple[list[Head], list[tuple[Head, ...]]]:
    """The named heads (checked) and ``n_random`` seeded draws of as many other heads each,
    or a clear error when there are fewer other heads than named ones.

    Example:
        >>> from iteration_heads import zoo
        >>> random_head_sets(zoo.load("polynomial_paper"), [(1, 0)], n_random=2, seed=0)
        ([(1, 0)], [((0, 0),), ((0, 0),)])
    """
    named = check_heads(model, heads)
    others = [h for h in all_heads(model) if h not in named]
    if len(others) < len(named):
        raise IterationHeadsError(
            f"{len(named)} heads named but only {len(others)} other heads to draw from: "
            "the random control needs as many"
        )
    check_int("n_random", n_random, minimum=1)
    check_int("seed", seed, minimum=0)
    generator = torch.Generator().manual_seed(seed)
    picks = [torch.randperm(len(others), generator=generator) for _ in range(n_random)]
    return named, [tuple(sorted(others[i] for i in p[: len(named)].tolist())) for p in picks]


def mean_by_label(values: Tensor, labels: Sequence[str]) -> dict[str, Tensor]:
    """Label -> the mean of ``values`` ``[variant, n]`` over that label's prompts.

    Example:
        >>> mean_by_label(torch.tensor([[1.0, 0.0, 1.0]]), ["a", "b", "a"])
        {'a': tensor([1.]), 'b': tensor([0.])}
    """
    rows = {label: torch.tensor([x == label for x in labels]) for label in dict.fromkeys(labels)}
    return {label: values[:, r].mean(-1) for label, r in rows.items()}


@dataclass(frozen=True, repr=False)
class AblationCheck(Result):
    """The causal check of named heads: ablating them against ablating as many random others.

    Attributes:
        heads: The named heads; ``random_heads``: the heads of every random draw.
        agreement, accuracy: With the named heads mean-ablated.
        random_agreement, random_accuracy: With each random draw ablated ``[draw]``.
        agreement_by_label, random_agreement_by_label: The same per label.
        full_accuracy: The full model's accuracy; ``labels``: the label of every prompt.
        method: How the heads were knocked out (``"mean-ablating"``, ``"noising"``).
    """

    heads: tuple[Head, ...]
    random_heads: tuple[tuple[Head, ...], ...]
    agreement: float
    accuracy: float
    random_agreement: Float[Tensor, " draw"]
    random_accuracy: Float[Tensor, " draw"]
    agreement_by_label: dict[str, float]
    random_agreement_by_label: dict[str, Float[Tensor, " draw"]]
    full_accuracy: float
    labels: tuple[str, ...]
    method: str = "mean-ablating"

    @property
    def exceeded(self) -> float:
        """The fraction of random draws that keep more agreement than the named heads."""
        return float((self.random_agreement > self.agreement).float().mean())

    @property
    def breaks_more_than_every(self) -> bool:
        """Ablating the named heads breaks the task more than every random draw."""
        return self.exceeded == 1.0

    @property
    def breaks_more_than_most(self) -> bool:
        """... more than most (over half of the) random draws."""
        return self.exceeded > 0.5

    @property
    def p_value(self) -> float:
        """``(1 + draws with agreement <= named) / (1 + draws)``: a permutation p-value."""
        low = int((self.random_agreement <= self.agreement).sum())
        return (1 + low) / (1 + len(self.random_agreement))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        names = ["heads", "random_heads", "agreement", "accuracy", "random_agreement"]
        names += ["random_accuracy", "agreement_by_label", "random_agreement_by_label"]
        return plain(
            {name: getattr(self, name) for name in (*names, "full_accuracy")}
            | {"exceeded": self.exceeded, "p_value": self.p_value}
        )

    def format(self) -> str:
        """The verdict, then agreement per label against the random draws' mean."""
        r = self.random_agreement
        most = "every random draw" if self.breaks_more_than_every else "most random draws"
        does = "breaks" if self.breaks_more_than_most else "does not break"
        verdict = f"{does} the task more than {most}"
        lines = [
            f"{self.method} {head_names(self.heads)}: {verdict} ({self.exceeded:.0%} of "
            f"{len(r)} draws keep more agreement, p = {self.p_value:.3f}): agreement "
            f"{self.agreement:.3f}, accuracy {self.accuracy:.3f} (full {self.full_accuracy:.3f});"
            f" random {len(self.heads)} heads: agreement {float(r.mean()):.3f} "
            f"(min {float(r.min()):.3f}), accuracy {float(self.random_accuracy.mean()):.3f}"
        ]
        for label, value in self.agreement_by_label.items():
            rand = self.random_agreement_by_label[label]
            lines.append(f"  {label}: agreement {value:.3f}, random {float(rand.mean()):.3f}")
        return "\n".join(lines)

    @classmethod
    def of(
        cls,
        named: Sequence[Head],
        draws: Sequence[tuple[Head, ...]],
        predictions: Int[Tensor, "variant n"],
        reference_top: Int[Tensor, " n"],
        prompts: Prompts,
        method: str = "mean-ablating",
    ) -> AblationCheck:
        """The check from the top-1 ``predictions`` of the named set (row 0) and of each random
        draw, against the unchanged model's top-1 ``reference_top``."""
        agree = (predictions == reference_top).float()
        correct = (predictions == prompts.answer).float()
        by_label = mean_by_label(agree, prompts.labels)
        return cls(
            heads=tuple(sorted(named)),
            random_heads=tuple(draws),
            agreement=float(agree[0].mean()),
            accuracy=float(correct[0].mean()),
            random_agreement=agree[1:].mean(-1),
            random_accuracy=correct[1:].mean(-1),
            agreement_by_label={label: float(v[0]) for label, v in by_label.items()},
            random_agreement_by_label={label: v[1:] for label, v in by_label.items()},
            full_accuracy=float((reference_top == prompts.answer).float().mean()),
            labels=tuple(prompts.labels),
            method=method,
        )
