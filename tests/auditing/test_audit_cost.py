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
