"""What an analysis will cost before it runs: its forward (and backward) passes, the tokens they
run, the peak memory they hold, and the time they take on this machine, from a few forward
passes of the model timed here (:func:`time_forward`). Shared by ``audit --dry-run``
(:func:`plan_audit`) and ``pathways --dry-run`` (:mod:`iteration_heads.pathways.cost`).

Memory is counted in float32 activations: a forward pass of ``rows x width`` tokens holds about
``rows·width·(3·d_model + d_mlp + 2·n_heads·width)`` floats at its widest layer, plus its
logits (every position, or only the scored ones), plus what the analysis caches or keeps; with
gradients, every layer's activations are kept for the backward pass. The model's weights are
in memory already and are not counted against what is free.

Example:
    >>> from iteration_heads import load
    >>> from iteration_heads.detection.probes import Probes
    >>> model = load("polynomial_paper")
    >>> plan = plan_audit(model, Probes.from_model(model, n=64), timing=ForwardTiming(0.01, 1e-7))
    >>> [stage.name for stage in plan.stages]
    ['accuracy', 'detection', 'route', 'ablation']
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from iteration_heads._results import Result
from iteration_heads._torch import FINAL_NORM_HOOK, device_of, evaluating
from iteration_heads.errors import IterationHeadsError
from iteration_heads.memory import forward_bytes, free_bytes
from iteration_heads.passes import final_residual
from iteration_heads.tasks.task import check_int


@dataclass(frozen=True)
class ForwardTiming:
    """Seconds of a forward pass: ``overhead`` per pass plus ``per_token`` per row x position;
    a backward pass costs ``backward`` times its forward pass; a pass that unembeds one
    position per row (:func:`~iteration_heads.passes.scored_logits`) costs ``scored`` times
    ``per_token`` per token (the unembedding of every position is the rest).

    Example:
        >>> ForwardTiming(0.01, 1e-6).seconds(forwards=2, tokens=10_000)
        0.03
        >>> round(ForwardTiming(0.01, 1e-6, scored=0.5).seconds(forwards=2, tokens=10_000,
        ...                                                     scored=True), 6)
        0.025
    """

    overhead: float
    per_token: float
    backward: float = 2.0
    scored: float = 1.0

    def seconds(
        self,
        *,
        forwards: int,
        tokens: int,
        backwards: int = 0,
        grad_tokens: int = 0,
        scored: bool = False,
    ) -> float:
        """Estimated seconds of ``forwards`` passes running ``tokens`` in all, and of
        ``backwards`` passes over ``grad_tokens`` (``scored``: one position unembedded per
        row)."""
        rate = self.per_token * (self.scored if scored else 1.0)
        forward = forwards * self.overhead + tokens * rate
        return forward + self.backward * (backwards * self.overhead + grad_tokens * rate)


def time_forward(
    model: Any, width: int, *, rows: int = 32, backward: bool = False
) -> ForwardTiming:
    """Time forward passes of ``model`` on this machine at ``width`` positions, one row and
    ``rows`` rows (the best of two runs each, after one that is not timed), and with
    ``backward`` also a backward pass; the model's weights, mode and hooks are left as found.

    Example:
        >>> from iteration_heads import load
        >>> timing = time_forward(load("polynomial_paper"), 12)
        >>> timing.overhead >= 0 and timing.per_token >= 0
        True
    """
    check_int("width", width, minimum=1)
    check_int("rows", rows, minimum=1)
    if not isinstance(backward, bool):
        raise IterationHeadsError(f"backward={backward!r}, expected True or False")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    width = max(1, min(int(width), int(n_ctx) if isinstance(n_ctx, int) else int(width)))
    device = device_of(model)
    tokens = torch.zeros(max(rows, 2), width, dtype=torch.long, device=device)

    def best(batch: torch.Tensor, run: Any = None) -> float:
        times = []
        for _ in range(3):
            tick = time.perf_counter()
            model(batch) if run is None else run(model, batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - tick)
        return min(times[1:])

    with evaluating(model):
        one, many = best(tokens[:1]), best(tokens)
        stops = FINAL_NORM_HOOK in getattr(model, "hook_dict", {})  # else no pass skips it
        unembedded = best(tokens, final_residual) if stops else many
    per_token = max(0.0, (many - one) / ((len(tokens) - 1) * width))
    overhead = max(0.0, one - per_token * width)
    scored = min(1.0, max(0.05, unembedded / max(many, 1e-9)))  # share left without unembedding
    if not backward:
        return ForwardTiming(overhead, per_token, scored=scored)
    weights = [p for p in model.parameters() if p.requires_grad]
    with evaluating(model), torch.enable_grad():
        tick = time.perf_counter()
        out = model(tokens)
        middle = time.perf_counter()
        if weights:
            torch.autograd.grad(out.float().sum(), weights[:1])
        end = time.perf_counter()
    ratio = (end - middle) / max(middle - tick, 1e-9)
    return ForwardTiming(overhead, per_token, max(ratio, 1.0), scored)


def weight_bytes(model: Any) -> int:
    """Bytes of the model's parameters.

    Example:
        >>> from iteration_heads import load
        >>> weight_bytes(load("polynomial_paper")) > 0
        True
    """
    return int(sum(p.numel() * p.element_size() for p in model.parameters()))


def free_memory(model: Any) -> tuple[int | None, str]:
    """Bytes free where ``model`` runs (its GPU's free memory, else this machine's available
    memory; None when unknown) and the name of that place.

    Example:
        >>> from iteration_heads import load
        >>> free_memory(load("polynomial_paper"))[1]
        'this machine'
    """
    device = device_of(model)
    return free_bytes(model), (str(device) if device.type == "cuda" else "this machine")


def format_seconds(seconds: float) -> str:
    """Seconds as ``42 s``, ``3.5 min`` or ``2.1 h`` (as ``sweep --estimate`` writes them).

    Example:
        >>> format_seconds(0.4), format_seconds(210), format_seconds(7560)
        ('0.4 s', '3.5 min', '2.1 h')
    """
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def size_text(n: float) -> str:
    """Bytes as ``12.0 MB`` or ``3.4 GB``.

    Example:
        >>> size_text(12e6), size_text(3.4e9)
        ('12.0 MB', '3.4 GB')
    """
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


@dataclass(frozen=True)
class Stage:
    """One analysis of a plan: its passes, tokens, the memory it holds beyond the weights at
    its peak, and its estimated seconds; ``bound``: the counts are upper bounds (they depend
    on results not known before the run)."""

    name: str
    forwards: int
    backwards: int
    tokens: int
    working: int
    seconds: float
    bound: bool = False


@dataclass(frozen=True, repr=False)
class CostPlan(Result):
    """The stages of a run with their cost, the model's weights, and the memory free where it
    runs (``free`` None when unknown); ``advice`` says what to change when it does not fit."""

    what: str
    stages: tuple[Stage, ...]
    weights: int
    free: int | None
    where: str = "this machine"
    advice: str = "run fewer prompts"
    notes: tuple[str, ...] = field(default=())

    @property
    def seconds(self) -> float:
        """Estimated seconds, all stages together."""
        return sum(stage.seconds for stage in self.stages)

    @property
    def peak(self) -> int:
        """Estimated peak bytes: the weights plus the largest stage's working memory."""
        return self.weights + max((s.working for s in self.stages), default=0)

    def refusal(self) -> str | None:
        """One line naming the first stage that does not fit in the free memory, what it needs
        and what is free, and what to change; None when every stage fits (or free is unknown)."""
        for stage in self.stages:
            if self.free is not None and stage.working > self.free:
                return (
                    f"{self.what}: {stage.name} needs about {size_text(stage.working)} beyond the "
                    f"model's {size_text(self.weights)}; {self.where} has {size_text(self.free)} "
                    f"free: {self.advice}"
                )
        return None

    def check_fits(self) -> None:
        """Raise :class:`~iteration_heads.errors.IterationHeadsError` with :meth:`refusal`."""
        message = self.refusal()
        if message is not None:
            raise IterationHeadsError(message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: every stage, the totals and whether it fits."""
        return {
            "what": self.what,
            "stages": [
                {
                    "name": s.name,
                    "forwards": s.forwards,
                    "backwards": s.backwards,
                    "tokens": s.tokens,
                    "seconds": s.seconds,
                    "peak_bytes": self.weights + s.working,
                    "upper_bound": s.bound,
                }
                for s in self.stages
            ],
            "seconds": self.seconds,
            "weights_bytes": self.weights,
            "peak_bytes": self.peak,
            "free_bytes": self.free,
            "fits": self.refusal() is None,
            "refusal": self.refusal(),
            "notes": list(self.notes),
        }

    def format(self) -> str:
        """A table: stage, passes, tokens, estimated time and peak memory; then the totals."""
        rows = [("analysis", "passes", "tokens", "est. time", "est. peak memory")]
        for s in self.stages:
            passes = f"{'<=' if s.bound else ''}{s.forwards}" + (
                f" + {s.backwards} bwd" if s.backwards else ""
            )
            tokens = f"{'<=' if s.bound else ''}{s.tokens:,}"
            rows.append((s.name, passes, tokens, format_seconds(s.seconds),
                         size_text(self.weights + s.working)))  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [f"plan: {self.what}"]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]  # fmt: skip
        free = "unknown" if self.free is None else size_text(self.free)
        lines.append(
            f"total: about {format_seconds(self.seconds)}, peak {size_text(self.peak)} "
            f"(weights {size_text(self.weights)}; {free} free on {self.where})"
        )
        lines += list(self.notes)
        message = self.refusal()
        lines.append(f"does not fit: {message}" if message else "fits in memory")
        return "\n".join(lines)


def passes_of(n: int, batch: int) -> list[int]:
    """The rows of each pass when ``n`` rows run ``batch`` at a time.

    Example:
        >>> passes_of(5, 2)
        [2, 2, 1]
    """
    return [min(batch, n - start) for start in range(0, n, batch)]


def stage(
    name: str,
    rows: Sequence[int],
    width: int,
    timing: ForwardTiming,
    working: int,
    *,
    backwards: int = 0,
    bound: bool = False,
    scored: bool = False,
) -> Stage:
    """A :class:`Stage` of forward passes of ``rows`` rows each at ``width`` positions
    (``backwards`` of them also run backward; ``scored``: each unembeds one position per row).

    Example:
        >>> stage("x", [2, 1], 5, ForwardTiming(0.0, 0.1), 0).tokens
        15
    """
    tokens = sum(rows) * width
    grad = tokens * backwards // max(len(rows), 1)
    seconds = timing.seconds(forwards=len(rows), tokens=tokens, backwards=backwards,
                             grad_tokens=grad, scored=scored)  # fmt: skip
    return Stage(name, len(rows), backwards, tokens, working, seconds, bound)


def _projections_share(model: Any) -> float:
    """The share of a pass without unembedding that a pass of one layer up to its attention
    pattern costs: its query, key and value projections, and the queries path patching
    recomputes twice (its check, its patch), over the weights of every block (one layer's share
    where the weights cannot be counted). On the GPT-2-small shape (256 probes of width 35,
    146 labels) the route took 127 s, about 0.6 s per such pass once its two cached passes
    are taken out: about 3.6 % of a pass without unembedding; this gives 3.5 %."""
    blocks = getattr(model, "blocks", None)
    n_layers = max(1, int(model.cfg.n_layers))
    try:
        attn = blocks[-1].attn  # type: ignore[index]
        projections = 3 * attn.W_Q.numel() + attn.W_K.numel() + attn.W_V.numel()
        every = sum(p.numel() for p in blocks.parameters())  # type: ignore[union-attr]
    except (AttributeError, TypeError, IndexError):
        return 1.0 / n_layers
    return min(1.0 / n_layers, projections / max(every, 1))


def plan_audit(
    model: Any,
    probes: Any,
    *,
    route: bool = True,
    route_probes: int = 256,
    batch_size: int = 512,
    timing: ForwardTiming | None = None,
) -> CostPlan:
    """The cost of :func:`~iteration_heads.auditing.audit` on ``probes``: the accuracy pass,
    detection (two passes), the position route (two cached passes up to the iteration heads'
    layer, at most the last, then one pass of that layer alone per label — clean, all, and each
    component before it — per batch of the route's probes) and the ablation (the clean run,
    the iteration heads, and about 640 control sequences). The route and ablation counts are upper bounds: they depend on
    the heads detection finds.

    Example:
        >>> from iteration_heads import load
        >>> from iteration_heads.detection.probes import Probes
        >>> model = load("polynomial_paper")
        >>> plan = plan_audit(model, Probes.from_model(model, n=64), timing=ForwardTiming(0, 0))
        >>> [(s.name, s.forwards) for s in plan.stages]
        [('accuracy', 1), ('detection', 2), ('route', 7), ('ablation', 5)]
    """
    from iteration_heads.auditing.route import components_before
    from iteration_heads.detection.detector import detection_passes
    from iteration_heads.detection.probes import Probes
    from iteration_heads.interventions.verification import CONTROL_SEQUENCES

    if not isinstance(probes, Probes):
        raise IterationHeadsError(f"probes must be Probes, got {type(probes).__name__}")
    if not isinstance(route, bool):
        raise IterationHeadsError(f"route={route!r}, expected True or False")
    check_int("route_probes", route_probes, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    n, width = len(probes), int(probes.tokens.shape[1])
    timing = timing or time_forward(model, width)
    n_layers = int(model.cfg.n_layers)
    chunks = passes_of(n, batch_size)
    per_pass = forward_bytes(model, min(n, batch_size), width)
    # detection runs each probe up to its last state, probes of similar widths in one pass,
    # and unembeds only the queries it reads (twice: the heads, then the states)
    detection = detection_passes(model, probes) * 2
    tokens = sum(rows * wide for rows, wide in detection)
    stages = [
        stage("accuracy", chunks, width, timing, per_pass, scored=True),  # scored positions only
        Stage(
            "detection",
            len(detection),
            0,
            tokens,
            forward_bytes(model, max(r for r, _ in detection), width, patterns=n_layers),
            timing.seconds(forwards=len(detection), tokens=tokens, scored=True),
        ),
    ]
    if route and n_layers > 1:  # at most: iteration heads in the last layer
        senders = len(components_before(model, n_layers - 1))
        sample = passes_of(min(n, route_probes), batch_size)
        cached = 2 * sum(sample) * width  # clean and shorter, up to the heads' layer
        resumed = (2 + senders) * sum(sample) * width  # one per component: that layer only
        seconds = timing.seconds(forwards=2 * len(sample), tokens=cached, scored=True)
        seconds += timing.seconds(forwards=(2 + senders) * len(sample),
                                  tokens=math.ceil(resumed * _projections_share(model)),
                                  scored=True)  # fmt: skip
        # two caches of every head's and MLP's output before the heads, and one delta
        working = forward_bytes(model, sample[0], width, cached=2 * (2 * n_layers + 2) + 1)
        stages.append(
            Stage("route", (4 + senders) * len(sample), 0, cached + resumed, working, seconds, True)
        )
    controls = passes_of(min(n, CONTROL_SEQUENCES), batch_size)
    means = [2, 2]  # the mean ablation's reference means
    stages.append(
        stage("ablation", chunks * 2 + controls + means, width, timing, per_pass, bound=True)
    )
    free, where = free_memory(model)
    return CostPlan(
        f"audit of {n} probes of width {width}", tuple(stages), weight_bytes(model), free, where,
        advice="give fewer probes (--n-probes) or shorter ones (--max-len)",
    )  # fmt: skip
