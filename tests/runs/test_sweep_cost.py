"""The cost estimate: each cell's budget times the throughput measured for its shape, once per
shape, and the sweep's wall time packed onto the slots."""

from __future__ import annotations

import pytest

from iteration_heads.errors import IterationHeadsError
from iteration_heads.runs import sweep_cost
from iteration_heads.runs.specs import polynomial_spec, transfer_spec
from iteration_heads.runs.sweep import SweepSpec, dry_run
from iteration_heads.runs.sweep_cost import CostEstimate, ShapeCost, estimate_cost


def test_cells_cost_their_budget_times_the_measured_throughput(monkeypatch) -> None:
    measured: list[int] = []

    def fake(spec):  # a step costs d_model ms, an evaluation 1 s, a detection 2 s
        measured.append(spec.model.d_model)
        return ShapeCost(step=spec.model.d_model / 1000, evaluation=1.0, detection=2.0)

    monkeypatch.setattr(sweep_cost, "measure_shape", fake)
    a, b = (
        polynomial_spec(0, d_model=16, max_len=4, epochs=30),
        polynomial_spec(1, d_model=16, max_len=4),
    )
    c = polynomial_spec(0, d_model=32, max_len=8, epochs=25)
    cost = estimate_cost([a, b, c], slots=2)
    assert measured == [16, 32]  # one measurement per shape, whatever the seed and budget
    # Lmax 4: 4 x 1024 sequences in batches of 256 = 16 steps per epoch, evaluated every 10
    assert cost.seconds[a.key()] == pytest.approx(30 * 16 * 0.016 + 4 * 1.0 + 2.0)
    assert cost.seconds[b.key()] == pytest.approx(200 * 16 * 0.016 + 21 * 1.0 + 2.0)
    # Lmax 8: 32 steps per epoch; 25 epochs give evaluations at 0, 10, 20 and the last, 25
    assert cost.seconds[c.key()] == pytest.approx(25 * 32 * 0.032 + 4 * 1.0 + 2.0)
    assert cost.wall == pytest.approx(max(cost.seconds[b.key()],
                                          cost.seconds[a.key()] + cost.seconds[c.key()]))  # fmt: skip
    assert cost.total == pytest.approx(sum(cost.seconds.values()))


def test_the_wall_time_packs_the_longest_cells_first() -> None:
    cost = CostEstimate({"a": 5.0, "b": 4.0, "c": 3.0, "d": 3.0}, slots=2, shapes=1,
                        probe_seconds=0.0)  # fmt: skip
    assert cost.wall == 8.0 and cost.total == 15.0
    assert CostEstimate({"a": 5.0}, slots=8, shapes=1, probe_seconds=0).wall == 5.0
    assert "15 s of run time, 8 s wall with 2 at a time" in cost.summary()


def test_a_step_budget_sets_the_cost_and_bad_input_is_refused(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(sweep_cost, "measure_shape",
                        lambda spec: ShapeCost(step=0.01, evaluation=0.0, detection=0.0))  # fmt: skip
    spec = SweepSpec.from_dict({"fixed": {"train.max_steps": 100, "train.epochs": 10**5},
                                "axes": {"data.max_len": [4, 8]}})  # fmt: skip
    text = dry_run(spec, tmp_path, estimate=True, slots=1)
    assert "estimated cost:" in text.splitlines()[1]
    cost = estimate_cost(spec.cells())
    # 100 steps, rounded up to whole epochs: 7 epochs of 16 steps, 4 epochs of 32 steps
    assert sorted(cost.seconds.values()) == pytest.approx([112 * 0.01, 128 * 0.01])
    with pytest.raises(IterationHeadsError, match="slots=0"):
        estimate_cost(spec.cells(), slots=0)
    with pytest.raises(IterationHeadsError, match="fine-tunes a run"):
        estimate_cost([transfer_spec(polynomial_spec(0), epochs=1, trainable=None)])
