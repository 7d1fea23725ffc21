"""What ``iteration-heads pathways`` will cost before it runs (``--dry-run``): per analysis, its
forward (and backward) passes and the tokens they run, counted from how each analysis batches
its work, the peak memory it holds, and the time it takes here, from forward passes of the
model timed at the prompts' width (:func:`~iteration_heads.auditing.cost.time_forward`).

The counts follow the command's own sequence (``cli/pathway_runs.py``): an analysis that needs
the answer writers or a ranking that was not run computes it itself, and costs it. Counts that
depend on results not known before the run are upper bounds, marked ``<=``: the exact patching
sweep skips (head, prompt) pairs whose head output the corruption leaves unchanged, and the
ablation check's random sets may coincide (give ``named`` for the exact count).

Example:
    >>> from iteration_heads import DataConfig, make_dataset, zoo
    >>> from iteration_heads.auditing.cost import ForwardTiming
    >>> from iteration_heads.pathways import iteration_prompts
    >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=2))
    >>> plan = plan_pathways(zoo.load("polynomial_paper"), iteration_prompts(data.test, data.layout),
    ...                      ["writers", "segments"], timing=ForwardTiming(0.01, 1e-7))
    >>> [(s.name, s.forwards) for s in plan.stages]
    [('writers', 1), ('segments', 2)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iteration_heads._torch import Head
from iteration_heads.auditing.cost import (
    CostPlan,
    ForwardTiming,
    Stage,
    free_memory,
    passes_of,
    stage,
    time_forward,
    weight_bytes,
)
from iteration_heads.errors import IterationHeadsError
from iteration_heads.memory import analysis_rows, element_bytes, forward_bytes
from iteration_heads.passes import shared_sequences
from iteration_heads.pathways.attribution import (
    EXACT_BUDGET,
    choose_method,
    exact_cost,
    patching_rows,
)
from iteration_heads.pathways.flow import flow_rows
from iteration_heads.pathways.noising import noising_passes
from iteration_heads.pathways.prompts import Prompts
from iteration_heads.pathways.pruned_runs import pruned_passes
from iteration_heads.pathways.pruning import pruning_sweep
from iteration_heads.pathways.pruning_attribution import (
    LINEAR_CANDIDATES,
    LINEAR_STEPS,
    linear_pruning_rows,
)
from iteration_heads.pathways.pruning_bisection import bisection_rounds
from iteration_heads.pathways.random_control import all_heads, random_head_sets
from iteration_heads.pathways.reference import reference_passes
from iteration_heads.pathways.rift import lens_rows
from iteration_heads.pathways.segments import segment_passes, segments_rows
from iteration_heads.pathways.solved import solved_rows
from iteration_heads.pathways.writers import writers_rows
from iteration_heads.tasks.task import check_int

_ORDER = ("patching", "writers", "lens", "segments", "pruning", "checks", "flow")
# the analyses of ``iteration-heads pathways`` (its ANALYSES), in the order they run

TRACE_SECONDS = 0.06
"""Seconds of Python work per traced prompt and layer in flow tracing, beyond its forward
passes (measured on two CPU cores: benchmarks/pathways_cost.py)."""


@dataclass(frozen=True, repr=False)
class PathwaysPlan(CostPlan):
    """The cost of ``iteration-heads pathways`` (:class:`~iteration_heads.auditing.cost.CostPlan`:
    a table of analysis, passes, tokens, estimated time and peak memory; ``refusal`` names the
    analysis that does not fit); ``skipped``: the analyses that will not run, with why."""

    skipped: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """:meth:`CostPlan.to_dict` and the skipped analyses."""
        return super().to_dict() | {"skipped": dict(self.skipped)}

    def format(self) -> str:
        """The table, then the skipped analyses."""
        skipped = [f"skipped {name}: {why}" for name, why in self.skipped]
        return "\n".join([super().format(), *skipped])


def plan_pathways(
    model: Any,
    prompts: Prompts,
    analyses: Sequence[str],
    *,
    n_random: int = 5,
    n_traced: int = 8,
    seed: int = 0,
    method: str = "auto",
    prior: str | None = None,
    solved: str | None = None,
    named: Sequence[Head] | None = None,
    timing: ForwardTiming | None = None,
) -> PathwaysPlan:
    """The passes, tokens, peak memory and time of each of ``analyses`` on ``prompts``, as
    ``iteration-heads pathways`` runs them (module docstring): ``n_random``, ``n_traced``,
    ``seed``, ``prior`` (``"context-free"`` or None) and ``solved`` as its options, ``method``
    the head-patching method, ``named`` the heads the ablation check names (for an exact
    count), ``timing`` the measured speed (default: timed here now).

    Raises:
        IterationHeadsError: not :class:`Prompts`, an unknown analysis or method, or a bad
            count.

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=2))
        >>> plan = plan_pathways(zoo.load("polynomial_paper"),
        ...                      iteration_prompts(data.test, data.layout), ["patching", "flow"])
        >>> [(s.name, s.forwards, s.bound) for s in plan.stages], plan.refusal()
        ([('patching', 3, True), ('flow', 2, False)], None)
    """
    if not isinstance(prompts, Prompts):
        raise IterationHeadsError(f"prompts must be Prompts, got {type(prompts).__name__}")
    unknown = [a for a in analyses if a not in _ORDER]
    if unknown or isinstance(analyses, str):
        raise IterationHeadsError(f"analyses {list(analyses)!r}: expected some of {_ORDER}")
    for name, value, least in (("n_random", n_random, 1), ("n_traced", n_traced, 1),
                               ("seed", seed, 0)):  # fmt: skip
        check_int(name, value, minimum=least)
    for name, choice, allowed in (("method", method, ("auto", "exact", "attribution")),
                                 ("prior", prior, (None, "context-free")),
                                 ("solved", solved, (None, "step", "sequence"))):  # fmt: skip
        if not isinstance(choice, str | None) or choice not in allowed:
            raise IterationHeadsError(f"{name}={choice!r}, expected one of {allowed}")
    corrupted = prompts.corrupted is not None
    backward = corrupted and "patching" in analyses  # attribution's passes w.r.t. activations
    backward = backward and choose_method(model, prompts, method) == "attribution"
    width = int(prompts.clean.shape[1])
    counter = _Counter(model, prompts, timing or time_forward(model, width, backward=backward))
    stages: list[Stage] = []
    skipped: list[tuple[str, str]] = []
    if solved is not None:
        stages.append(counter.simple("solved", solved_rows, bound=True))
    patched = corrupted and "patching" in analyses
    wrote = "writers" in analyses
    for name in [a for a in _ORDER if a in analyses]:
        if name == "patching":
            if not corrupted:
                skipped.append((name, "the prompts have no corrupted version"))
                continue
            stages.append(counter.patching(choose_method(model, prompts, method)))
        elif name == "writers":
            rows, memory = counter.writers(1)
            stages.append(counter.planned("writers", rows, memory))
        elif name == "lens":
            infos = prompts.info or ()
            given = bool(infos) and all(isinstance(i.get("prior"), int) for i in infos)
            if prior != "context-free" and not given:
                skipped.append((name, "no prior token"))
                continue
            stages.append(counter.lens(prior == "context-free"))
        elif name == "segments":
            if not prompts.segment_names or bool((prompts.segments < 0).all()):
                skipped.append((name, "the prompts have no segments"))
                continue
            stages.append(counter.segments())
        elif name == "pruning":
            extra = 0 if patched or wrote else 1
            draws = max(1, n_random // 2)
            chosen = pruning_method(model, prompts, method, n_random=draws, seed=seed)
            stages.append(counter.pruning(draws, seed, extra, chosen))
        elif name == "checks":
            extra = (not wrote) + (corrupted and not patched and not wrote)
            stages.append(counter.checks(n_random, seed, named, int(extra)))
        elif name == "flow":
            if element_bytes(model) != 4:
                skipped.append((name, "flow tracing runs on float32 weights only"))
                continue
            stages.append(counter.flow(min(n_traced, len(prompts))))
    free, where = free_memory(model)
    advice = "give fewer prompts (--n, or a shorter --prompts file)"
    if corrupted and "patching" in analyses:
        advice += ", or --method attribution for head patching"
    return PathwaysPlan(
        f"pathways on {len(prompts)} prompts of width {prompts.clean.shape[1]}",
        tuple(stages), weight_bytes(model), free, where, advice=advice, skipped=tuple(skipped),
    )  # fmt: skip


def pruning_variants(model: Any, n_random: int, seed: int) -> int:
    """Variants (sets of kept heads) the exact pruning curve runs with its default ks and
    ``n_random`` seeded draws per k, the full model left out.

    Example:
        >>> from iteration_heads import zoo
        >>> pruning_variants(zoo.load("polynomial_paper"), 1, 0)  # k = 0 and 1, ranked and drawn
        3
    """
    ranking, ks, draws = pruning_sweep(model, all_heads(model), None, n_random=n_random, seed=seed)
    masks = {frozenset(range(k)) for k in ks} | {frozenset(d.tolist()) for d in draws}
    return len(masks - {frozenset(range(len(ranking)))})  # every head kept: the full model


def pruning_method(
    model: Any, prompts: Prompts, method: str, *, n_random: int, seed: int = 0
) -> str:
    """The method of the pruning curve of ``iteration-heads pathways``: ``method`` itself
    (``"attribution"``: :func:`~iteration_heads.pathways.pruning_attribution.linear_pruning_curve`),
    or for ``"auto"`` exact (:func:`~iteration_heads.pathways.pruning.pruning_curve`) while its
    variants cost at most :data:`~iteration_heads.pathways.attribution.EXACT_BUDGET`, and above
    it ``"bisection"``: the smallest circuit found by bisection over k, about log2(heads)
    exact variants (:func:`~iteration_heads.pathways.pruning_bisection.bisected_pruning_curve`).

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> pruning_method(zoo.load("polynomial_paper"), iteration_prompts(data.test, data.layout),
        ...                "auto", n_random=2)
        'exact'
    """
    if method != "auto":
        return choose_method(model, prompts, method)
    heads = int(model.cfg.n_layers) * int(model.cfg.n_heads)
    per_variant = exact_cost(model, prompts) / heads  # one pass of every prompt
    cost = per_variant * pruning_variants(model, n_random, seed)
    return "exact" if cost <= EXACT_BUDGET else "bisection"


class _Counter:
    """The passes of each analysis: rows per pass, width, memory (see the analyses' code)."""

    def __init__(self, model: Any, prompts: Prompts, timing: ForwardTiming) -> None:
        self.model, self.prompts, self.timing = model, prompts, timing
        self.n, self.width = len(prompts), int(prompts.clean.shape[1])
        self.cut = int(prompts.position.max()) + 1  # causal analyses run up to here
        cfg = model.cfg
        self.layers, self.heads = int(cfg.n_layers), int(cfg.n_heads)
        self.d_z = self.heads * int(getattr(cfg, "d_head", cfg.d_model // self.heads))
        self.d_model = int(cfg.d_model)
        self.sequences = shared_sequences(prompts.clean, prompts.position)
        self.own = prompts.own_positions()  # the reference mask of the means

    def _bytes(self, rows: int, width: int, **options: Any) -> int:
        return forward_bytes(self.model, rows, width, **options)

    def simple(self, name: str, batch: Any, *, cached: int = 0, patterns: bool = False,
               bound: bool = False) -> Stage:  # fmt: skip
        """Cached forward passes of every prompt, ``batch(model, width)`` at a time, at full
        width."""
        rows = passes_of(self.n, batch(self.model, self.width))
        memory = self._bytes(rows[0], self.width, cached=cached * self.layers,
                             patterns=self.layers if patterns else 0)  # fmt: skip
        return stage(name, rows, self.width, self.timing, memory, bound=bound)

    def patching(self, method: str) -> Stage:
        size = patching_rows(self.model, self.cut, method)
        runs = passes_of(self.n, size)
        kept = 2 * self.n * self.cut * self.layers * self.d_z * 4  # clean and corrupted hook_z
        run = self._bytes(runs[0], self.cut, logits="one", cached=self.layers)
        if method == "attribution":
            sweep = passes_of(self.n, size)
            work = self._bytes(sweep[0], self.cut, logits="one", cached=self.layers, grad=True)
            total = stage("patching", runs + sweep, self.cut, self.timing, 0, scored=True)
            grad = sum(sweep) * self.cut  # clean, then corrupted with gradients
            seconds = total.seconds + self.timing.seconds(
                forwards=0, tokens=0, backwards=2 * len(sweep), grad_tokens=2 * grad, scored=True
            )
            return Stage("patching (attribution)", total.forwards, 2 * len(sweep), total.tokens,
                         kept + max(run, work), seconds)  # fmt: skip
        sweep = passes_of(self.layers * self.heads * self.n, size)
        work = self._bytes(sweep[0], self.cut, logits="one", cached=1)
        return stage("patching", runs * 2 + sweep, self.cut, self.timing, kept + max(run, work),
                     bound=True, scored=True)  # fmt: skip

    def shared(self, size: int, variants: int = 1) -> list[tuple[int, int]]:
        """``(rows, width)`` of passes running each distinct sequence of the prompts once per
        variant (:meth:`~iteration_heads.passes.SharedSequences.plan`)."""
        plan = self.sequences.plan(variants, size, self.d_model)
        return [(len(seq), width) for _, seq, width in plan]

    def planned(self, name: str, passes: Sequence[tuple[int, int]], working: int, *,
                scored: bool = False, bound: bool = False) -> Stage:  # fmt: skip
        """A :class:`Stage` of the passes ``(rows, width)``."""
        tokens = sum(rows * width for rows, width in passes)
        seconds = self.timing.seconds(forwards=len(passes), tokens=tokens, scored=scored)
        return Stage(name, len(passes), 0, tokens, working, seconds, bound)

    def lens(self, context_free: bool) -> Stage:
        shared = self.shared(lens_rows(self.model, self.width))
        rows, widths = [r for r, _ in shared], [w for _, w in shared]
        if context_free:  # one pass per length of the short sequences (rift.context_free_prior)
            lengths = [1 + p + 1 - max(p - 1, 1) for p in self.prompts.position.tolist()]
            for length in sorted(set(lengths)):
                rows.append(lengths.count(length))
                widths.append(length)
        tokens = sum(r * w for r, w in zip(rows, widths, strict=True))
        memory = self._bytes(max(r for r, _ in shared), self.width, cached=2 * (self.layers + 1))
        seconds = self.timing.seconds(forwards=len(rows), tokens=tokens)
        return Stage("lens", len(rows), 0, tokens, memory, seconds)

    def segments(self) -> Stage:
        names = len(self.prompts.segment_names)
        cuts = names + (names if names >= 3 else 0)  # each segment, and all but one from three
        size = segments_rows(self.model, self.width)
        clean, cut = segment_passes(self.prompts.position, cuts, size)
        rows = list(clean) + [p for _, p in cut]
        widths = [int(self.prompts.position[p].max()) + 1 for p in rows]
        tokens = sum(len(p) * w for p, w in zip(rows, widths, strict=True))
        masks = cuts * self.n * self.width**2  # one bool per query and key, per cut
        memory = masks + self._bytes(size, max(widths, default=1))
        seconds = self.timing.seconds(forwards=len(rows), tokens=tokens, scored=True)
        return Stage("segments", len(rows), 0, tokens, memory, seconds)

    def writers(self, extra: int) -> tuple[list[tuple[int, int]], int]:
        """The passes of ``extra`` runs of the answer writers, and their peak memory."""
        rows = self.shared(writers_rows(self.model, self.width)) * extra
        return rows, self._bytes(max(r for r, _ in rows), self.width, cached=4 * self.layers,
                                 patterns=self.layers) if rows else 0  # fmt: skip

    def means(self) -> Stage:
        """The reference means' passes over the prompts' own positions."""
        size = analysis_rows(self.model, self.width)
        _, _, plan = reference_passes(self.model, self.prompts.clean, self.own, size)
        passes = [(len(rows), width) for rows, width in plan]
        memory = self._bytes(max(r for r, _ in passes), self.width, cached=self.layers)
        return self.planned("", passes, memory, scored=True)

    def pruned(self, variants: int, times: int = 1) -> Stage:
        """``times`` runs of ``variants`` variants of :class:`PrunedRuns`."""
        passes = [(len(v), w) for v, _, w in pruned_passes(self.model, self.prompts, variants)]
        work = self._bytes(max(r for r, _ in passes), self.cut, logits="one", cached=1)
        return self.planned("", passes * times, work, scored=True)

    def _ablation_runs(self, variants: int) -> tuple[Stage, Stage, Stage]:
        """The reference means, the full model and ``variants`` variants."""
        return self.means(), self.pruned(1), self.pruned(variants)

    def pruning(self, n_random: int, seed: int, extra: int, method: str) -> Stage:
        if method == "exact":
            variants = pruning_variants(self.model, n_random, seed)
            return self._combine("pruning", self._ablation_runs(variants), extra, bound=False)
        if method == "bisection":  # at most: k = 0 and every halving, one at a time; the draws
            rounds = bisection_rounds(self.layers * self.heads)
            parts: tuple[Stage, ...] = (self.means(), self.pruned(1, 1 + rounds),
                                        self.pruned(n_random))  # fmt: skip
            return self._combine("pruning (bisection)", parts, extra, bound=True)
        # linear_pruning_curve: reference means, the estimate's passes per batch, then the
        # exact check (reference means again, the full model, the circuit and its random sets)
        batches = passes_of(self.n, linear_pruning_rows(self.model, self.cut))
        steps, rivals = LINEAR_STEPS, LINEAR_CANDIDATES - 1
        estimate = [r for r in batches for _ in range(steps + (steps > 1))]
        grad = sum(batches) * self.cut * steps * rivals
        parts = (self.means(), self.means(),
                 stage("", estimate, self.cut, self.timing, 0, scored=True),
                 self.pruned(1), self.pruned(1 + n_random))  # fmt: skip
        work = self._bytes(batches[0], self.cut, logits="one", cached=2 * self.layers, grad=True)
        seconds = sum(p.seconds for p in parts) + self.timing.seconds(
            forwards=0,
            tokens=0,
            backwards=len(batches) * steps * rivals,
            grad_tokens=grad,
            scored=True,
        )
        combined = self._combine("pruning (attribution)", parts, extra, bound=True)
        writers = combined.seconds - sum(p.seconds for p in parts)
        return Stage(combined.name, combined.forwards, len(batches) * steps * rivals,
                     combined.tokens, max(combined.working, work), seconds + writers, True)  # fmt: skip

    def checks(self, n_random: int, seed: int, named: Sequence[Head] | None, extra: int) -> Stage:
        parts: list[Stage] = []
        if self.prompts.corrupted is not None:  # noising: clean and corrupted runs, variants
            _, clean, runs, noised = noising_passes(self.model, self.prompts, 1 + n_random)
            rows = [(len(s), w) for s, w in clean + runs] + [(len(s), w) for _, s, w in noised]
            kept = self.n * self.cut * self.layers * self.d_z * 4  # the corrupted hook_z
            work = self._bytes(max(r for r, _ in rows), self.cut, logits="one", cached=self.layers)
            parts.append(self.planned("", rows, kept + work, scored=True))
        if named is None:
            variants, bound = 1 + n_random, True
        else:
            first, draws = random_head_sets(self.model, named, n_random=n_random, seed=seed)
            variants, bound = len({frozenset(first), *map(frozenset, draws)}), False
        parts += self._ablation_runs(variants)
        return self._combine("checks", tuple(parts), extra, bound)

    def flow(self, traced: int) -> Stage:
        rows = [*passes_of(traced, flow_rows(self.model, self.width)), 1]  # trace_many, example
        memory = self._bytes(rows[0], self.width, cached=10 * self.layers, patterns=self.layers)
        passes = stage("flow", rows, self.width, self.timing, memory)
        extra = TRACE_SECONDS * (traced + 1) * self.layers
        return Stage("flow", passes.forwards, 0, passes.tokens, memory, passes.seconds + extra)

    def _combine(self, name: str, parts: tuple[Stage, ...], extra: int, bound: bool) -> Stage:
        """One stage of ``parts`` and of ``extra`` runs of the answer writers it needs."""
        rows, memory = self.writers(extra)
        if rows:
            parts = (*parts, self.planned("", rows, memory))
        return Stage(
            name,
            sum(p.forwards for p in parts),
            sum(p.backwards for p in parts),
            sum(p.tokens for p in parts),
            max(p.working for p in parts),
            sum(p.seconds for p in parts),
            bound,
        )
