"""Dutta et al.'s analyses, run together on a model of the ontology task, each claim with its
causal check (docs/guide/pathways.md).

:func:`study_ontology` draws fresh held-out problems, keeps the chain-of-thought steps the model
gets right (as Dutta et al. keep only the questions Llama-2 answers), and runs head patching,
two pruning curves, answer writers, the logit lens on contradicting questions, information-flow
tracing and segment knockouts; then it checks each finding by mean ablation against random
heads. It also probes how two words of the context are related (against the same probes on
random weights) and runs the horizon experiment on two-hop questions.
:mod:`~iteration_heads.experiments.ontology_results` turns the study into claims, tables and
figures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Set
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from iteration_heads._results import Result
from iteration_heads._torch import Head, evaluating
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model.checkpoint import model_metadata
from iteration_heads.model.transformer import build_model, model_config
from iteration_heads.pathways.flow import FlowGraph, trace_flow
from iteration_heads.pathways.horizon import HorizonPatching, horizon_patching
from iteration_heads.pathways.noising import noising_check
from iteration_heads.pathways.probing import RelationProbes, relation_probes
from iteration_heads.pathways.prompts import Prompts, ontology_prompts, ontology_steps
from iteration_heads.pathways.pruning import (
    AblationCheck,
    PruningCurve,
    ablation_check,
    pruned_predictions,
    pruning_curve,
)
from iteration_heads.pathways.random_control import all_heads, random_head_sets
from iteration_heads.pathways.restoration import HeadPatching, head_patching
from iteration_heads.pathways.rift import LogitLens, logit_lens
from iteration_heads.pathways.segments import (
    FlowSummary,
    SegmentPathways,
    segment_pathways,
    trace_many,
)
from iteration_heads.pathways.writers import AnswerWriters, answer_writers
from iteration_heads.tasks.ontology import OntologyProblems, OntologyVocab, make_ontology_problems
from iteration_heads.tasks.ontology_data import OntologyDataConfig, held_out, training_prompts
from iteration_heads.tasks.task import check_int
from iteration_heads.training.ontology_evaluation import OntologyEvaluation, evaluate_ontology

STUDIED_SUBTASKS = ("decision", "copy", "induction")
HORIZON_HOPS = 2
"""Hops of the horizon experiment's questions (Dutta et al.'s: five sentences, prefixes 0-4)."""
HORIZON_CORRUPTIONS = ("last", "last@1", "first")
"""The horizon's corruptions: the last fact with two substitutes, then the entity's fact."""


@dataclass(frozen=True)
class StudyOptions:
    """How much of each analysis :func:`study_ontology` runs.

    Example:
        >>> StudyOptions(n_problems=40).n_random
        20
    """

    n_problems: int = 150  # fresh fictional problems whose CoT steps are studied
    n_reference: int = 150  # contradicting problems: the means of mean ablation
    n_random: int = 20  # random head sets per causal check (a quarter per k of a pruning curve)
    n_traced: int = 60  # prompts traced for the information-flow summary
    n_probing: int = 5000  # fictional problems whose word pairs are probed (0: no probing)
    n_horizon: int = 50  # two-hop problems of the horizon experiment (0: none)
    seed: int = 0  # draws the problems (offset from the training seeds) and the random heads

    def __post_init__(self) -> None:
        for name in ("n_problems", "n_reference", "n_random", "n_traced"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("n_probing", "n_horizon"):
            check_int(name, getattr(self, name), minimum=0)
        check_int("seed", self.seed, minimum=0)


@dataclass(frozen=True, repr=False)
class PriorCheck(Result):
    """On contradicting questions: how often the model answers with the world's (memorised)
    token instead of the in-context one, with named heads mean-ablated and with as many random
    heads.

    Attributes:
        heads: The named heads.
        full, ablated: Share of prompts answered with the prior token, full model / named
            heads ablated; ``random``: per random draw.
        n_prompts: Contradicting prompts.
    """

    heads: tuple[Head, ...]
    full: float
    ablated: float
    random: tuple[float, ...]
    n_prompts: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {k: getattr(self, k) for k in ("heads", "full", "ablated", "random", "n_prompts")}

    def format(self) -> str:
        """One line."""
        mean = sum(self.random) / len(self.random)
        return (
            f"prior answers on {self.n_prompts} contradicting prompts: full model "
            f"{self.full:.3f}, named heads ablated {self.ablated:.3f}, random heads {mean:.3f} "
            f"(max {max(self.random):.3f})"
        )


@dataclass(frozen=True, repr=False)
class OntologyStudy(Result):
    """Every analysis of one model (see the module docstring); ``options`` made it."""

    evaluations: dict[str, OntologyEvaluation]
    patching: HeadPatching
    pruning: dict[str, PruningCurve]  # by ranking: "patching" (Dutta's) and "ablation"
    writers: AnswerWriters
    lens: LogitLens  # contradicting copy and induction steps, the world's token as prior
    pathways: dict[str, SegmentPathways]  # by scope: "answer" and "all"
    flow: FlowSummary
    example: FlowGraph
    checks: dict[str, AblationCheck]
    prior_check: PriorCheck
    n_layers: int
    n_heads: int
    token_names: tuple[str, ...]  # the vocabulary, to label figures
    options: StudyOptions = field(default_factory=StudyOptions)
    probes: dict[str, RelationProbes] = field(default_factory=dict)  # "model", "random weights"
    horizon: HorizonPatching | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every analysis's own dictionary."""
        return {
            "options": self.options.__dict__,
            "shape": {"n_layers": self.n_layers, "n_heads": self.n_heads},
            "evaluations": {k: v.summary() for k, v in self.evaluations.items()},
            "patching": self.patching.to_dict(),
            "pruning": {k: v.to_dict() for k, v in self.pruning.items()},
            "writers": self.writers.to_dict(),
            "lens": self.lens.to_dict(),
            "pathways": {k: v.to_dict() for k, v in self.pathways.items()},
            "flow": self.flow.to_dict(),
            "example": self.example.to_dict(),
            "checks": {k: v.to_dict() for k, v in self.checks.items()},
            "prior_check": self.prior_check.to_dict(),
            "probes": {k: v.to_dict() for k, v in self.probes.items()},
            "horizon": None if self.horizon is None else self.horizon.to_dict(),
        }

    def format(self) -> str:
        """Every analysis's text, one after the other."""
        parts = [v.format() for v in self.evaluations.values()]
        parts += [self.patching.format(), *(v.format() for v in self.pruning.values())]
        parts += [self.writers.format(), self.lens.format()]
        parts += [v.format() for v in self.pathways.values()]
        parts += [self.flow.format(), *(v.format() for v in self.checks.values())]
        parts += [
            self.prior_check.format(),
            *(f"{k}: {v.format()}" for k, v in self.probes.items()),
        ]
        return "\n\n".join(parts + ([self.horizon.format()] if self.horizon else []))


