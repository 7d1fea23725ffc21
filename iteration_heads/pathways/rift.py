"""Logit lens per layer, in-context answer against the model's prior: where is the "rift"?

Dutta et al. (§2.7 of their method) report that the first half of Llama-2's layers decode
tokens that follow the pretraining prior and the second half the in-context answer, with a
"functional rift" between. They give no algorithm; the recipe here follows their description:

1. :func:`logit_lens` reads the residual stream at each prompt's studied position at every
   layer boundary (``resid_pre`` of every block, then the final residual stream), through the
   model's final norm and unembedding (``cache.accumulated_resid(apply_ln=True)`` then
   ``W_U, b_U``: the last boundary gives the model's own logits). It records the probability
   and rank (0 = top; ties not counted) of the in-context answer and of a prior token.
2. The prior is the model's own "no-context" prediction (:func:`context_free_prior`): what it
   predicts from the first token and the last ``keep`` tokens alone.
3. :meth:`LogitLens.rift` is the first boundary from which the answer outranks the prior for at
   least half of the prompts and keeps doing so at every later boundary (:func:`rift_layer`),
   with a bootstrap confidence interval over prompts. Prompts whose prior *is* the answer
   cannot show the switch and are left out of that fraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import cached_run, device_of, evaluating, resid_pre_hook
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions.batch import check_token_ids, integer_tensor
from iteration_heads.memory import batch_rows, rows_per_pass
from iteration_heads.passes import shared_sequences
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.tasks.task import check_number

LENS_BATCH = 64
"""Prompts per forward pass of the logit lens."""

LENS_QUANTITIES = ("prob", "log_prob", "rank")
"""What :meth:`LogitLens.curve` averages, for the ``answer`` or the ``prior`` token."""


def rift_layer(outranks: Float[Tensor, " layer"], *, threshold: float = 0.5) -> int | None:
    """The first index from which ``outranks`` stays at or above ``threshold`` to the end.

    Example:
        >>> rift_layer(torch.tensor([0.1, 0.6, 0.4, 0.7, 0.9])), rift_layer(torch.tensor([0.9, 0.2]))
        (3, None)
    """
    check_number("threshold", threshold)
    if not isinstance(outranks, Tensor) or outranks.ndim != 1 or len(outranks) == 0:
        raise IterationHeadsError(
            f"outranks of shape {tuple(getattr(outranks, 'shape', ()))}, expected a non-empty "
            "1-D tensor (one fraction per layer boundary)"
        )
    below = (~(outranks >= threshold)).nonzero().flatten()  # NaN counts as below
    if len(below) == 0:
        return 0
    last = int(below[-1])
    return None if last == len(outranks) - 1 else last + 1


@dataclass(frozen=True, repr=False)
class Rift(Result):
    """Where the in-context answer overtakes the prior (see :meth:`LogitLens.rift`).

    Attributes:
        layer: The boundary index (None: never), ``boundary`` its name.
        low, high: Bootstrap confidence interval of the index over prompts, where "never"
            counts as ``n_boundaries``; ``never``: the share of resamples with no rift.
        n_prompts: The prompts whose prior differs from their answer.
    """

    layer: int | None
    boundary: str | None
    low: float
    high: float
    never: float
    n_boundaries: int
    n_prompts: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def format(self) -> str:
        """One line: the rift and its interval."""
        if self.n_prompts == 0:
            return "no rift measurable: every prompt's prior is its answer; 0 prompts"
        if self.layer is None:
            where = "no rift: the in-context answer never stays ahead of the prior"
        else:
            where = f"rift at boundary {self.layer} ({self.boundary})"
        return (
            f"{where}; 95% CI [{self.low:g}, {self.high:g}] ({self.n_boundaries} = never), "
            f"no rift in {self.never:.0%} of resamples; {self.n_prompts} prompts"
        )


@dataclass(frozen=True, repr=False)
class LogitLens(Result):
    """Answer and prior token read by the logit lens at every layer boundary.

    Attributes:
        boundaries: Names of the layer boundaries (``"0_pre"``, ..., ``"final_post"``).
        answer_log_prob, answer_rank: ``[boundary, n]`` for the in-context answer.
        prior_log_prob, prior_rank: The same for the prior token (None without a prior).
        answer, prior: The tokens ``[n]``.
        labels: The label of every prompt.
        n_boot, seed: Bootstrap resamples and their seed (every interval is reproducible).
    """

    boundaries: tuple[str, ...]
    answer_log_prob: Float[Tensor, "boundary n"]
    answer_rank: Int[Tensor, "boundary n"]
    prior_log_prob: Float[Tensor, "boundary n"] | None
    prior_rank: Int[Tensor, "boundary n"] | None
    answer: Int[Tensor, " n"]
    prior: Int[Tensor, " n"] | None
    labels: tuple[str, ...]
    n_boot: int = 1000
    seed: int = 0

    @property
    def groups(self) -> list[str]:
        """``"all"`` then every label, in order of first appearance."""
        return ["all", *dict.fromkeys(self.labels)]

    def _rows(self, label: str, informative: bool = False) -> Tensor:
        if label not in self.groups:
            raise IterationHeadsError(f"label {label!r}, expected one of {self.groups}")
        keep = torch.tensor([label in ("all", x) for x in self.labels], dtype=torch.bool)
        if informative:
            keep &= self._need_prior("the outrank fraction") != self.answer
        return keep.nonzero().flatten()

    def _need_prior(self, what: str) -> Tensor:
        if self.prior is None:
            raise IterationHeadsError(f"{what} needs a prior: call logit_lens(..., prior=...)")
        return self.prior

    def _resamples(self, n: int) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randint(0, max(n, 1), (self.n_boot, n), generator=generator)

    def _values(self, quantity: str) -> Tensor:
        token, _, what = quantity.partition("_")
        if token not in ("answer", "prior") or what not in LENS_QUANTITIES:
            allowed = [f"{t}_{q}" for t in ("answer", "prior") for q in LENS_QUANTITIES]
            raise IterationHeadsError(f"quantity {quantity!r}, expected one of {allowed}")
        if token == "prior":
            self._need_prior(f"quantity {quantity!r}")
        name = f"{token}_{'rank' if what == 'rank' else 'log_prob'}"
        values = getattr(self, name).float()
        return values.exp() if what == "prob" else values

    def curve(
        self, quantity: str = "answer_prob", label: str = "all", *, confidence: float = 0.95
    ) -> tuple[Float[Tensor, " boundary"], Float[Tensor, " boundary"], Float[Tensor, " boundary"]]:
        """Mean of ``quantity`` (``"answer_prob"``, ``"prior_rank"``, ...) over the label's
        prompts at every boundary, and its bootstrap ``confidence`` interval."""
        values = self._values(quantity)[:, self._rows(label)]
        samples = values[:, self._resamples(values.shape[1])].mean(-1).T  # [boot, boundary]
        tail = (1 - confidence) / 2
        low, high = torch.quantile(samples, torch.tensor([tail, 1 - tail]), dim=0)
        return values.mean(1), low, high

    def outranks(self, label: str = "all") -> Float[Tensor, " boundary"]:
        """Share of the label's prompts (those whose prior is not the answer) where the answer
        ranks strictly above the prior, at every boundary (NaN without such prompts)."""
        rows = self._rows(label, informative=True)
        assert self.prior_rank is not None
        return (self.answer_rank[:, rows] < self.prior_rank[:, rows]).float().mean(1)

    def rift(self, label: str = "all", *, confidence: float = 0.95) -> Rift:
        """The first boundary from which the answer outranks the prior for at least half of the
        prompts at every later boundary (:func:`rift_layer`), with a bootstrap interval."""
        rows = self._rows(label, informative=True)
        assert self.prior_rank is not None
        ahead = (self.answer_rank[:, rows] < self.prior_rank[:, rows]).float()
        n_b = len(self.boundaries)
        found = rift_layer(ahead.mean(1)) if len(rows) else None
        if len(rows):
            fractions = ahead[:, self._resamples(len(rows))].mean(-1).T  # [boot, boundary]
            layers = [rift_layer(f) for f in fractions]
            boot = torch.tensor([n_b if x is None else x for x in layers], dtype=torch.float)
            tail = (1 - confidence) / 2
            low = float(torch.quantile(boot, tail, interpolation="lower"))
            high = float(torch.quantile(boot, 1 - tail, interpolation="higher"))
            never = float((boot == n_b).float().mean())
        else:
            low = high = never = float("nan")
        boundary = None if found is None else self.boundaries[found]
        return Rift(found, boundary, low, high, never, n_b, len(rows))

    def curves(self, label: str = "all") -> pd.DataFrame:
        """One row per boundary: mean, ``_low`` and ``_high`` of every quantity, and
        ``outranks`` when there is a prior."""
        frame = pd.DataFrame({"boundary": list(self.boundaries)})
        tokens = ("answer", "prior") if self.prior is not None else ("answer",)
        for token in tokens:
            for what in LENS_QUANTITIES:
                mean, low, high = self.curve(f"{token}_{what}", label)
                frame[f"{token}_{what}"] = mean.numpy()
                frame[f"{token}_{what}_low"] = low.numpy()
                frame[f"{token}_{what}_high"] = high.numpy()
        if self.prior is not None:
            frame["outranks"] = self.outranks(label).numpy()
        return frame

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: the curves and the rift of every label."""
        return {
            "boundaries": list(self.boundaries),
            "n_prompts": len(self.labels),
            "labels": {
                label: {
                    "curves": self.curves(label).to_dict(orient="list"),
                    "rift": None if self.prior is None else self.rift(label).to_dict(),
                }
                for label in self.groups
            },
        }

    def format(self) -> str:
        """The answer's (and prior's) mean probability per boundary, and the rift per label."""
        lines = [f"logit lens: {len(self.labels)} prompts, boundaries {list(self.boundaries)}"]
        for label in self.groups:
            answer = self.curve("answer_prob", label)[0]
            text = f"  {label}: answer p " + " ".join(f"{v:.2f}" for v in answer.tolist())
            if self.prior is not None:
                prior = self.curve("prior_prob", label)[0]
                text += "; prior p " + " ".join(f"{v:.2f}" for v in prior.tolist())
                text += "; " + self.rift(label).format().split(";")[0]
            lines.append(text)
        return "\n".join(lines)


