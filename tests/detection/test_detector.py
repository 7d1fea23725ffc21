import json
from pathlib import Path

import pytest
import torch
from helpers import FIXTURES, gpt2, library_probes, llama, tiny_model, trained_gpt2
from transformer_lens.head_detector import compute_head_attention_similarity_score

import iteration_heads.zoo
from iteration_heads import (
    DetectionReport,
    IterationHeadsError,
    ModelConfig,
    Probes,
    build_model,
    detect,
)
from iteration_heads.cli import main
from iteration_heads.detection import MIN_PEAKINESS
from iteration_heads.model import load, model_metadata

ZOO = Path(iteration_heads.zoo.__file__).parent


MODELS = {  # name: builder(seed)
    "native 2x1": lambda seed=0: tiny_model(max_len=8, seed=seed),
    "native 3x2": lambda seed=0: tiny_model(
        max_len=8, n_layers=3, n_heads=2, d_model=64, seed=seed
    ),
    "gpt2 2x2": lambda seed=0: gpt2(seed=seed),
    "gpt2 3x2": lambda seed=0: gpt2(n_layer=3, seed=seed),
    "llama 2x2": lambda seed=0: llama(seed=seed),
}


def ideal(probes: Probes, target) -> torch.Tensor:
    """A [batch, pos, pos] pattern: query q attends to target(b, q) (or to itself if None)."""
    pattern = torch.zeros(len(probes), probes.width, probes.width)
    for b in range(len(probes)):
        for q in range(probes.width):
            key = target(b, q)
            pattern[b, q, q if key is None else key] = 1.0
    return pattern


def eoi_target(probes, steps=None):
    def target(b, q):
        c, n = int(probes.cot_start[b]), int(probes.lengths[b])
        t = q - c + 1  # the query at s_t
        if 1 <= t <= n and (steps is None or t in steps):
            return int(probes.eoi[b])
        return None

    return target


def iteration_target(probes, a=1, shift=0, steps=None, lengths=None):
    def target(b, q):
        c, e, n = int(probes.cot_start[b]), int(probes.eoi[b]), int(probes.lengths[b])
        t = 1 if q == e else q - c + 2  # the query before s_t
        if not 1 <= t <= n or (q != e and q < c) or (lengths is not None and n not in lengths):
            return None
        if steps is not None and t not in steps:
            return None
        key = a * t + shift
        return int(probes.input_start[b]) + key - 1 if 1 <= key <= n else None

    return target


def plant(model, plan: dict[tuple[int, int], torch.Tensor], probes: Probes):
    """Hooks forcing each (layer, head) of ``plan`` to its [batch, pos, pos] pattern over
    ``probes``. Detection runs the probes in passes of its own choosing (grouped by width,
    truncated after the last state), so each row of a pass is matched to a probe by its tokens
    up to the EoI (the layout; the states differ in the state-swapping pass)."""
    running = {}
    upto_eoi = torch.arange(probes.width)[None, :] <= probes.eoi[:, None]

    def record(tokens, hook):
        width = tokens.shape[1]
        equal = tokens[:, None, :] == probes.tokens[None, :, :width].to(tokens.device)
        same = (equal | ~upto_eoi[None, :, :width].to(tokens.device)).all(-1)
        assert bool(same.any(1).all()), "a row of the pass is not one of the probes"
        running["rows"], running["width"] = same.float().argmax(1), width

    def hook_for(layer):
        def fn(pattern, hook):
            pattern = pattern.clone()
            rows, width = running["rows"], running["width"]
            for (at, h), forced in plan.items():
                if at == layer:
                    pattern[:, h] = forced[rows][:, :width, :width].to(pattern.dtype)
            return pattern

        return fn

    layers = sorted({layer for layer, _ in plan})
    hooks = [("embed.hook_in", record)]
    hooks += [(f"blocks.{n}.attn.hook_pattern", hook_for(n)) for n in layers]
    return model.hooks(fwd_hooks=hooks)


# ---------------------------------------------------------------- 1. planted patterns


