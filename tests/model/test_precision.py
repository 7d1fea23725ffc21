"""Casting a model to bfloat16 / float16 (iteration_heads.model.precision) and ``--dtype`` on
``iteration-heads pathways`` and ``audit``.

Agreement thresholds (test_bfloat16_agrees_with_float32): measured on this case (the zoo's
ontology model, 4 fictional problems, 52 prompts; AMD EPYC AVX512, torch 2.13 CPU): Spearman
over the 16 heads, float32 vs bfloat16, 0.997 (exact patching), 1.000 (attribution), 1.000
(writers' DLA); top-5 overlap 1.0 in all three; largest difference relative to the largest
float32 value 0.0043 / 0.0057 / 0.0012. The bounds below leave about twice that room (a
different BLAS sums in another order) and nothing else: a model left in float32 gives
differences of 0, and an analysis that mixed up dtypes or heads would move the ranks.
benchmarks/dtype_agreement.py measures the same on 180 + 132 prompts (min Spearman 0.959 on
one label of the Llama fixture, top-5 overlap 1.0 everywhere, relative difference <= 0.028).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import iteration_heads.model.precision as precision
from iteration_heads import IterationHeadsError, zoo
from iteration_heads.cli import main
from iteration_heads.model import load_hf_folder
from iteration_heads.model.precision import cast_model, dtype_named, model_dtype, unsupported

LLAMA = Path(__file__).parents[1] / "fixtures" / "llama_prontoqa"
MIN_SPEARMAN = {"exact": 0.98, "attribution": 0.98, "writers": 0.99}
MAX_RELATIVE = {"exact": 0.01, "attribution": 0.012, "writers": 0.003}


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ranks = [x.flatten().double().argsort().argsort().double() for x in (a, b)]
    return float(torch.corrcoef(torch.stack(ranks))[0, 1])


def top(values: torch.Tensor, k: int = 5) -> set[int]:
    return set(values.flatten().argsort(descending=True)[:k].tolist())


@pytest.fixture
def bfloat16_kernels(monkeypatch):
    """bfloat16 on this CPU for a test of numerics, not of speed. Where the CPU runs it natively
    (AVX512-BF16, AMX) nothing changes; where it only emulates it (AVX2: a 128 x 128 matmul 26x
    slower than in float32) the library refuses it for speed, so the speed check is lifted and
    the test runs on the emulated kernels, which compute bfloat16 results, slowly
    (test_this_cpu_gets_bfloat16_or_a_one_line_refusal covers the refusal itself)."""
    reason = unsupported(torch.bfloat16, "cpu")
    if reason is None:
        return
    no_kernels = torch.backends.cpu.get_cpu_capability() in precision.SLOW_CPU_CAPABILITIES
    if no_kernels or precision.cpu_slowdown(torch.bfloat16) == float("inf"):
        pytest.skip(f"bfloat16 does not run on this CPU: {reason}")
    monkeypatch.setattr(precision, "cpu_slowdown", lambda dtype: 1.0)


def ontology_case():
    from iteration_heads.experiments.ontology_study import model_ontology
    from iteration_heads.pathways import ontology_prompts
    from iteration_heads.tasks import make_ontology_problems

    model = zoo.load("ontology")
    problems = make_ontology_problems(model_ontology(model), 4, seed=10_000, kind="fictional")
    return model, ontology_prompts(problems)


def maps(model, prompts) -> dict[str, torch.Tensor]:
    from iteration_heads.pathways import answer_writers, head_patching

    return {
        "exact": head_patching(model, prompts, method="exact").kl_ratio["all"].float(),
        "attribution": head_patching(model, prompts, method="attribution").kl_ratio["all"].float(),
        "writers": answer_writers(model, prompts).dla["all"].float(),
    }


def test_bfloat16_agrees_with_float32(bfloat16_kernels):
    model, prompts = ontology_case()
    full = maps(model, prompts)
    assert cast_model(model, "bfloat16") is model and model_dtype(model) == torch.bfloat16
    half = maps(model, prompts)
    for name, a in full.items():
        b = half[name]
        assert spearman(a, b) >= MIN_SPEARMAN[name], name
        assert top(a) == top(b), name
        relative = float((a - b).abs().max() / a.abs().max())
        assert 0 < relative <= MAX_RELATIVE[name], (name, relative)  # 0: nothing was cast


def test_cast_changes_every_weight_and_the_config_and_keeps_rotary_frequencies(bfloat16_kernels):
    model = zoo.load("ontology")
    tokens = torch.randint(0, int(model.cfg.d_vocab), (2, 9))
    with torch.no_grad():
        before = model(tokens)
        cast_model(model, "bfloat16")
        after = model(tokens)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.cfg.dtype == torch.bfloat16 and after.dtype == torch.bfloat16
    assert 0 < float((before - after.float()).abs().max()) < 0.1 * float(before.abs().max())
    assert cast_model(model, torch.float32) is model and model_dtype(model) == torch.float32
    bridge, _ = load_hf_folder(LLAMA)
    cast_model(bridge, "bfloat16")
    buffers = dict(bridge.named_buffers())
    rotary = [n for n in buffers if n.endswith("inv_freq")]
    assert rotary and all(buffers[n].dtype == torch.float32 for n in rotary)
    assert model_dtype(bridge) == torch.bfloat16


def test_refusals_leave_the_model_as_it_was(monkeypatch):
    model = zoo.load("polynomial")
    with pytest.raises(IterationHeadsError, match="dtype 'int8': expected one of"):
        cast_model(model, "int8")
    with pytest.raises(IterationHeadsError, match="expected one of"):
        dtype_named(torch.float64)
    monkeypatch.setattr(precision, "cpu_slowdown", lambda dtype: 30.0)
    with pytest.raises(IterationHeadsError, match="runs 30x slower than in float32"):
        cast_model(model, "float16")
    monkeypatch.setattr(precision, "cpu_slowdown", lambda dtype: float("inf"))
    with pytest.raises(IterationHeadsError, match="matmul on this CPU fails"):
        cast_model(model, "bfloat16")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    with pytest.raises(IterationHeadsError, match=r"capability DEFAULT\) has no vectorised"):
        cast_model(model, "bfloat16")
    assert model_dtype(model) == torch.float32
    assert unsupported(torch.float32, "cpu") is None
    ints = torch.nn.Linear(2, 2)
    ints.weight = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.int8), requires_grad=False)
    with pytest.raises(IterationHeadsError, match="weights of dtype torch.int8"):
        cast_model(ints, "bfloat16")
    with pytest.raises(IterationHeadsError, match="has no parameters"):
        cast_model(torch.nn.ReLU(), "bfloat16")


def test_cpu_slowdown_is_measured():
    assert precision.cpu_slowdown(torch.float32) == 1.0
    assert 0 < precision.cpu_slowdown(torch.bfloat16) < float("inf")


def test_this_cpu_gets_bfloat16_or_a_one_line_refusal():
    """Unpatched: the cast works where this CPU runs bfloat16 at a useful speed, and where it
    does not (an AVX2 CPU emulates it) the refusal names the measured slowdown in one line and
    leaves every weight in float32."""
    model = zoo.load("polynomial")
    slowdown = precision.cpu_slowdown(torch.bfloat16)
    if unsupported(torch.bfloat16, "cpu") is None:
        assert slowdown <= precision.MAX_SLOWDOWN
        assert model_dtype(cast_model(model, "bfloat16")) == torch.bfloat16
        return
    with pytest.raises(IterationHeadsError) as refused:
        cast_model(model, "bfloat16")
    message = str(refused.value)
    assert message.startswith("dtype 'bfloat16': ") and message.endswith("; use float32 here")
    assert "\n" not in message
    if torch.backends.cpu.get_cpu_capability() in precision.SLOW_CPU_CAPABILITIES:
        assert "has no vectorised bfloat16 kernels" in message
    elif slowdown == float("inf"):
        assert "matmul on this CPU fails" in message
    else:
        assert f"runs {slowdown:.0f}x slower than in float32 (emulated)" in message
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize(
    ("command", "planner"),
    [
        (
            ["pathways", "ontology", "--ontology", "--n", "2", "--dry-run", "--json"],
            "iteration_heads.pathways.cost.plan_pathways",
        ),
        (
            ["audit", "polynomial", "--n-probes", "64", "--dry-run", "--json"],
            "iteration_heads.auditing.cost.plan_audit",
        ),
    ],
)
def test_the_cli_flag_reaches_the_model(command, planner, capsys, monkeypatch, bfloat16_kernels):
    import importlib

    module_name, _, name = planner.rpartition(".")
    module = importlib.import_module(module_name)
    plan = getattr(module, name)
    seen = []

    def spy(model, *args, **kwargs):
        seen.append(model_dtype(model))
        return plan(model, *args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    bytes_of = {}
    for dtype in ("float32", "bfloat16"):
        assert main([*command, "--dtype", dtype]) == 0
        bytes_of[dtype] = json.loads(capsys.readouterr().out)["weights_bytes"]
    assert seen == [torch.float32, torch.bfloat16]
    assert bytes_of["bfloat16"] * 2 == bytes_of["float32"]  # the dry-run plan's weights


def test_the_cli_refuses_float16_here_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(precision, "cpu_slowdown", lambda dtype: 30.0)
    assert main(["pathways", "ontology", "--ontology", "--dtype", "float16", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("iteration-heads: error: dtype 'float16'") and "\n" not in err


def test_an_audit_runs_on_bfloat16_weights(bfloat16_kernels):
    """The position route recomputes queries from the weights: in bfloat16 its consistency
    check allows bfloat16 rounding (it refused the model before)."""
    from iteration_heads import audit

    found = audit(cast_model(zoo.load("polynomial"), "bfloat16"), n_probes=64)
    assert found.solves_probes and found.route is not None
    assert found.format().startswith("iteration heads: iteration heads L1H0+L1H1")


def test_flow_tracing_refuses_bfloat16_and_the_command_skips_it(capsys, bfloat16_kernels):
    from iteration_heads.pathways import iteration_prompts, trace_flows
    from iteration_heads.tasks import DataConfig, make_dataset

    model = cast_model(zoo.load("polynomial_paper"), "bfloat16")
    data = make_dataset(DataConfig(max_len=4, n_train=2, n_test=2))
    with pytest.raises(IterationHeadsError, match="float32 weights only") as raised:
        trace_flows(model, iteration_prompts(data.test, data.layout))
    assert "\n" not in str(raised.value)
    argv = ["pathways", "ontology", "--ontology", "--n", "1", "--dtype", "bfloat16",
            "--analyses", "writers,flow", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    assert "skipped flow: flow tracing runs on float32 weights only" in capsys.readouterr().out
    assert main([*argv, "--dry-run"]) == 0
    assert "skipped flow: flow tracing runs on float32 weights only" in capsys.readouterr().out


def test_the_cli_offers_exactly_the_dtypes_precision_knows():
    from iteration_heads.cli.common import DTYPE_CHOICES

    assert tuple(precision.DTYPES) == DTYPE_CHOICES