def lens_rows(model: Any, width: int) -> int:
    """Prompts per pass of the logit lens at ``width``: at most :data:`LENS_BATCH`, within the
    memory budget of a pass that caches the residual stream at every layer boundary
    (:func:`~iteration_heads.memory.rows_per_pass`).

    Example:
        >>> from iteration_heads import zoo
        >>> lens_rows(zoo.load("polynomial_paper"), 12)
        64
    """
    return rows_per_pass(model, width, logits="all", cached=2 * (int(model.cfg.n_layers) + 1),
                         cap=LENS_BATCH)  # fmt: skip


def lens_logits(
    model: Any,
    tokens: Int[Tensor, "n pos"],
    position: Int[Tensor, " n"],
    *,
    batch_size: int | None = None,
) -> tuple[Float[Tensor, "boundary n vocab"], tuple[str, ...]]:
    """Logit-lens logits at each sequence's ``position`` for every layer boundary, and the
    boundaries' names: ``ln_final(resid) @ W_U + b_U`` with the norm's statistics recomputed
    per boundary (the last boundary gives the model's logits).

    Example:
        >>> from iteration_heads import zoo
        >>> logits, names = lens_logits(zoo.load("polynomial_paper"), torch.zeros(2, 5, dtype=torch.long),
        ...                             torch.tensor([1, 4]))
        >>> logits.shape, names
        (torch.Size([3, 2, 16]), ('0_pre', '1_pre', 'final_post'))
    """
    size = batch_rows(batch_size, lens_rows(model, int(tokens.shape[1])))
    n_layers = int(model.cfg.n_layers)
    final = f"blocks.{n_layers - 1}.hook_resid_post"
    names = {resid_pre_hook(layer) for layer in range(n_layers)} | {final}
    device, labels = device_of(model), []
    shared = shared_sequences(tokens, position)  # sequences read at several positions run once
    out = torch.zeros(n_layers + 1, len(tokens), int(model.cfg.d_vocab))
    with evaluating(model):
        for _, seq, width in shared.plan(1, size, int(model.cfg.d_model)):
            inputs = shared.tokens[seq, :width].to(device)
            _, cache = cached_run(model, inputs, names_filter=lambda n: n in names)
            stack, labels = cache.accumulated_resid(apply_ln=True, return_labels=True)
            _, row, prompt, _ = shared.scored_in(seq, width)
            read = stack[:, row.to(device), shared.position[prompt].to(device)]
            out[:, prompt] = (read @ model.W_U + model.b_U).float().cpu()
    return out, tuple(labels)


