"""Where one head looks at every step of the chain of thought: the weight its query before
``s_t`` puts on ``x_t`` (the iteration target) and, when that is low, the key it reads instead.

An iteration head puts nearly all its weight on ``x_t`` at every step. A model that solves the
task with an *alternative circuit* (high accuracy, iteration peakiness below the rule) usually
does so at most steps and reads something else at a few: EoI (which carries ``x_L``), the first
token (an attention sink), an earlier state. :func:`step_attention` names, per probe length and
step, the key with the largest mean weight, by role: ``x_j``, ``s_j``, ``EoI``, ``first``
(position 0) or ``other``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import (
    Head,
    cached_run,
    check_heads,
    device_of,
    evaluating,
    pattern_hook,
    without_gradients,
)
from iteration_heads.detection.probes import Probes
from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.task import check_int

ON_TARGET = 0.5
"""A step whose weight on ``x_t`` is below this reads its state from elsewhere."""


@dataclass(frozen=True, repr=False)
class StepAttention(Result):
    """Per probe length ``L`` and step ``t``: the head's mean weight on ``x_t``, and the role of
    the key it weights most on most probes of that length (``top_key``) with the mean weight of
    that key on those probes (``top_weight``).

    Example:
        >>> table = pd.DataFrame([{"length": 2, "step": 1, "on_input": 0.9, "top_key": "x_1",
        ...                        "top_weight": 0.9}])
        >>> StepAttention((1, 0), table).off_target()
        []
    """

    head: Head
    table: pd.DataFrame  # length, step, on_input, top_key, top_weight

    def off_target(self, threshold: float = ON_TARGET) -> list[tuple[int, int, str, float]]:
        """``(L, t, top key, its weight)`` of the steps whose weight on ``x_t`` is below
        ``threshold``."""
        rows = self.table[self.table.on_input < threshold]
        return [
            (int(r.length), int(r.step), str(r.top_key), round(float(r.top_weight), 2))
            for r in rows.itertuples()
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {"head": list(self.head), "steps": self.table.to_dict("records")}

    def format(self) -> str:
        """One line per length: the weight on ``x_t`` at each step, then the off-target steps."""
        layer, head = self.head
        lines = [f"L{layer}H{head}: weight on x_t at each step t (per length L)"]
        for length, rows in self.table.groupby("length"):
            weights = " ".join(f"{w:.2f}" for w in rows.on_input)
            lines.append(f"  L={length}: {weights}")
        off = self.off_target()
        if off:
            shown = "; ".join(f"L={n} t={t}: {key} ({w:.2f})" for n, t, key, w in off)
            lines.append(f"  elsewhere (weight on x_t < {ON_TARGET}): {shown}")
        else:
            lines.append(f"  every step puts >= {ON_TARGET} on x_t")
        return "\n".join(lines)


def key_role(probes: Probes, index: int, position: int) -> str:
    """The role of ``position`` in probe ``index``: ``x_j``, ``s_j``, ``EoI``, ``first``
    (position 0, when it is none of those) or ``other``.

    Example:
        >>> probes = Probes(torch.zeros(1, 7, dtype=torch.long), lengths=2)
        >>> [key_role(probes, 0, p) for p in range(7)]
        ['first', 'x_1', 'x_2', 'EoI', 's_1', 's_2', 'other']
    """
    n = int(probes.lengths[index])
    inputs = probes.input_positions[index, :n].tolist()
    states = probes.state_positions[index, :n].tolist()
    if position in inputs:
        return f"x_{inputs.index(position) + 1}"
    if position in states:
        return f"s_{states.index(position) + 1}"
    if position == int(probes.eoi[index]):
        return "EoI"
    return "first" if position == 0 else "other"


def step_attention(
    model: Any, probes: Probes, head: Head, *, batch_size: int = 256
) -> StepAttention:
    """Where ``head`` looks from the query before each state ``s_t``, per probe length.

    Args:
        model: A TransformerLens model.
        probes: Sequences and their positions (:class:`~iteration_heads.detection.probes.Probes`).
        head: ``(layer, head)``.
        batch_size: Most probes per forward pass.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> found = step_attention(model, Probes.from_model(model, task="copy", n=32), (1, 0))
        >>> sorted(set(found.table.length)), list(found.table.columns)
        ([1, 2, 3, 4], ['length', 'step', 'on_input', 'top_key', 'top_weight'])
    """
    check_int("batch_size", batch_size, minimum=1)
    ((layer, index),) = check_heads(model, [head])
    return steps_by_head(model, probes, [(layer, index)], batch_size=batch_size)[(layer, index)]


@without_gradients()
def steps_by_head(
    model: Any,
    probes: Probes,
    heads: Sequence[Head] | None = None,
    *,
    batch_size: int = 256,
) -> dict[Head, StepAttention]:
    """:func:`step_attention` of several heads (None: every head) from one pass over the probes.

    Example:
        >>> from iteration_heads import ModelConfig, build_model
        >>> model = build_model(ModelConfig(d_model=32, max_len=4))
        >>> sorted(steps_by_head(model, Probes.from_model(model, task="copy", n=8)))
        [(0, 0), (1, 0)]
    """
    check_int("batch_size", batch_size, minimum=1)
    if not isinstance(probes, Probes):
        raise IterationHeadsError(f"probes must be a Probes, got {type(probes).__name__}")
    if heads is None:
        n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
        heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    chosen = check_heads(model, list(heads))
    names = {pattern_hook(layer) for layer, _ in chosen}
    device = device_of(model)
    batches: list[dict[Head, Tensor]] = []
    with evaluating(model):
        for start in range(0, len(probes), batch_size):
            tokens = probes.tokens[start : start + batch_size].to(device)
            _, cache = cached_run(model, tokens, names_filter=lambda n: n in names)
            batches.append({(lay, h): cache[pattern_hook(lay)][:, h].float().cpu()
                            for lay, h in chosen})  # fmt: skip
    return {
        head: StepAttention(head, _step_table(probes, torch.cat([b[head] for b in batches])))
        for head in chosen
    }


def _step_table(probes: Probes, pattern: Float[Tensor, "probe query key"]) -> pd.DataFrame:
    """The rows of a :class:`StepAttention` from one head's attention on every probe."""
    rows = []
    for length in sorted(set(probes.lengths.tolist())):
        members = (probes.lengths == length).nonzero().flatten().tolist()
        for t in range(length):
            queries = probes.query_positions[members, t]
            read = pattern[members, queries]  # [probe, key]
            on_input = read[torch.arange(len(members)), probes.input_positions[members, t]]
            # each probe's most weighted key, by role (positions may differ between probes)
            weights, keys = read.max(-1)
            roles = [key_role(probes, b, int(k)) for b, k in zip(members, keys, strict=True)]
            top = Counter(roles).most_common(1)[0][0]
            picked = torch.tensor([role == top for role in roles])
            rows.append(
                {
                    "length": length,
                    "step": t + 1,
                    "on_input": float(on_input.mean()),
                    "top_key": top,
                    "top_weight": float(weights[picked].mean()),
                }
            )
    return pd.DataFrame(rows)