def solved(model: Any, prompts: Prompts) -> Bool[Tensor, " n"]:
    """Which prompts the model answers (its top-1 prediction is the answer): Dutta et al.
    study only the questions the model gets right.

    Example:
        >>> from iteration_heads import zoo
        >>> model = zoo.load("ontology")
        >>> problems = make_ontology_problems(model_ontology(model), 4, seed=5, kind="fictional")
        >>> bool(solved(model, ontology_prompts(problems)).all())
        True
    """
    with evaluating(model):
        logits = model(prompts.clean)
    rows = torch.arange(len(prompts))
    return logits[rows, prompts.position].argmax(-1).cpu() == prompts.answer


def solved_prompts(model: Any, prompts: Prompts) -> Prompts:
    """The prompts the model answers, or a clear error when it answers none."""
    right = solved(model, prompts)
    if not bool(right.any()):
        raise IterationHeadsError(f"the model answers none of the {len(prompts)} prompts")
    return prompts.select(right)


def model_ontology(model: Any) -> Any:
    """The :class:`~iteration_heads.tasks.ontology.OntologyConfig` a model was trained on,
    from its metadata, or a clear error for a model of another task.

    Example:
        >>> from iteration_heads import zoo
        >>> model_ontology(zoo.load("ontology")).hops
        (1, 2, 3)
    """
    return data_config_of(model).ontology


def data_config_of(model: Any) -> OntologyDataConfig:
    """The ontology data config in a model's metadata (see :func:`model_ontology`)."""
    meta = model_metadata(model) or {}
    if meta.get("task") != "ontology":
        raise IterationHeadsError(
            f"the model was trained on task {meta.get('task')!r}; expected an ontology model "
            "(zoo.load('ontology') or a run of train_ontology)"
        )
    return OntologyDataConfig.from_dict(meta["data"])


def contradiction_prompts(
    model: Any, problems: OntologyProblems
) -> tuple[Prompts, Int[Tensor, " n"]]:
    """The copy and induction steps of contradicting problems whose world token differs from
    the in-context answer and that the model gets right, with the world's token per prompt.

    Example:
        >>> from iteration_heads import zoo
        >>> model = zoo.load("ontology")
        >>> problems = make_ontology_problems(model_ontology(model), 4, seed=5, kind="contradicting")
        >>> prompts, prior = contradiction_prompts(model, problems)
        >>> bool((prior != prompts.answer).all())
        True
    """
    prompts = ontology_prompts(problems, ("copy", "induction"))
    prior = problems.priors[ontology_steps(problems, ("copy", "induction"))]
    keep = (prior >= 0) & (prior != prompts.answer) & solved(model, prompts)
    if not bool(keep.any()):
        raise IterationHeadsError("no contradicting step that the model answers from context")
    return prompts.select(keep), prior[keep]


