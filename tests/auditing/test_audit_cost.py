"""``plan_audit`` and ``audit --dry-run``: the passes the audit runs, counted with a hook on the
last block, within the plan (accuracy and detection exactly); the plan's JSON; the memory
refusal in one line."""

from __future__ import annotations

import json

import pytest

from iteration_heads import load
from iteration_heads.auditing import audit
from iteration_heads.auditing.cost import ForwardTiming, plan_audit, time_forward
from iteration_heads.cli import main
from iteration_heads.detection.probes import Probes


@pytest.fixture(scope="module")
def model():
    return load("polynomial_paper")


def test_the_audit_runs_within_its_plan(model):
    probes = Probes.from_model(model, n=256)
    calls: list[tuple[int, int]] = []
    handle = model.blocks[-1].register_forward_pre_hook(
        lambda module, args: calls.append(tuple(args[0].shape[:2]))
    )
    try:
        audit(model, probes)
    finally:
        handle.remove()
    plan = plan_audit(model, probes, timing=ForwardTiming(0.0, 0.0))
    accuracy, detection = plan.stages[:2]
    assert calls[:3] == [(256, 19), (256, 18), (256, 18)]  # detection runs the inputs to s_T-1
    assert (accuracy.forwards, detection.forwards, accuracy.bound) == (1, 2, False)
    assert len(calls) <= sum(s.forwards for s in plan.stages)
    assert sum(r * w for r, w in calls) <= sum(s.tokens for s in plan.stages)
    assert sum(r * w for r, w in calls[:3]) == accuracy.tokens + detection.tokens
    assert [s.name for s in plan_audit(model, probes, route=False, timing=ForwardTiming(0, 0))
            .stages] == ["accuracy", "detection", "ablation"]  # fmt: skip


def test_timing_is_measured_here(model):
    timing = time_forward(model, 19, backward=True)
    assert timing.per_token >= 0 and timing.overhead >= 0 and timing.backward >= 1
    assert 0.05 <= timing.scored <= 1.0  # a pass that skips the unembedding costs no more


def test_scored_passes_are_timed_without_the_unembedding(monkeypatch, model):
    """``scored`` comes from passes stopped at the final norm (no timed assertion: the share
    itself is measured in benchmarks/pathways_scale.py)."""
    from iteration_heads.auditing import cost

    stopped: list[int] = []
    original = cost.final_residual

    def counted(model, inputs, **options):
        stopped.append(len(inputs))
        return original(model, inputs, **options)

    monkeypatch.setattr(cost, "final_residual", counted)
    timing = time_forward(model, 19, rows=4)
    assert stopped == [4, 4, 4] and 0.05 <= timing.scored <= 1.0


