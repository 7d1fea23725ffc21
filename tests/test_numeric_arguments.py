"""Every numeric argument of every public function is checked: an int-typed parameter refuses
2.5 and True, a float-typed one True and NaN, with a one-line IterationHeadsError.

The public functions are enumerated from ``__all__`` (the package's and each covered
subpackage's); each int- or float-typed parameter is found from its signature. ``CALLS`` holds
the smallest valid arguments of each function; a function missing from it fails the test, so a
new public function needs a row here."""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import fixture_tokenizer, tiny_data, tiny_model

import iteration_heads.zoo
from iteration_heads import (
    DataConfig,
    IterationHeadsError,
    ModelConfig,
    Probes,
    TrainConfig,
    build_model,
    corrupt,
    detect,
)
from iteration_heads.auditing import TaskWriting
from iteration_heads.detection.encoding import TextEncoding
from iteration_heads.experiments.ontology_study import model_ontology
from iteration_heads.interventions import as_batch
from iteration_heads.model import Weights, model_config
from iteration_heads.pathways import (
    answer_writers,
    iteration_prompts,
    linear_pruning_curve,
    pruning_curve,
)
from iteration_heads.runs import LocalExecutor, RunSpec, SweepSpec, copy_spec
from iteration_heads.tasks import (
    OntologyConfig,
    OntologyDataConfig,
    ProntoQAConfig,
    get_task,
    make_ontology_dataset,
    make_ontology_problems,
)

SUBPACKAGES = (
    "detection", "interventions", "pathways", "viz", "tasks", "model",
    "training", "auditing", "runs", "experiments",
)  # fmt: skip
"""Covered here: every subpackage with public functions (cli and zoo are not libraries)."""

ZOO = Path(iteration_heads.zoo.__file__).parent
FIXTURES = Path(__file__).parent / "fixtures"
TEXT_WRITING = TaskWriting(template="<s> {inputs} {eoi} {states} </s>")


def public_callables() -> dict[str, Callable[..., Any]]:
    """``name -> function or class`` of every public callable of the covered subpackages (and
    the package's own exports that come from them)."""
    found: dict[str, Callable[..., Any]] = {}
    for module_name in ["iteration_heads", *(f"iteration_heads.{p}" for p in SUBPACKAGES)]:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            home = getattr(obj, "__module__", "") or ""
            if not callable(obj) or home.split(".")[1:2] not in ([p] for p in SUBPACKAGES):
                continue
            found[name] = obj
    return found


def numeric_parameters(obj: Callable[..., Any]) -> list[tuple[str, str]]:
    """``(parameter, "int" | "ints" | "float")``: int-typed (a value or a collection of them)
    and float-typed parameters."""
    result = []
    for p in inspect.signature(obj).parameters.values():
        text = str(p.annotation)
        if text.startswith(("Callable", "dict")):
            continue
        top = re.sub(r"\[.*\]", "[]", text)  # the outer alternatives only
        if re.search(r"(^|\| )int( \||$)", top):
            result.append((p.name, "int"))
        elif re.search(r"\bint\b", text):
            result.append((p.name, "ints"))
        elif re.search(r"(^|\| )float( \||$)", top):
            result.append((p.name, "float"))
    return result


