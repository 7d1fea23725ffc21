"""What an answer's logit is measured against: the whole vocabulary or the answer's foils.

A logit is only meaningful relative to others: direct logit attribution onto ``W_U[:, answer]``
alone credits a head that raises every logit. Centring on the vocabulary (``"vocab"``:
``u = W_U[:, answer] - mean_v W_U[:, v]``) removes a shift of every logit, but not a shift of
the few tokens the answer actually competes with (the other label, the other names of its
kind), which a head may write without telling them apart. Centring on the foils of
:class:`~iteration_heads.pathways.prompts.Prompts` (``"foils"``: ``u = W_U[:, answer] -
mean_{f in foils} W_U[:, f]``, valid foils only) scores a head by how much it favours the answer
over them. ``"auto"`` takes the foils when the prompts have them, else the vocabulary.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import check_token_ids
from iteration_heads.pathways.prompts import Prompts

Centre = Literal["auto", "vocab", "foils"]
CENTRES = ("auto", "vocab", "foils")
"""The values of the ``centre`` option."""


def resolve_centre(centre: str, prompts: Prompts, d_vocab: int) -> Literal["vocab", "foils"]:
    """``"vocab"`` or ``"foils"`` for the option ``centre`` and these prompts, or a one-line
    error (an unknown option, ``"foils"`` for prompts without foils, a foil outside the
    vocabulary).

    Example:
        >>> p = Prompts(torch.tensor([[1, 2]]), None, torch.tensor([1]), torch.tensor([3]),
        ...             torch.tensor([[0, 0]]), ("s",), ("a",), foils=torch.tensor([[4, -1]]))
        >>> resolve_centre("auto", p, 8), resolve_centre("vocab", p, 8)
        ('foils', 'vocab')
    """
    if not isinstance(centre, str) or centre not in CENTRES:
        raise IterationHeadsError(f"centre={centre!r}, expected one of {list(CENTRES)}")
    if prompts.foils is None:
        if centre == "foils":
            raise IterationHeadsError(
                "centre='foils' needs prompts with foils (Prompts.foils is None); pass "
                "centre='vocab' or give the prompts their foils"
            )
        return "vocab"
    if centre == "vocab":
        return "vocab"
    foils = prompts.foils
    if bool((foils < -1).any()):
        raise IterationHeadsError(
            f"foil token {int(foils.min())}, expected ids >= 0 (or -1 for padding)"
        )
    check_token_ids(foils.clamp(min=0), d_vocab, "foil token")
    return "foils"


def competitor_weights(
    answer: Int[Tensor, " b"], foils: Int[Tensor, "b k"] | None, d_vocab: int
) -> Float[Tensor, "b vocab"]:
    """Per prompt, the weights of the mean the answer is centred on: ``1 / d_vocab`` on every
    token without foils, ``1 / (valid foils)`` on each valid foil (``>= 0``) with them. The
    centred answer logit is ``logits[answer] - weights @ logits``.

    Example:
        >>> competitor_weights(torch.tensor([0]), torch.tensor([[2, 3, -1]]), 4).tolist()
        [[0.0, 0.0, 0.5, 0.5]]
        >>> competitor_weights(torch.tensor([0]), None, 4).tolist()
        [[0.25, 0.25, 0.25, 0.25]]
    """
    if foils is None:
        return torch.full((len(answer), d_vocab), 1.0 / d_vocab)
    valid = (foils >= 0).float()
    weights = torch.zeros(len(answer), d_vocab)
    weights.scatter_add_(1, foils.clamp(min=0).long(), valid)
    return weights / weights.sum(1, keepdim=True)


def centred_logit(
    logits: Float[Tensor, "b vocab"],
    answer: Int[Tensor, " b"],
    foils: Int[Tensor, "b k"] | None = None,
) -> Float[Tensor, " b"]:
    """``logits[answer] - mean(logits[foils])`` (valid foils), or ``- mean(logits)`` without
    foils.

    Example:
        >>> logits = torch.tensor([[4.0, 1.0, 2.0, 0.0]])
        >>> centred_logit(logits, torch.tensor([0]), torch.tensor([[1, 2]])).item()
        2.5
        >>> centred_logit(logits, torch.tensor([0])).item()
        2.25
    """
    weights = competitor_weights(
        answer.cpu(), None if foils is None else foils.cpu(), logits.shape[-1]
    )
    weights = weights.to(logits.device, logits.dtype)
    rows = torch.arange(len(answer), device=logits.device)
    return logits[rows, answer.to(logits.device)] - (weights * logits).sum(-1)


def rival_tokens(token: int, answer: int, foils: Int[Tensor, " k"]) -> list[int]:
    """The tokens a traced ``token`` is centred on with foils: the answer and its valid foils,
    ``token`` itself left out (a prediction of a foil is measured against the answer).

    Example:
        >>> rival_tokens(5, 5, torch.tensor([6, 7, -1])), rival_tokens(6, 5, torch.tensor([6, 7]))
        ([6, 7], [5, 7])
    """
    found = dict.fromkeys([answer, *(int(f) for f in foils.tolist() if f >= 0)])
    return [t for t in found if t != token and t >= 0]