def ablation_ranking(model: Any, prompts: Prompts, reference: Int[Tensor, "m pos"]) -> list[Head]:
    """Every head, ranked by the agreement with the full model that is lost when that head
    alone is mean-ablated over ``reference`` (most damaging first).

    Example:
        >>> from iteration_heads import DataConfig, make_dataset, zoo
        >>> from iteration_heads.pathways import iteration_prompts
        >>> data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
        >>> ablation_ranking(zoo.load("polynomial_paper"), iteration_prompts(data.test, data.layout),
        ...                  data.train.tokens)
        [(1, 0), (0, 0)]
    """
    heads = all_heads(model)
    keeps = [heads, *([h for h in heads if h != head] for head in heads)]
    top = pruned_predictions(model, prompts, keeps, reference)
    lost = (top[1:] != top[0]).float().mean(-1)  # agreement lost without each head
    order = sorted(range(len(heads)), key=lambda i: -float(lost[i]))
    return [heads[i] for i in order]


def prior_check(
    model: Any,
    prompts: Prompts,
    prior: Int[Tensor, " n"],
    heads: list[Head],
    reference: Int[Tensor, "m pos"],
    *,
    n_random: int,
    seed: int,
) -> PriorCheck:
    """How often the model answers with the prior token when ``heads`` are mean-ablated,
    against as many random other heads (``n_random`` seeded draws).

    Example:
        >>> from iteration_heads import zoo
        >>> model = zoo.load("ontology")
        >>> problems = make_ontology_problems(model_ontology(model), 6, seed=5, kind="contradicting")
        >>> prompts, prior = contradiction_prompts(model, problems)
        >>> check = prior_check(model, prompts, prior, [(3, 1)], problems.tokens, n_random=2, seed=0)
        >>> check.full
        0.0
    """
    everything = all_heads(model)
    named, draws = random_head_sets(model, heads, n_random=n_random, seed=seed)
    ablated = [[], named, *draws]
    keeps = [[h for h in everything if h not in set(a)] for a in ablated]
    rates = (pruned_predictions(model, prompts, keeps, reference).cpu() == prior).float().mean(-1)
    full, named, *random = rates.tolist()
    return PriorCheck(tuple(heads), full, named, tuple(random), len(prompts))