RESULT_TYPES = {
    # results and records the library builds (their fields are measurements, not inputs)
    "ActivationPatching", "DetectionReport", "Circuit", "IterationHeads", "PositionShift",
    "Verification", "AblationCheck", "FlowEdge", "FlowGraph", "FlowNode", "HeadPatching",
    "LogitLens", "PruningCurve", "Rift", "Weights", "Evaluation", "Audit", "Effect", "Scores",
    "Split", "Dataset", "OntologyProblems", "OntologyDataset", "StepAttention", "Batch",
    "AnswerWriters", "SegmentPathways", "FlowSummary", "Prompts", "AttentionView",
    "OntologyEvaluation", "PositionRoute", "RunResult", "ProntoQAProblem", "LinearPruningCurve",
    "RelationPairs", "RelationProbes", "HorizonPatching",
}  # fmt: skip


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    model = tiny_model(max_len=4, n_heads=2)
    data = tiny_data(max_len=4, n_test=16)
    split = data.test
    probes = as_batch(model, split).as_probes("detection")
    prompts = iteration_prompts(split, data.layout)
    heads = [(layer, h) for layer in range(2) for h in range(2)]
    reference = split.tokens[:8]
    ontology = make_ontology_problems(OntologyConfig(hops=(1,)), 4)
    ontology_model = build_model(
        ModelConfig(d_model=16, n_layers=1, d_vocab_=ontology.vocab.size, n_ctx_=64)
    )
    zoo_ontology = iteration_heads.zoo.load("ontology")
    horizon = make_ontology_problems(model_ontology(zoo_ontology), 2, seed=7, kind="fictional")
    return {
        "model": model,
        "split": split,
        "bad": corrupt(split, "input", task="polynomial"),
        "probes": probes,
        "prompts": prompts,
        "layout": data.layout,
        "heads": heads,
        "reference": reference,
        "report": detect(model, probes),
        "curve": pruning_curve(model, prompts, heads, reference, ks=[1], n_random=1),
        "linear": linear_pruning_curve(
            model, prompts, heads, reference, ks=[1], n_random=1, steps=1, candidates=2
        ),
        "weights": Weights.of(model, model_config(model)),
        "writers": answer_writers(model, prompts),
        "tmp": tmp_path_factory.mktemp("numeric"),
        "ontology": ontology,
        "ontology_model": ontology_model,
        "ontology_data": make_ontology_dataset(OntologyDataConfig(n_train=8, n_test=8)),
        "task_probes": Probes.from_model(model, task="polynomial", n=16),
        "zoo_ontology": zoo_ontology,
        "horizon": horizon,
        "horizon_start": (horizon.tokens == horizon.vocab.id("=>")).float().argmax(1) + 1,
    }


TINY_RUN = RunSpec(
    DataConfig(task="copy", max_len=3, n_train=16, n_test=16),
    ModelConfig(d_model=16, max_len=3, n_layers=1, n_heads=1),
    TrainConfig(epochs=1, batch_size=16, eval_every=1, checkpoint_every=0, threads=1),
)
"""A run that trains in a fraction of a second."""