def test_dry_run_json_and_refusal(capsys, monkeypatch, tmp_path):
    argv = ["audit", "polynomial_paper", "--n-probes", "64", "--threads", "1"]
    assert main([*argv, "--dry-run", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in record["stages"]] == ["accuracy", "detection", "route", "ablation"]
    assert record["fits"] and record["stages"][0]["forwards"] == 1
    monkeypatch.setattr(
        "iteration_heads.auditing.cost.free_memory", lambda model: (1000, "this machine")
    )
    report = tmp_path / "audit.html"
    assert main([*argv, "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "accuracy needs about" in err and "--n-probes" in err
    assert not report.exists()
    assert main([*argv, "--dry-run"]) == 0  # the plan says it does not fit, and runs nothing
    assert "does not fit: audit of 64 probes" in capsys.readouterr().out


# ---------------------------------------------------------------- across checkpoints


def tiny_run(root, epochs=(1, 2, 3)):
    """A run folder of library checkpoints ``checkpoint-<epoch>``: a tiny model trained one
    epoch at a time, saved after each of ``epochs``."""
    from helpers import tiny_data, tiny_model

    from iteration_heads import TrainConfig, save
    from iteration_heads.training import train

    model, data = tiny_model(max_len=4), tiny_data(max_len=4)
    config = TrainConfig(epochs=1, eval_every=1, threads=1, lr=3e-3)
    for epoch in range(1, max(epochs) + 1):
        train(model, data, config, progress=False)
        if epoch in epochs:
            metadata = {
                "task": "polynomial",
                "data": data.config.to_dict(),
                "summary": {"epochs": epoch},
            }
            save(model, root / f"checkpoint-{epoch}", metadata=metadata)
    return root


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("run"))


def test_the_checkpoint_plan_counts_the_passes_of_the_real_audit(run_folder, monkeypatch, capsys):
    import iteration_heads.auditing.checkpoints as checkpoints_module
    from iteration_heads.auditing import audit_checkpoints
    from iteration_heads.auditing.checkpoint_cost import plan_checkpoints

    calls: list[tuple[str, int, int]] = []
    opened = checkpoints_module.open_subject

    def counting(path, *args, **kwargs):  # every model the audit opens counts its passes
        subject = opened(path, *args, **kwargs)
        subject.model.blocks[-1].register_forward_pre_hook(
            lambda module, a: calls.append((path.name, *a[0].shape[:2]))
        )
        return subject

    monkeypatch.setattr(checkpoints_module, "open_subject", counting)
    result = audit_checkpoints(run_folder, n_probes=64)
    plan = plan_checkpoints(run_folder, n_probes=64, timing=ForwardTiming(0.0, 0.0))
    loading, accuracy, detection, check = plan.stages
    checked = int(result.table["state_sensitivity"].notna().sum())  # the state check ran there
    assert len(calls) == accuracy.forwards + detection.forwards + check.forwards * checked // 3
    assert sum(r * w for _, r, w in calls) == (
        accuracy.tokens + detection.tokens + check.tokens * checked // 3
    )
    assert plan.checkpoints == ("checkpoint-1", "checkpoint-2", "checkpoint-3")
    assert sorted({name for name, _, _ in calls}) == list(plan.checkpoints)
    assert (accuracy.bound, detection.bound, check.bound) == (False, False, True)
    assert loading.forwards == 0 and loading.name == "loading x3"

    monkeypatch.setattr(checkpoints_module, "open_subject", opened)
    assert main(["audit", str(run_folder), "--n-probes", "64", "--dry-run", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in plan.checkpoints), out
    assert "accuracy x3" in out and "timed once, on checkpoint-1, for the 3" in out
    assert main(["audit", str(run_folder), "--n-probes", "64", "--dry-run", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["checkpoints"] == list(plan.checkpoints)
    assert [s["forwards"] for s in record["stages"]] == [s.forwards for s in plan.stages]


def test_the_checkpoint_plan_refuses_what_does_not_fit(run_folder, monkeypatch, capsys):
    monkeypatch.setattr(
        "iteration_heads.auditing.checkpoint_cost.free_memory", lambda model: (1000, "this machine")
    )
    assert main(["audit", str(run_folder), "--n-probes", "64", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "does not fit: audit of 3 checkpoints" in out and "--n-probes" in out


def test_the_state_check_runs_where_heads_are_found_and_as_planned(monkeypatch):
    import iteration_heads.auditing.checkpoints as checkpoints_module
    from iteration_heads.auditing import TaskWriting, audit_checkpoints
    from iteration_heads.auditing.checkpoint_cost import plan_checkpoints

    folder = "tests/fixtures/gpt2_text_polynomial/checkpoints"  # heads form at its 4th of 5
    writing = TaskWriting(template="<s> {inputs} {eoi} {states} </s>")
    calls: list[int] = []
    opened = checkpoints_module.open_subject

    def counting(path, *args, **kwargs):
        subject = opened(path, *args, **kwargs)
        subject.model.blocks[-1].register_forward_pre_hook(lambda m, a: calls.append(1))
        return subject

    monkeypatch.setattr(checkpoints_module, "open_subject", counting)
    result = audit_checkpoints(folder, writing, n_probes=64)
    plan = plan_checkpoints(folder, writing, n_probes=64, timing=ForwardTiming(0.0, 0.0))
    checked = int(result.table["state_sensitivity"].notna().sum())
    _, accuracy, detection, check = plan.stages
    assert checked == 2 and check.forwards % 5 == 0
    assert len(calls) == accuracy.forwards + detection.forwards + check.forwards * checked // 5