@pytest.mark.parametrize("name", list(MODELS))
def test_planted_ideal_heads_are_found_and_nothing_else(name):
    model = MODELS[name]()
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    probes = library_probes(200)
    eoi_head, it_head = (0, n_heads - 1), (n_layers - 1, 0)
    plan = {
        eoi_head: ideal(probes, eoi_target(probes)),
        it_head: ideal(probes, iteration_target(probes)),
    }
    with plant(model, plan, probes):
        report = detect(model, probes)
    heads = report.heads.set_index(["layer", "head"])
    for head, kind in ((eoi_head, "eoi"), (it_head, "iteration")):
        row = heads.loc[head]
        for metric in ("mean", "peakiness", "invariance", "tl_score"):
            assert row[f"{kind}_{metric}"] == pytest.approx(1.0, abs=1e-5), (kind, metric)
    assert report.found("eoi") == [eoi_head] and report.found("iteration") == [it_head]
    others = report.heads[
        ~report.heads.set_index(["layer", "head"]).index.isin([eoi_head, it_head])
    ]
    assert (others["role"] == "").all()
    assert (others[["eoi_peakiness", "iteration_peakiness"]] < MIN_PEAKINESS).all().all()
    circuit = report.circuit
    assert circuit.attention_found
    assert (circuit.eoi_layer, circuit.iteration_layer) == (eoi_head[0], it_head[0])
    assert circuit.eoi_heads == (eoi_head[1],) and circuit.iteration_heads == (it_head[1],)


def test_planted_heads_with_a_bos_offset_and_foreign_vocabulary():
    model = gpt2(vocab=64, n_ctx=24)
    symbols = {v: 30 + v for v in range(11)}
    probes = Probes.from_task(
        "polynomial",
        symbol_to_token=symbols,
        eoi_token=50,
        bos_token=63,
        task_token=60,
        max_len=8,
        n=128,
    )
    assert probes.input_start.tolist() == [2] * 128 and probes.width == 19
    assert probes.tokens[0, :2].tolist() == [63, 60]
    plan = {
        (0, 1): ideal(probes, eoi_target(probes)),
        (1, 0): ideal(probes, iteration_target(probes)),
    }
    with plant(model, plan, probes):
        report = detect(model, probes)
    assert report.found("eoi") == [(0, 1)] and report.found("iteration") == [(1, 0)]
    assert report.heads.loc[2, "iteration_peakiness"] == pytest.approx(1.0)


def test_positions_may_differ_from_probe_to_probe():
    base = library_probes(120)
    shifted = torch.arange(len(base)) % 2 == 1  # every other probe left-padded by one token
    tokens = torch.full((len(base), base.width + 1), 13)
    tokens[~shifted, :-1] = base.tokens[~shifted]
    tokens[shifted, 1:] = base.tokens[shifted]
    probes = Probes(tokens, base.lengths, input_start=1 + shifted.long())
    assert probes.eoi.tolist()[:2] == [base.eoi[0].item(), base.eoi[1].item() + 1]
    model = gpt2(n_ctx=24)
    plan = {
        (0, 0): ideal(probes, eoi_target(probes)),
        (1, 1): ideal(probes, iteration_target(probes)),
    }
    with plant(model, plan, probes):
        report = detect(model, probes)
    assert report.found("eoi") == [(0, 0)] and report.found("iteration") == [(1, 1)]


def test_a_circuit_spread_over_heads_is_found_through_the_layer_sum():
    model = gpt2(n_layer=2, n_head=3, n_embd=48)
    probes = library_probes(200)
    thirds = [{t for t in range(1, 9) if t % 3 == r} for r in (1, 2, 0)]
    plan = {(0, h): ideal(probes, eoi_target(probes, steps=thirds[h])) for h in range(3)}
    plan[(1, 2)] = ideal(probes, iteration_target(probes))
    with plant(model, plan, probes):
        report = detect(model, probes)
    assert report.found("eoi") == []  # each head alone covers a third of the steps
    layer0 = report.layers.loc[0]
    assert layer0["eoi_peakiness"] == pytest.approx(1.0) and layer0["role"] == "eoi"
    assert report.circuit.attention_found and report.circuit.eoi_summed
    assert (report.circuit.eoi_layer, report.circuit.iteration_layer) == (0, 1)
    assert report.circuit.describe("eoi").startswith("EoI layer 0, heads summed")
    assert "eoi at steps t = 1, 4, 7 only" in report.heads.loc[0, "partial"]


@pytest.mark.parametrize(
    "options, expected, role",
    [
        ({"steps": {1, 3, 5, 7}}, "iteration at every other step (odd t) only", "iteration"),
        ({"steps": {2, 4, 6, 8}}, "iteration at every other step (even t) only", ""),
        ({"lengths": {7, 8}}, "iteration at lengths 7-8 only", ""),
        ({"shift": 1}, "iteration shifted: attends to x_{t+1} instead of x_t", ""),
        ({"a": 2}, "iteration strided: attends to x_{2t} instead of x_t", ""),
    ],
)
def test_partial_iteration_patterns_are_recognised(options, expected, role):
    model = MODELS["native 2x1"]()
    probes = library_probes(240)
    plan = {(1, 0): ideal(probes, iteration_target(probes, **options))}
    with plant(model, plan, probes):
        report = detect(model, probes)
    assert report.heads.loc[1, "role"] == role  # odd steps are more than half the queries
    assert any(p.startswith(f"L1H0 {expected}") for p in report.partial), report.partial
    assert not report.has_iteration_circuit


