"""``plan_pathways``: the passes and tokens it plans for each analysis are those the command
runs, counted with a hook on the last block of the zoo ontology model; the memory refusal is one
line; the plan's table and JSON."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from iteration_heads import zoo
from iteration_heads.auditing.cost import ForwardTiming
from iteration_heads.cli.pathway_runs import run_analyses
from iteration_heads.cli.pathways import ANALYSES
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments.ontology_study import model_ontology
from iteration_heads.pathways import answer_writers, ontology_prompts
from iteration_heads.pathways.attribution import patching_rows
from iteration_heads.pathways.cost import plan_pathways
from iteration_heads.tasks import make_ontology_problems

TIMING = ForwardTiming(0.01, 1e-6)


@pytest.fixture(scope="module")
def model():
    return zoo.load("ontology")


@pytest.fixture(scope="module")
def prompts(model):
    made = ontology_prompts(
        make_ontology_problems(model_ontology(model), 2, seed=10_000, kind="fictional")
    )
    return made.select(list(range(0, len(made), 2)))  # 14 prompts of every label


def counted(model, prompts, chosen, method="auto", earlier=None):
    """Forward passes (rows x width of each) of ``run_analyses`` on ``chosen``."""
    calls: list[tuple[int, int]] = []
    handle = model.blocks[-1].register_forward_pre_hook(
        lambda module, args: calls.append(tuple(args[0].shape[:2]))
    )
    args = argparse.Namespace(chosen=chosen, seed=0, n_random=5, n_traced=8, centre="auto",
                              mean="position", prior="context-free", method=method)  # fmt: skip
    try:
        results, _ = run_analyses(model, prompts, args, earlier)
    finally:
        handle.remove()
    return calls, results


@pytest.mark.parametrize(
    "chosen",
    [
        ["patching"],
        ["writers"],
        ["lens"],
        ["segments"],
        ["flow"],
        ["pruning"],
        ["patching", "pruning"],
    ],
)
def test_planned_passes_and_tokens_are_those_run(model, prompts, chosen):
    calls, _ = counted(model, prompts, chosen)
    plan = plan_pathways(model, prompts, chosen, prior="context-free", timing=TIMING)
    assert sum(s.forwards for s in plan.stages) == len(calls)
    assert sum(s.tokens for s in plan.stages) == sum(r * w for r, w in calls)


@pytest.mark.parametrize("chosen", [["writers", "checks"], ["checks"], ["patching", "checks"]])
def test_checks_count_exactly_given_the_named_heads_and_bound_without(model, prompts, chosen):
    calls, _ = counted(model, prompts, chosen)
    n_heads = int(model.cfg.n_layers) * int(model.cfg.n_heads)
    named = answer_writers(model, prompts).writers(share=0.5)[: n_heads // 4]
    exact = plan_pathways(model, prompts, chosen, named=named, timing=TIMING)
    assert sum(s.forwards for s in exact.stages) == len(calls)
    assert sum(s.tokens for s in exact.stages) == sum(r * w for r, w in calls)
    bound = plan_pathways(model, prompts, chosen, timing=TIMING)
    assert sum(s.forwards for s in bound.stages) >= len(calls)
    assert bound.stages[-1].bound


def test_attribution_patching_counts_a_backward_pass_per_metric(model, prompts):
    exact = plan_pathways(model, prompts, ["patching"], method="exact", timing=TIMING)
    linear = plan_pathways(model, prompts, ["patching"], method="attribution", timing=TIMING)
    (e,), (a,) = exact.stages, linear.stages
    rows = patching_rows(model, int(prompts.position.max()) + 1, "exact")  # memory-budgeted
    pairs = len(prompts) * int(model.cfg.n_layers) * int(model.cfg.n_heads)
    assert (e.forwards, e.backwards) == (2 * -(-len(prompts) // rows) + -(-pairs // rows), 0)
    assert (a.name, a.forwards, a.backwards) == ("patching (attribution)", 2, 2)
    assert a.tokens == len(prompts) * 2 * (int(prompts.position.max()) + 1)


def test_skipped_analyses_and_the_table(model, prompts):
    plain = prompts.__class__(**{**prompts.__dict__, "corrupted": None, "info": None})
    plan = plan_pathways(model, plain, list(ANALYSES), timing=TIMING)
    assert dict(plan.skipped) == {"patching": "the prompts have no corrupted version",
                                  "lens": "no prior token"}  # fmt: skip
    text = plan.format()
    assert text.splitlines()[1].split() == ["analysis", "passes", "tokens", "est.", "time",
                                            "est.", "peak", "memory"]  # fmt: skip
    assert "fits in memory" in text and "skipped lens: no prior token" in text
    record = json.loads(plan.to_json())
    assert [s["name"] for s in record["stages"]] == ["writers", "segments", "pruning", "checks",
                                                      "flow"]  # fmt: skip
    assert record["fits"] and record["skipped"]["patching"]


def test_a_plan_that_does_not_fit_is_refused_in_one_line(model, prompts, monkeypatch):
    monkeypatch.setattr("iteration_heads.memory.available_memory", lambda: 10**6)
    plan = plan_pathways(model, prompts, ["writers", "patching"], timing=TIMING)
    message = plan.refusal()
    assert message is not None and "\n" not in message
    assert "patching needs about" in message and "1.0 MB free" in message
    assert "--n" in message and "--method attribution" in message
    with pytest.raises(IterationHeadsError, match="patching needs about"):
        plan.check_fits()


def test_bad_arguments(model, prompts):
    with pytest.raises(IterationHeadsError, match="expected some of"):
        plan_pathways(model, prompts, ["patch"], timing=TIMING)
    with pytest.raises(IterationHeadsError, match="n_random"):
        plan_pathways(model, prompts, ["writers"], n_random=0, timing=TIMING)
    with pytest.raises(IterationHeadsError, match="prompts must be Prompts"):
        plan_pathways(model, torch.zeros(2, 3), ["writers"], timing=TIMING)


def test_the_plan_keeps_the_commands_order_of_analyses(model, prompts):
    plan = plan_pathways(model, prompts, list(ANALYSES)[::-1], prior="context-free",
                         timing=TIMING)  # fmt: skip
    assert [s.name for s in plan.stages] == list(ANALYSES)


def test_dry_run_prints_the_plan_and_runs_no_analysis(capsys, monkeypatch):
    from iteration_heads.cli import main

    def refuse(*args, **kwargs):
        raise AssertionError("an analysis ran")

    monkeypatch.setattr("iteration_heads.cli.pathway_runs.run_analyses", refuse)
    argv = ["pathways", "ontology", "--ontology", "--n", "1", "--dry-run", "--threads", "1"]
    assert main([*argv, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in record["stages"]] == ["patching", "writers", "segments",
                                                      "pruning", "checks", "flow"]  # fmt: skip
    assert (
        record["fits"] and record["seconds"] > 0 and record["skipped"] == {"lens": "no prior token"}
    )
    assert main([*argv, "--analyses", "writers"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing runs" in out and "\n  writers   1 " in out


def test_a_real_run_that_does_not_fit_stops_in_one_line_and_writes_nothing(
    capsys, monkeypatch, tmp_path
):
    from iteration_heads.cli import main

    monkeypatch.setattr("iteration_heads.memory.available_memory", lambda: 10**4)
    out = tmp_path / "out.json"
    argv = ["pathways", "ontology", "--ontology", "--n", "1", "--analyses", "writers",
            "--out-json", str(out), "--threads", "1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "writers needs about" in err and "--n" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("chosen", [["pruning"], ["patching", "pruning"]])
def test_pruning_by_attribution_is_planned_as_run(model, prompts, chosen):
    from iteration_heads.pathways import LinearPruningCurve

    calls, results = counted(model, prompts, chosen, method="attribution")
    assert isinstance(results["pruning"], LinearPruningCurve)
    plan = plan_pathways(model, prompts, chosen, method="attribution", timing=TIMING)
    assert plan.stages[-1].name == "pruning (attribution)" and plan.stages[-1].backwards > 0
    assert sum(s.forwards for s in plan.stages) == len(calls)
    assert sum(s.tokens for s in plan.stages) == sum(r * w for r, w in calls)


@pytest.mark.parametrize("chosen", [["pruning"], ["patching", "pruning"]])
def test_auto_above_the_exact_budget_bisects_and_the_plan_bounds_the_run(
    model, prompts, chosen, monkeypatch
):
    from iteration_heads.pathways import PruningCurve

    monkeypatch.setattr("iteration_heads.pathways.cost.EXACT_BUDGET", 0.0)
    calls, results = counted(model, prompts, chosen)
    assert isinstance(results["pruning"], PruningCurve)
    assert results["pruning"].method == "bisection"
    plan = plan_pathways(model, prompts, chosen, timing=TIMING)
    stage = plan.stages[-1]
    assert stage.name == "pruning (bisection)" and stage.bound
    run = len(calls) - sum(s.forwards for s in plan.stages[:-1])
    tokens = sum(r * w for r, w in calls) - sum(s.tokens for s in plan.stages[:-1])
    assert 0 < run <= stage.forwards and 0 < tokens <= stage.tokens
    # the bound is tight: one variant per halving, k = 0 and the draws (here none are skipped)
    assert stage.tokens - tokens <= len(prompts) * int(prompts.position.max() + 1)


def test_earlier_results_are_read_as_a_full_run_reads_its_own(model, prompts):
    """Analyses run one at a time with the earlier ones' results pass as many tokens as one
    run of them all, and return only their own results."""
    chosen = ["patching", "writers", "pruning", "checks"]
    together, whole = counted(model, prompts, chosen)
    tokens, results = 0, {}
    for name in chosen:
        calls, new = counted(model, prompts, [name], earlier=dict(results))
        assert list(new) == (
            [name] if name != "checks" else ["checks: noising", "checks: ablation"]
        )
        tokens += sum(r * w for r, w in calls)
        results |= new
    assert tokens == sum(r * w for r, w in together)
    assert results["pruning"].to_dict() == whole["pruning"].to_dict()
    assert results["checks: ablation"].to_dict() == whole["checks: ablation"].to_dict()