def study_ontology(model: Any, options: StudyOptions | None = None) -> OntologyStudy:
    """Run every analysis on an ontology model (module docstring).

    Example:
        >>> from iteration_heads import zoo
        >>> study = study_ontology(zoo.load("ontology"), StudyOptions(
        ...     n_problems=2, n_reference=4, n_random=1, n_traced=1, n_probing=0, n_horizon=2))
        >>> sorted(study.pruning), study.n_layers, study.horizon.corruptions
        (['ablation', 'patching'], 4, ('last', 'last@1', 'first'))
    """
    options = options or StudyOptions()
    if not isinstance(options, StudyOptions):
        raise IterationHeadsError(f"options must be StudyOptions, got {type(options).__name__}")
    config = data_config_of(model)
    seen = training_prompts(config)
    base = 10_000 + options.seed * 10
    fresh = {
        kind: held_out(make_ontology_problems(config.ontology, n, seed=base + i, kind=kind), seen)
        for i, (kind, n) in enumerate(
            [
                ("fictional", options.n_problems),
                ("world", options.n_problems),
                ("contradicting", options.n_problems),
            ]
        )
    }
    evaluations = {kind: evaluate_ontology(model, p) for kind, p in fresh.items()}
    false_ontology = make_ontology_problems(
        config.ontology, options.n_reference, seed=base + 5, kind="contradicting"
    ).tokens  # the means of mean ablation, position by position
    prompts = solved_prompts(model, ontology_prompts(fresh["fictional"], STUDIED_SUBTASKS))
    reference = _fit(false_ontology, prompts.clean.shape[1])
    patching = head_patching(model, prompts)
    rankings = {
        "patching": patching.ranking(),
        "ablation": ablation_ranking(model, prompts, reference),
    }
    pruning = {
        name: pruning_curve(model, prompts, ranking, reference, n_random=options.n_random // 4 or 1,
                            seed=options.seed)
        for name, ranking in rankings.items()
    }  # fmt: skip
    writers = answer_writers(model, prompts)
    contra, prior = contradiction_prompts(model, fresh["contradicting"])
    lens = logit_lens(model, contra, prior=prior, seed=options.seed)
    pathways = {scope: segment_pathways(model, prompts, scope=scope) for scope in ("answer", "all")}
    traced = prompts.select(torch.randperm(len(prompts), generator=torch.Generator().manual_seed(
        options.seed))[: options.n_traced])  # fmt: skip
    flow = trace_many(model, traced)
    example = trace_flow(model, traced, index=0)
    checks = _checks(model, prompts, patching, writers, flow, reference, options)
    most = max(1, model.cfg.n_layers * model.cfg.n_heads // 4)
    contra_writers = answer_writers(model, contra).writers(share=0.5)[:most]
    prior_result = prior_check(
        model, contra, prior, contra_writers, _fit(false_ontology, contra.clean.shape[1]),
        n_random=options.n_random, seed=options.seed,
    )  # fmt: skip
    return OntologyStudy(
        evaluations, patching, pruning, writers, lens, pathways, flow, example, checks,
        prior_result, model.cfg.n_layers, model.cfg.n_heads,
        OntologyVocab.of(config.ontology).names, options,
        _probes(model, config, options, seen) if options.n_probing else {},
        _horizon(model, config, options, seen) if options.n_horizon else None,
    )  # fmt: skip


def _probes(model: Any, config: OntologyDataConfig, options: StudyOptions,
            seen: Set[tuple[int, ...]]) -> dict[str, RelationProbes]:  # fmt: skip
    """Relation probes on fresh fictional problems, of the model and of random weights of its
    shape (where they must fall to chance)."""
    seed = 10_000 + options.seed * 10 + 6
    problems = held_out(make_ontology_problems(config.ontology, options.n_probing, seed=seed,
                                               kind="fictional"), seen)  # fmt: skip
    shape = model_config(model)
    random = build_model(dataclasses.replace(shape, seed=shape.seed + 1))
    return {name: relation_probes(m, problems, seed=options.seed)
            for name, m in (("model", model), ("random weights", random))}  # fmt: skip


def _horizon(model: Any, config: OntologyDataConfig, options: StudyOptions,
             seen: Set[tuple[int, ...]]) -> HorizonPatching:  # fmt: skip
    """The horizon experiment on fresh two-hop fictional problems."""
    two_hop = dataclasses.replace(config.ontology, hops=(HORIZON_HOPS,))
    seed = 10_000 + options.seed * 10 + 7
    problems = held_out(make_ontology_problems(two_hop, options.n_horizon, seed=seed,
                                               kind="fictional"), seen)  # fmt: skip
    return horizon_patching(model, problems, corruptions=HORIZON_CORRUPTIONS, seed=options.seed)


def _fit(reference: Tensor, width: int) -> Tensor:
    """``reference`` padded with ``<pad>`` (0) or cut to ``width`` positions."""
    if reference.shape[1] >= width:
        return reference[:, :width]
    return torch.nn.functional.pad(reference, (0, width - reference.shape[1]))


def _checks(
    model: Any,
    prompts: Prompts,
    patching: HeadPatching,
    writers: AnswerWriters,
    flow: FlowSummary,
    reference: Tensor,
    options: StudyOptions,
) -> dict[str, AblationCheck]:
    """Ablate what each analysis names (at most a quarter of the heads, the largest first, so
    that random sets of the same size exist), against as many random heads; noise the heads
    head patching names per subtask (the check that matches it)."""
    most = max(1, model.cfg.n_layers * model.cfg.n_heads // 4)
    named: dict[str, tuple[Prompts, list[Head]]] = {
        "answer writers": (prompts, writers.writers(share=0.5)[:most]),
    }
    noised: dict[str, tuple[Prompts, list[Head]]] = {}
    for label in STUDIED_SUBTASKS:
        if label in prompts.labels:
            group = prompts.group(label)
            named[f"top 3 patching heads, {label}"] = (group, patching.top(3, label))
            named[f"answer writers, {label}"] = (group, writers.writers(label, share=0.5)[:most])
            noised[f"noising: top 3 patching heads, {label}"] = (group, patching.top(3, label))
    table = flow.heads.sort_values("writer", ascending=False)
    table = table[table["writer"] >= 0.25]
    traced = [(int(la), int(h)) for la, h in zip(table["layer"], table["head"], strict=True)][:most]
    if traced:
        named["traced writers"] = (prompts, traced)
    checks = {
        name: ablation_check(model, group, chosen, reference, n_random=options.n_random,
                             seed=options.seed)
        for name, (group, chosen) in named.items()
        if chosen
    }  # fmt: skip
    noised["noised answer writers"] = named["answer writers"]
    for name, (group, chosen) in noised.items():
        checks[name] = noising_check(
            model, group, chosen, n_random=options.n_random, seed=options.seed
        )
    return checks