def test_head_detector_score_is_transformer_lens_mul_on_the_cot_rows():
    model = load(ZOO / "polynomial_paper")
    probes = library_probes(12, min_len=4)
    report = detect(model, probes)
    _, cache = model.run_with_cache(
        probes.tokens, names_filter=lambda n: n.endswith("hook_pattern")
    )
    for kind, target in (("eoi", eoi_target(probes)), ("iteration", iteration_target(probes))):
        scores = torch.zeros(2)
        for b in range(len(probes)):
            detection = torch.zeros(probes.width, probes.width)
            rows = []
            for q in range(probes.width):
                key = target(b, q)
                if key is not None:
                    detection[q, key] = 1.0
                    rows.append(q)
            keep = torch.zeros(probes.width, 1)
            keep[rows] = 1.0
            for layer in range(2):
                pattern = cache[f"blocks.{layer}.attn.hook_pattern"][b, 0] * keep
                scores[layer] += compute_head_attention_similarity_score(
                    pattern,
                    detection,
                    exclude_bos=False,
                    exclude_current_token=False,
                    error_measure="mul",
                )
        expected = (scores / len(probes)).tolist()
        assert report.heads[f"{kind}_tl_score"].tolist() == pytest.approx(expected, abs=1e-5)


# ---------------------------------------------------------------- 2. random models


RANDOM = {
    **MODELS,
    "native 1x4": lambda seed=0: tiny_model(max_len=8, n_layers=1, n_heads=4, seed=seed),
    "native 4x4 d128": lambda seed=0: tiny_model(
        max_len=8, n_layers=4, n_heads=4, d_model=128, seed=seed
    ),
    "native 2x1 tl-init": lambda seed=0: tiny_model(
        max_len=8, embedding_init="transformer_lens", seed=seed
    ),
    "gpt2 4x4": lambda seed=0: gpt2(n_layer=4, n_head=4, seed=seed),
}


def random_report(name: str, seed: int, sharpen: bool) -> DetectionReport:
    model = RANDOM[name](seed)
    if sharpen:  # attention scores x64: random but peaky patterns must not pass either
        with torch.no_grad():
            for block in model.blocks:
                block.attn.q.weight.mul_(8)
                block.attn.k.weight.mul_(8)
    return detect(model, library_probes(256))


@pytest.mark.parametrize("name", list(RANDOM))
@pytest.mark.parametrize("seed, sharpen", [(0, False), (1, True)])
def test_random_models_are_not_flagged(name, seed, sharpen):
    report = random_report(name, seed, sharpen)
    assert not report.has_iteration_circuit, report.verdict
    assert report.found("eoi") == [] and report.found("iteration") == [], report.heads
    assert (report.layers["role"] == "").all()


# ---------------------------------------------------------------- 3-5. trained models


def test_polynomial_model_is_flagged_with_the_peakiness_training_logged():
    model = load(ZOO / "polynomial_paper")
    report = detect(model)  # the whole test split, as training's evaluation
    assert report.has_iteration_circuit, report.verdict
    assert report.found("eoi") == [(0, 0)] and report.found("iteration") == [(1, 0)]
    logged = model_metadata(model)["summary"]["test"]
    heads = report.heads
    assert heads.loc[0, "eoi_peakiness"] == pytest.approx(logged["eoi_peakiness"][0], abs=1e-4)
    assert heads.loc[1, "iteration_peakiness"] == pytest.approx(
        logged["iteration_peakiness"][1], abs=1e-4
    )
    assert report.state_sensitivity > 0.95
    assert report.verdict.startswith("iteration circuit: EoI head L0H0")


@pytest.mark.parametrize("name", ["copy", "polynomial_nocot"])
def test_copy_and_no_cot_models_have_no_iteration_circuit(name):
    report = detect(load(ZOO / name))
    assert not report.has_iteration_circuit, report.verdict
    if name == "copy":  # the copy model fetches x_t, but never uses the state
        assert report.found("iteration") == [(1, 0)]
        assert report.state_sensitivity < 0.1
        assert "positional read-out" in report.verdict
    else:
        assert report.found("iteration") == []


def test_gpt2_trained_on_polynomial_is_audited_through_transformer_lens():
    model = trained_gpt2()
    meta = json.loads((FIXTURES / "gpt2_polynomial" / "metadata.json").read_text())
    probes = library_probes(1024, max_len=meta["data"]["max_len"])
    report = detect(model, probes)
    assert report.has_iteration_circuit, report.verdict
    assert report.circuit.iteration_layer == 1 and report.circuit.eoi_layer == 0
    assert {layer for layer, _ in report.found("iteration")} == {1}
    assert report.layers.loc[1, "iteration_peakiness"] > 0.9


