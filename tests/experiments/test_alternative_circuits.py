from pathlib import Path

import pandas as pd
import pytest

import iteration_heads.zoo
from iteration_heads import IterationHeadsError
from iteration_heads.detection.per_step import StepAttention
from iteration_heads.experiments import alternative_circuits
from iteration_heads.experiments.alternative_circuits import run_circuit, write_alternative_circuits

POLYNOMIAL = Path(iteration_heads.zoo.__file__).parent / "polynomial_paper"


def planted_one(head):
    """Layer 1 reads EoI at L=2, t=2 and the first token at L=2, t=1; layer 0 reads x_2 at
    L=2, t=2 and nothing useful at t=1."""
    layer = head[0]
    rows = []
    for t, (on_1, key_1, on_0) in enumerate([(0.1, "first", 0.2), (0.0, "EoI", 0.9)], start=1):
        on, key = (on_1, key_1) if layer == 1 else (on_0, "x_2" if on_0 > 0.5 else "EoI")
        rows.append({"length": 2, "step": t, "on_input": on, "top_key": key,
                     "top_weight": 1.0 - on if on < 0.5 else on})  # fmt: skip
    return StepAttention(head, pd.DataFrame(rows))


def planted(model, probes, heads=None):
    return {head: planted_one(head) for head in [(0, 0), (1, 0)]}


def test_the_steps_the_last_layer_leaves_are_matched_with_the_head_that_reads_x_t(monkeypatch):
    monkeypatch.setattr(alternative_circuits, "steps_by_head", planted)
    found = run_circuit(POLYNOMIAL, n_probes=16)
    assert found.covered == [(2, 1, None), (2, 2, (0, 0))]
    assert "L=2 t=1: nobody; L=2 t=2: L0H0" in found.markdown()
    assert found.summary["accuracy"] > 0.99  # the zoo model's last logged evaluation


def test_pages_and_bad_inputs(tmp_path):
    md, page = write_alternative_circuits(
        [POLYNOMIAL], tmp_path, command="cmd", labels=["the zoo's model"], n_probes=64
    )
    text = md.read_text()
    assert "### the zoo's model" in text and "<h2>the zoo&#x27;s model</h2>" in page.read_text()
    assert "Command: `cmd`" in text and "every step puts >= 0.5 on x_t" in text
    assert page.read_text().count("plotly.js v") == 1  # inlined once: no shared copy here
    (tmp_path / "plotly.min.js").write_text("// shared")
    _, shared = write_alternative_circuits([POLYNOMIAL], tmp_path, n_probes=64)
    assert "plotly.js v" not in shared.read_text() and 'src="plotly.min.js"' in shared.read_text()
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(IterationHeadsError, match="expected a non-empty list of run directories"):
        write_alternative_circuits(str(POLYNOMIAL), tmp_path)
    with pytest.raises(IterationHeadsError, match="2 labels for 1 runs; expected one each"):
        write_alternative_circuits([POLYNOMIAL], tmp_path, labels=["a", "b"])
    with pytest.raises(IterationHeadsError, match="is not a directory"):
        write_alternative_circuits([POLYNOMIAL], tmp_path / "missing")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_with_two_heads_a_layer_the_iteration_head_is_the_one_that_reads_x_t_most(monkeypatch):
    def table(head, on_inputs):
        rows = [{"length": 2, "step": t, "on_input": on, "top_key": "EoI", "top_weight": 1 - on}
                for t, on in enumerate(on_inputs, start=1)]  # fmt: skip
        return StepAttention(head, pd.DataFrame(rows))

    planted = {(0, 0): [0.0, 0.0], (1, 0): [0.9, 0.0], (1, 1): [0.1, 0.95]}
    monkeypatch.setattr(
        alternative_circuits,
        "steps_by_head",
        lambda model, probes, heads=None: {h: table(h, ons) for h, ons in planted.items()},
    )
    # L1H1 reads x_t most (mean 0.525 against 0.45); it leaves t = 1 to L1H0
    assert run_circuit(POLYNOMIAL, n_probes=16).covered == [(2, 1, (1, 0))]