def logit_lens(
    model: Any,
    prompts: Prompts,
    *,
    prior: Int[Tensor, " n"] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int | None = None,
) -> LogitLens:
    """Probability and rank of each prompt's answer (and prior token) under the logit lens at
    every layer boundary, read at the prompt's studied position.

    Args:
        model: A TransformerLens model (native or HuggingFace-wrapped bridge).
        prompts: The prompts, positions and in-context answers (:class:`Prompts`).
        prior: One prior token per prompt, e.g. :func:`context_free_prior`; None: answer only.
        n_boot: Bootstrap resamples of the intervals; ``seed`` seeds them.
        batch_size: Prompts per forward pass (None: :func:`lens_rows`).

    Raises:
        IterationHeadsError: not :class:`Prompts`, a prior of another shape or a token outside
            the vocabulary, prompts wider than the model's context, bad ``n_boot``/``batch_size``.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> model = zoo.load("polynomial_paper")
        >>> data = make_dataset(DataConfig(max_len=8, n_train=4, n_test=4))
        >>> prompts = iteration_prompts(data.test, data.layout)
        >>> lens = logit_lens(model, prompts, prior=context_free_prior(model, prompts))
        >>> lens.boundaries, round(float(lens.curve("answer_prob")[0][-1]), 2)
        (('0_pre', '1_pre', 'final_post'), 1.0)
    """
    _check_prompts(model, prompts)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise IterationHeadsError(f"n_boot={n_boot!r}, expected an integer >= 1")
    batch_rows(batch_size, 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise IterationHeadsError(f"seed={seed!r}, expected an integer")
    n = len(prompts)
    if prior is not None:
        prior = integer_tensor(prior, "prior")
        if prior.shape != (n,):
            raise IterationHeadsError(
                f"prior of shape {tuple(prior.shape)}, expected ({n},): one token per prompt"
            )
        check_token_ids(prior, int(model.cfg.d_vocab), "prior")
    logits, names = lens_logits(model, prompts.clean, prompts.position, batch_size=batch_size)
    log_probs = logits.log_softmax(-1)

    def read(token: Tensor) -> tuple[Tensor, Tensor]:
        index = token[None, :, None].expand(len(names), n, 1)
        value = logits.gather(-1, index)
        return log_probs.gather(-1, index)[..., 0], (logits > value).sum(-1)

    answer_lp, answer_rank = read(prompts.answer)
    prior_lp, prior_rank = read(prior) if prior is not None else (None, None)
    return LogitLens(
        names, answer_lp, answer_rank, prior_lp, prior_rank, prompts.answer, prior,
        prompts.labels, n_boot, seed,
    )  # fmt: skip


def context_free_prior(
    model: Any, prompts: Prompts, *, keep: int = 2, first_token: bool = True
) -> Int[Tensor, " n"]:
    """The model's own prediction without the context: Dutta et al.'s "no-context bigram".

    Each prompt is cut to its first token (e.g. ``<s>`` or the task token; left out with
    ``first_token=False``) followed by the last ``keep`` tokens up to and including its studied
    position, and the model's argmax next token after that short sequence is the prior. With
    ``keep=1`` this is the bigram the model learned for the current token; the short sequence
    sits at positions ``0..keep`` (not at the prompt's own positions), as a model would see it
    with no context. Prompts whose position is closer to the start keep what there is.

    Raises:
        IterationHeadsError: not :class:`Prompts` or ``keep < 1``.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=8, n_train=4, n_test=4))
        >>> prior = context_free_prior(zoo.load("polynomial_paper"), iteration_prompts(data.test,
        ...                            data.layout))
        >>> prior.shape
        torch.Size([144])
    """
    _check_prompts(model, prompts)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise IterationHeadsError(f"keep={keep!r}, expected an integer >= 1")
    sequences = []
    for row, pos in zip(prompts.clean, prompts.position.tolist(), strict=True):
        start = max(pos - keep + 1, 1 if first_token else 0)
        head = row[:1] if first_token else row[:0]
        sequences.append(torch.cat([head, row[start : pos + 1]]))
    prior = torch.zeros(len(sequences), dtype=torch.long)
    device = device_of(model)
    with evaluating(model):
        for length in sorted({len(s) for s in sequences}):
            rows = [i for i, s in enumerate(sequences) if len(s) == length]
            tokens = torch.stack([sequences[i] for i in rows]).to(device)
            prior[rows] = model(tokens)[:, -1].argmax(-1).cpu()
    return prior


def _check_prompts(model: Any, prompts: Prompts) -> None:
    if not isinstance(prompts, Prompts):
        raise IterationHeadsError(
            f"prompts must be Prompts (from iteration_heads.pathways), got {type(prompts).__name__}"
        )
    d_vocab = int(model.cfg.d_vocab)
    check_token_ids(prompts.clean, d_vocab, "token")
    check_token_ids(prompts.answer, d_vocab, "answer")
    if "all" in prompts.labels:
        raise IterationHeadsError("a prompt is labelled 'all', which names every prompt here")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if isinstance(n_ctx, int) and prompts.clean.shape[1] > n_ctx:
        raise IterationHeadsError(
            f"prompts of width {prompts.clean.shape[1]} exceed the model's n_ctx={n_ctx}"
        )