# ---------------------------------------------------------------- 6. bad input


def test_bad_probes_raise_clear_errors():
    model = tiny_model(max_len=4)  # n_ctx 11
    with pytest.raises(IterationHeadsError, match="probes of width 19 exceed the model's n_ctx=11"):
        detect(model, library_probes(8))
    tokens = torch.zeros(2, 9, dtype=torch.long)
    with pytest.raises(
        IterationHeadsError, match=r"EoI position 12 is outside the sequence \(positions 0..8\)"
    ):
        Probes(tokens, eoi=12)
    with pytest.raises(
        IterationHeadsError,
        match=r"state s_3 at position 9 does not fit in the probe \(positions 0..8\)",
    ):
        Probes(tokens, 3, eoi=6, cot_start=7)
    with pytest.raises(IterationHeadsError, match="the last input must come before EoI"):
        Probes(tokens, 3, eoi=2)
    with pytest.raises(IterationHeadsError, match=r"eoi must be an int or a tensor of shape \[2\]"):
        Probes(tokens, 3, eoi=torch.tensor([4, 4, 4]))
    with pytest.raises(IterationHeadsError, match="shape"):
        Probes(torch.zeros(9, dtype=torch.long), 3)
    with pytest.raises(
        IterationHeadsError, match=r"probe token id 99 outside the model's vocabulary \[0, 16\)"
    ):
        detect(model, Probes(torch.full((1, 7), 99), 2))
    with pytest.raises(IterationHeadsError, match=r"no token for symbols \[0\]"):
        Probes.from_task(
            "polynomial",
            symbol_to_token={v: v for v in range(1, 11)},
            eoi_token=11,
            max_len=6,
            n=64,
        )
    with pytest.raises(IterationHeadsError, match="no task to probe"):
        detect(gpt2())
    with pytest.raises(IterationHeadsError, match="no data config in its metadata"):
        detect(tiny_model())
    with pytest.raises(IterationHeadsError, match="leave them out"):
        detect(tiny_model(max_len=8), library_probes(8), n_probes=3)


def test_models_without_pattern_hooks_raise_clear_errors():
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(IterationHeadsError, match="not a TransformerLens model.*wrap_hf_model"):
        detect(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=16)))
    model = tiny_model()
    hooks = dict(model.hook_dict)
    del hooks["blocks.1.attn.hook_pattern"]

    class NoPattern(torch.nn.Module):
        cfg = model.cfg
        hook_dict = hooks

    with pytest.raises(
        IterationHeadsError, match=r"no attention-pattern hooks \['blocks.1.attn.hook_pattern'\]"
    ):
        detect(NoPattern(), library_probes(8, max_len=6))


# ---------------------------------------------------------------- behaviour and outputs


def test_mode_and_hooks_are_left_as_found():
    model = gpt2()
    model.train()
    seen = []
    model.blocks[0].attn.hook_pattern.add_hook(lambda x, hook: seen.append(1))
    counts = {name: len(hp._forward_hooks) for name, hp in model.hook_dict.items()}
    detect(model, library_probes(16))
    assert model.training and all(m.training for m in model.modules())
    assert {name: len(hp._forward_hooks) for name, hp in model.hook_dict.items()} == counts
    assert seen  # the caller's hook ran during detection
    native = build_model(ModelConfig(d_model=32, max_len=8))
    detect(native, library_probes(16))
    assert not native.training


def test_report_table_json_repr_and_html():
    report = detect(load(ZOO / "polynomial_paper"), n_probes=400)
    assert isinstance(report, DetectionReport)
    columns = {
        f"{k}_{m}"
        for k in ("eoi", "iteration")
        for m in (
            "mean",
            "peakiness",
            "invariance",
            "tl_score",
            "uniform_mean",
            "uniform_peakiness",
        )
    }
    assert columns <= set(report.heads.columns) and len(report.heads) == 2
    data = json.loads(report.to_json())
    assert data["has_iteration_circuit"] and data["iteration_heads"] == [[1, 0]]
    assert data["probes"]["n"] == 400 and data["circuit"]["eoi_layer"] == 0
    assert len(data["per_length"]) == 2 * 2 * 8
    text = repr(report)
    assert text.splitlines()[0] == report.verdict and "iter peak" in text
    page = report._repr_html_()
    assert "<table" in page and "<script" not in page and "http" not in page


def test_cli_detect(capsys):
    directory = str(ZOO / "polynomial_paper")
    assert main(["detect", directory, "--n-probes", "200"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("iteration circuit:") and "iter peak" in out
    assert main(["detect", directory, "--n-probes", "200", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["has_iteration_circuit"] is True
    assert main(["detect", str(FIXTURES / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
