from pathlib import Path

import pytest
import torch
from helpers import tiny_model

import iteration_heads.zoo
from iteration_heads import IterationHeadsError, Probes
from iteration_heads.detection import step_attention
from iteration_heads.detection.per_step import key_role
from iteration_heads.model import load

ZOO = Path(iteration_heads.zoo.__file__).parent


@pytest.fixture(scope="module")
def polynomial():
    model = load(ZOO / "polynomial_paper")
    return model, Probes.from_model(model, n=256)


def test_a_trained_iteration_head_reads_x_t_at_every_step(polynomial):
    model, probes = polynomial
    found = step_attention(model, probes, (1, 0))
    assert found.off_target() == []
    assert found.table.on_input.min() > 0.8
    assert len(found.table) == sum(range(1, probes.max_len + 1))  # every (L, t)
    assert found.table.top_key.tolist() == [f"x_{t}" for t in found.table.step]


def test_planted_reads_elsewhere_are_named_with_their_weight(polynomial):
    model, probes = polynomial

    def plant(pattern, hook):
        # step t = 2 of every sequence reads EoI, step t = 3 reads the first token
        planted = pattern.clone()
        for b in range(pattern.shape[0]):
            n = int(probes.lengths[start + b])
            for t, key in ((2, n + 1), (3, 0)):
                if t <= n:
                    query = int(probes.query_positions[start + b, t - 1])
                    planted[b, :, query] = 0.0
                    planted[b, :, query, key] = 1.0
        return planted

    start = 0  # one batch: every probe in one forward pass
    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", plant)]):
        found = step_attention(model, probes, (1, 0), batch_size=len(probes))
    off = found.off_target()
    expected = {(n, 2, "EoI", 1.0) for n in range(2, 9)} | {
        (n, 3, "first", 1.0) for n in range(3, 9)
    }
    assert set(off) == expected
    assert "L=8 t=2: EoI (1.00)" in found.format()


def test_key_roles_and_bad_inputs():
    probes = Probes(torch.zeros(2, 9, dtype=torch.long), lengths=3)
    assert [key_role(probes, 1, p) for p in range(9)] == [
        "first", "x_1", "x_2", "x_3", "EoI", "s_1", "s_2", "s_3", "other"
    ]  # fmt: skip
    model = tiny_model(max_len=3)
    with pytest.raises(IterationHeadsError, match=r"head \(layer=2, head=0\) does not exist"):
        step_attention(model, probes, (2, 0))
    with pytest.raises(IterationHeadsError, match="probes must be a Probes, got list"):
        step_attention(model, [[0, 1]], (1, 0))


def test_cli_detect_steps_prints_and_serialises_every_head(capsys):
    import json

    from iteration_heads.cli import main

    assert main(["detect", "polynomial_paper", "--n-probes", "64", "--steps"]) == 0
    text = capsys.readouterr().out
    assert "L0H0: weight on x_t at each step t" in text and "L1H0: weight on x_t" in text
    assert main(["detect", "polynomial_paper", "--n-probes", "64", "--steps", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [s["head"] for s in record["steps"]] == [[0, 0], [1, 0]]
    assert min(row["on_input"] for row in record["steps"][1]["steps"]) > 0.8


def test_one_pass_over_every_head_equals_one_head_at_a_time(polynomial):
    from iteration_heads.detection import steps_by_head

    model, probes = polynomial
    every = steps_by_head(model, probes, batch_size=100)
    assert sorted(every) == [(0, 0), (1, 0)]
    for head, found in every.items():
        alone = step_attention(model, probes, head)
        assert found.table.drop(columns="top_weight").equals(alone.table.drop(columns="top_weight"))
        assert (found.table.top_weight - alone.table.top_weight).abs().max() < 1e-6
    with pytest.raises(IterationHeadsError, match="no head given"):
        steps_by_head(model, probes, [])