def _figure(s: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    return go.Figure()


CALLS: dict[str, Callable[[dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]] = {
    # interventions
    "ablate": lambda s: ((s["model"], [(0, 0)]), {"kind": "mean", "reference": s["reference"]}),
    "ablation_effect": lambda s: ((s["model"], [(0, 0)], s["split"]), {}),
    "activation_patching": lambda s: ((s["model"], s["split"], s["bad"]), {}),
    "corrupt": lambda s: ((s["split"], "input"), {"task": "polynomial"}),
    "patch_pattern": lambda s: ((s["model"], (1, 0), "uniform"), {"lengths": s["split"].lengths}),
    "path_patch": lambda s: (
        (s["model"], s["split"], s["bad"]),
        {"sender": (0, 0), "receiver": (1, 0)},
    ),
    "pattern_effect": lambda s: ((s["model"], (1, 0), "uniform", s["split"]), {}),
    "position_shift": lambda s: (
        (s["model"], s["split"]),
        {"eoi_heads": [(0, 0)], "iteration_heads": [(1, 0)], "task": "polynomial"},
    ),
    "verify": lambda s: ((s["model"], s["report"], s["split"]), {}),
    "as_batch": lambda s: ((s["model"], s["split"]), {}),
    "head_outputs": lambda s: ((s["model"], s["reference"], [0]), {}),
    "ideal_pattern": lambda s: (("iteration", s["split"].lengths, 11), {}),
    "run_scored": lambda s: ((s["model"], as_batch(s["model"], s["split"])), {}),
    # detection
    "detect": lambda s: ((s["model"], s["probes"]), {}),
    "Probes": lambda s: ((s["split"].tokens, 2), {"eoi": 3, "input_start": 1, "cot_start": 4}),
    "spread_over_lengths": lambda s: ((s["split"].lengths, 4), {}),
    "step_attention": lambda s: ((s["model"], s["probes"], (1, 0)), {}),
    "steps_by_head": lambda s: ((s["model"], s["probes"]), {}),
    # pathways
    "ablation_check": lambda s: ((s["model"], s["prompts"], [(1, 0)], s["reference"]), {}),
    "answer_writers": lambda s: ((s["model"], s["prompts"]), {}),
    "context_free_prior": lambda s: ((s["model"], s["prompts"]), {}),
    "head_patching": lambda s: ((s["model"], s["prompts"]), {}),
    "sharded_head_patching": lambda s: (("polynomial_paper", s["prompts"], LocalExecutor(1)), {}),
    "iteration_prompts": lambda s: ((s["split"], s["layout"]), {}),
    "iteration_records": lambda s: (
        (TextEncoding(fixture_tokenizer(), "<s> {inputs} {eoi} {states} </s>"),),
        {"n": 1, "max_len": 3},
    ),
    "prompts_from_records": lambda s: (([{"tokens": [0, 1, 2], "step": {"token": 2}}],), {}),
    "knockout_mask": lambda s: ((s["prompts"], frozenset({0}), "answer"), {}),
    "lens_logits": lambda s: ((s["model"], s["prompts"].clean, s["prompts"].position), {}),
    "logit_lens": lambda s: ((s["model"], s["prompts"]), {"n_boot": 2}),
    "noising_check": lambda s: ((s["model"], s["prompts"], [(1, 0)]), {"n_random": 1}),
    "pruned_logits": lambda s: ((s["model"], s["prompts"], [(1, 0)], s["reference"]), {}),
    "pruned_predictions": lambda s: ((s["model"], s["prompts"], [[(1, 0)]], s["reference"]), {}),
    "pruning_curve": lambda s: (
        (s["model"], s["prompts"], s["heads"], s["reference"]),
        {"ks": [1], "n_random": 1},
    ),
    "linear_pruning_curve": lambda s: (
        (s["model"], s["prompts"], s["heads"], s["reference"]),
        {"ks": [1], "n_random": 1, "steps": 1, "candidates": 2},
    ),
    "pruning_sweep": lambda s: ((s["model"], s["heads"], None), {"n_random": 1, "seed": 0}),
    "bisected_pruning_curve": lambda s: (
        (s["model"], s["prompts"], s["heads"], s["reference"]),
        {"n_random": 1, "threshold": 0.5},
    ),
    "random_head_sets": lambda s: ((s["model"], [(1, 0)]), {"n_random": 1, "seed": 0}),
    "rift_layer": lambda s: ((torch.tensor([0.0, 1.0]),), {}),
    "fit_relation_probes": lambda s: (
        (
            torch.randn(1, 400, 4),
            torch.arange(400) % 2,
            torch.randperm(800, generator=torch.Generator().manual_seed(0)).reshape(400, 2) % 40,
        ),
        {"epochs": 2, "min_per_class": 1},
    ),
    "relation_pairs": lambda s: (
        (torch.tensor([[5, 1, 6]]), [[(0, 2)]]),
        {"names": [[(0, 1)]]},
    ),
    "relation_probes": lambda s: (
        (s["ontology_model"], make_ontology_problems(OntologyConfig(hops=(1,)), 100)),
        {"layers": [0], "epochs": 2, "min_per_class": 1},
    ),
    "horizon_patching": lambda s: (
        (s["zoo_ontology"], s["horizon"]),
        {"corruptions": ["last"], "prefixes": [0]},
    ),
    "corrupt_fact": lambda s: ((s["horizon"],), {}),
    "patched_generation": lambda s: (
        (s["zoo_ontology"], s["horizon"].tokens, s["horizon_start"]),
        {"max_new": 1},
    ),
    "patched_logits": lambda s: (
        (s["zoo_ontology"], s["horizon"].tokens, s["horizon"].tokens, s["horizon_start"], [0]),
        {},
    ),
    "segment_pathways": lambda s: ((s["model"], s["prompts"]), {}),
    "sequence_accuracy": lambda s: ((s["model"], s["prompts"]), {}),
    "solved_prompts": lambda s: ((s["model"], s["prompts"]), {}),
    "step_accuracy": lambda s: ((s["model"], s["prompts"]), {}),
    "trace_flow": lambda s: ((s["model"], s["prompts"]), {}),
    "trace_flows": lambda s: ((s["model"], s["prompts"]), {}),
    "trace_many": lambda s: ((s["model"], s["prompts"]), {}),
    # viz
    "attention_heatmap": lambda s: ((s["model"], s["probes"]), {}),
    "attention_view": lambda s: ((s["model"], s["probes"]), {}),
    "report_html": lambda s: ((ZOO / "polynomial_paper",), {"n_probes": 16}),
    "write_report": lambda s: ((ZOO / "polynomial_paper", s["tmp"] / "r.html"), {"n_probes": 16}),
    "pruning_chart": lambda s: ((s["curve"],), {}),
    "linear_pruning_chart": lambda s: ((s["linear"],), {}),
    "save_png": lambda s: ((_figure(s), s["tmp"] / "f.png"), {}),
    "writers_chart": lambda s: ((s["writers"],), {}),
    # tasks
    "DataConfig": lambda s: ((), {}),
    "OntologyConfig": lambda s: ((), {}),
    "OntologyDataConfig": lambda s: ((), {}),
    "TokenLayout": lambda s: ((("polynomial",), 11), {}),
    "Task": lambda s: (("t", 2, (0, 1), lambda state, x: state), {"init": 0}),
    "make_ontology_problems": lambda s: ((OntologyConfig(), 4), {}),
    "ProntoQAConfig": lambda s: ((), {}),
    "make_problem": lambda s: ((ProntoQAConfig(), 0), {}),
    "make_prontoqa": lambda s: ((ProntoQAConfig(), 1), {}),
    # model
    "ModelConfig": lambda s: ((), {}),
    "paper_parameter_count": lambda s: ((16, 4), {}),
    "forward": lambda s: ((s["weights"], s["reference"]), {}),
    # training
    "TrainConfig": lambda s: ((), {}),
    "evaluate": lambda s: ((s["model"], s["split"]), {}),
    "evaluate_ontology": lambda s: ((s["ontology_model"], s["ontology"]), {}),
    "score_heads": lambda s: (
        (torch.ones(1, 2, 1, 1), torch.ones(1, 2, dtype=torch.bool), torch.tensor([2]), [2]),
        {},
    ),
    "train_seeds": lambda s: ((TINY_RUN.model, TINY_RUN.data, TINY_RUN.train, [0]), {}),
    # auditing
    "TaskWriting": lambda s: ((), {}),
    "audit": lambda s: ((s["model"], s["task_probes"]), {"max_controls": 0, "route": False}),
    "audit_checkpoints": lambda s: (
        (FIXTURES / "gpt2_text_polynomial" / "checkpoints", TEXT_WRITING),
        {"n_probes": 16},
    ),
    "check_token_layout": lambda s: ((None,), {}),
    "components_before": lambda s: ((s["model"], 1), {}),
    "longest_fitting": lambda s: (
        (TaskWriting("parity", symbol_tokens=(0, 1), eoi_token=2).encoding(None),),
        {"task": get_task("parity"), "n_ctx": 8},
    ),
    "needed_accuracy": lambda s: ((0.5,), {}),
    "open_subject": lambda s: (("polynomial_paper",), {"n_probes": 16}),
    "position_route": lambda s: ((s["model"], s["task_probes"], [(1, 0)]), {"eoi_heads": [(0, 0)]}),
    "probe_accuracy": lambda s: ((s["model"], s["task_probes"]), {}),
    # experiments
    "Experiment": lambda s: (("e", "an experiment", lambda seeds, epochs: {}, ()), {}),
    "LocalExecutor": lambda s: ((), {}),
    "RayExecutor": lambda s: ((), {}),
    "SlurmExecutor": lambda s: ((s["tmp"] / "jobs",), {"cluster": "local"}),
    "copy_spec": lambda s: ((), {}),
    "estimate_cost": lambda s: (([],), {}),
    "make_executor": lambda s: ((), {}),
    "mean_spread": lambda s: (([0.5],), {}),
    "ontology_model_config": lambda s: ((s["ontology_data"],), {}),
    "paper_spec": lambda s: ((0,), {}),
    "polynomial_spec": lambda s: ((0,), {}),
    "reproduce": lambda s: (
        (["emergence"],),
        {"runs": s["tmp"] / "runs", "out": s["tmp"] / "out", "seeds": [0], "log": str},
    ),
    "run_all": lambda s: (([], s["tmp"] / "runs"), {}),
    "run_sweep": lambda s: ((SweepSpec(), s["tmp"] / "sweep"), {"log": str}),
    "transfer_spec": lambda s: ((copy_spec(),), {"epochs": 1, "trainable": None}),
}
"""The smallest valid call of each public function with a numeric parameter."""

SLOW_WHEN_VALID = {
    "save_png": "a browser",
    "report_html": "a model per call",
    "write_report": "a model per call",
    "RayExecutor": "starts a Ray cluster",
    "sharded_head_patching": "starts worker processes",
    "reproduce": "trains an experiment's runs",
    "run_sweep": "trains its cell in a worker process",
    "audit_checkpoints": "detects on every checkpoint of a run",
}
"""Calls whose valid form starts long work: only their refusals are tested (each check runs
before any work)."""

NOT_VALIDATED_HERE: dict[str, str] = {}
"""Public callables left out, with the reason (none at present)."""


def bad_values(kind: str) -> list[Any]:
    if kind == "int":
        return [2.5, True]
    if kind == "ints":
        return [[2.5], [True]]
    return [True, math.nan]


def cases() -> Iterator[tuple[str, str, str]]:
    for name, obj in sorted(public_callables().items()):
        if name in RESULT_TYPES or name in NOT_VALIDATED_HERE:
            continue
        for parameter, kind in numeric_parameters(obj):
            yield name, parameter, kind


CASES = list(cases())


def test_every_public_function_with_a_numeric_parameter_has_a_call() -> None:
    named = {name for name, _, _ in CASES}
    missing = sorted(named - set(CALLS))
    assert not missing, f"add the smallest valid call of {missing} to CALLS"
    assert set(CALLS) <= named, sorted(set(CALLS) - named)
    assert len(CASES) >= 60


def _call(obj: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    result = obj(*args, **kwargs)
    if hasattr(result, "__enter__"):  # a context manager: the check may run on entry
        with result:
            pass


@pytest.mark.parametrize(("name", "parameter", "kind"), CASES, ids=[":".join(c) for c in CASES])
def test_a_bad_number_is_refused_with_a_one_line_error(
    ns: dict[str, Any], name: str, parameter: str, kind: str
) -> None:
    obj = public_callables()[name]
    args, kwargs = CALLS[name](ns)
    signature = inspect.signature(obj)
    bound = signature.bind_partial(*args, **kwargs)
    for value in bad_values(kind):
        arguments = dict(bound.arguments)
        arguments[parameter] = value
        call = signature.bind(**arguments)
        with pytest.raises(IterationHeadsError) as caught:
            _call(obj, call.args, call.kwargs)
        message = str(caught.value)
        shown = repr(value[0] if isinstance(value, list) else value)
        assert "\n" not in message and parameter in message and shown in message, message


def test_the_smallest_calls_are_valid(ns: dict[str, Any]) -> None:
    """The table's calls succeed (so a refusal above is the bad number's)."""
    functions = public_callables()
    for name, make in CALLS.items():
        if name not in SLOW_WHEN_VALID:
            args, kwargs = make(ns)
            _call(functions[name], args, kwargs)
