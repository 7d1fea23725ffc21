"""Attribution patching (``head_patching(method="attribution")``): exact where the metric is
linear in a head's output, the directional derivative of KL elsewhere (finite differences in
float64), equal to TransformerLens's ``attribution_patch`` on native, GPT-2 and grouped-query
Llama bridges, close to the exact sweep on the fixtures (thresholds below the measured values of
benchmarks/attribution_validation.py), and nothing left behind on the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from iteration_heads import DataConfig, make_dataset, zoo
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model import load_hf_folder
from iteration_heads.pathways import attribution, iteration_prompts, prontoqa_prompts
from iteration_heads.pathways.attribution import (
    choose_method,
    exact_cost,
    transformer_lens_estimates,
)
from iteration_heads.pathways.restoration import ALL_LABELS, head_patching
from iteration_heads.tasks.prontoqa import ProntoQAConfig, make_prontoqa

FIXTURES = Path(__file__).parents[1] / "fixtures"
LLAMA = FIXTURES / "llama_prontoqa"


def polynomial_prompts(n: int = 4):
    data = make_dataset(DataConfig(task="polynomial", max_len=8, n_train=8, n_test=n))
    return iteration_prompts(data.test, data.layout)


def llama_prompts(tokenizer, n: int):
    spec = json.loads((LLAMA / "ground_truth.json").read_text())["problems"]
    config = ProntoQAConfig(
        **{k: tuple(v) if k == "hops" else v for k, v in spec["config"].items()}
    )
    drawn = make_prontoqa(config, spec["drawn"], seed=spec["seed"])
    problems = [drawn[i] for i in spec["indices"]][:n]
    return prontoqa_prompts(
        problems, tokenizer, subtasks=("decision", "copy", "induction", "answer")
    )


def estimates(result) -> tuple[torch.Tensor, torch.Tensor]:
    """``KL_patched - KL_corr`` and ``LD_patched - LD_corr`` of every (head, prompt)."""
    gap = result.logit_diff_clean - result.logit_diff_corrupted
    return -result.per_prompt_kl * result.kl_corrupted, result.per_prompt_logit_diff * gap


def test_a_metric_linear_in_the_head_output_is_estimated_exactly():
    # attention only, no normalisation: the logits are linear in the last layer's hook_z
    cfg = TransformerBridgeConfig(
        d_model=16, d_head=4, n_heads=3, n_layers=2, n_ctx=20, d_vocab=16, attn_only=True,
        normalization_type=None, act_fn="relu", seed=3, device="cpu",
    )  # fmt: skip
    model = TransformerBridge.boot_native(cfg)
    prompts = polynomial_prompts()
    exact = head_patching(model, prompts, method="exact", min_kl=0.0)
    attr = head_patching(model, prompts, method="attribution", min_kl=0.0)
    _, ld_exact = estimates(exact)
    _, ld_attr = estimates(attr)
    scale = float(ld_exact.abs().max())
    assert scale > 1e-2  # the patch does move the logit difference
    assert torch.allclose(ld_attr[1], ld_exact[1], atol=1e-4 * scale)
    assert not torch.allclose(ld_attr[0], ld_exact[0], atol=1e-4 * scale)  # layer 0: not linear
    assert attr.method == "attribution" and exact.method == "exact"


def test_the_kl_estimate_is_its_directional_derivative():
    model = zoo.load("polynomial_paper").double()
    prompts = polynomial_prompts(2).select(torch.arange(6))
    kl_est, _ = estimates(head_patching(model, prompts, method="attribution", min_kl=0.0))
    width = int(prompts.position.max()) + 1
    clean, corrupted = prompts.clean[:, :width], prompts.corrupted[:, :width]
    rows = torch.arange(len(prompts))
    with torch.no_grad():
        clean_lp = model(clean)[rows, prompts.position].log_softmax(-1)
        for layer in range(2):
            name = f"blocks.{layer}.attn.hook_z"
            _, cache = model.run_with_cache(clean, names_filter=name)

            def kl(eps: float, name: str = name, cache=cache) -> torch.Tensor:
                def shift(z, hook):
                    return z + eps * (cache[name] - z)  # one head per layer: the whole tensor

                logits = model.run_with_hooks(corrupted, fwd_hooks=[(name, shift)])
                lp = logits[rows, prompts.position].log_softmax(-1)
                return (clean_lp.exp() * (clean_lp - lp)).sum(-1)

            derivative = (kl(1e-4) - kl(-1e-4)) / 2e-4
            assert torch.allclose(kl_est[layer, 0], derivative, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("which", ["polynomial_paper", "gpt2_polynomial", "llama_prontoqa"])
def test_transformer_lens_attribution_patch_gives_the_same_estimates(which):
    if which == "polynomial_paper":
        model, prompts = zoo.load(which), polynomial_prompts(2).select(torch.arange(3))
    elif which == "gpt2_polynomial":
        model = load_hf_folder(FIXTURES / which)[0]
        prompts = polynomial_prompts(2).select(torch.arange(3))
    else:
        if not (LLAMA / "model.safetensors").exists():
            pytest.skip("llama_prontoqa fixture not built")
        model, tokenizer = load_hf_folder(LLAMA)
        prompts = llama_prompts(tokenizer, 1).select(torch.arange(3))
    kl_tl, ld_tl = transformer_lens_estimates(model, prompts)
    kl, ld = estimates(head_patching(model, prompts, method="attribution", min_kl=0.0))
    for mine, theirs in ((kl, kl_tl), (ld, ld_tl)):
        assert torch.allclose(mine, theirs, atol=1e-5 * float(theirs.abs().max()))


# Spearman over every head of the KL ratio of means over all prompts, and the top-3 overlap,
# measured at these sizes (benchmarks/attribution_validation.py --n 2): ontology 0.959, 2/3;
# gpt2_polynomial 1.0, 1; llama_prontoqa 0.979, 1
AGREEMENT = {
    "ontology": (0.9, 0.66),
    "gpt2_polynomial": (0.95, 0.66),
    "llama_prontoqa": (0.95, 0.66),
}


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = (x.flatten().argsort().argsort().double() for x in (a, b))
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


@pytest.mark.parametrize("which", list(AGREEMENT))
def test_attribution_ranks_heads_as_the_exact_sweep_does_on_the_fixtures(which):
    if which == "ontology":
        from iteration_heads.experiments.ontology_study import model_ontology
        from iteration_heads.pathways import ontology_prompts
        from iteration_heads.tasks import make_ontology_problems

        model = zoo.load("ontology")
        problems = make_ontology_problems(model_ontology(model), 2, seed=10_000, kind="fictional")
        prompts = ontology_prompts(problems)
    elif which == "gpt2_polynomial":
        model, prompts = load_hf_folder(FIXTURES / which)[0], polynomial_prompts(2)
    else:
        if not (LLAMA / "model.safetensors").exists():
            pytest.skip("llama_prontoqa fixture not built")
        model, tokenizer = load_hf_folder(LLAMA)
        prompts = llama_prompts(tokenizer, 2)
    exact = head_patching(model, prompts, method="exact")
    attr = head_patching(model, prompts, method="attribution")
    rho, top3 = AGREEMENT[which]
    assert spearman(exact.kl_ratio[ALL_LABELS], attr.kl_ratio[ALL_LABELS]) >= rho
    assert len(set(exact.top(3)) & set(attr.top(3))) / 3 >= top3
    assert attr.n_forward < exact.n_forward or exact.n_forward <= 2


def test_nothing_is_left_behind_and_an_interrupt_restores_the_model(monkeypatch):
    model = zoo.load("polynomial_paper").train()
    frozen = next(iter(model.parameters()))
    frozen.requires_grad_(False)
    before = [p.requires_grad for p in model.parameters()]
    prompts = polynomial_prompts(1)

    def clean_state() -> None:
        assert [p.requires_grad for p in model.parameters()] == before
        assert all(p.grad is None for p in model.parameters())
        assert all(m.training for m in model.modules())
        assert not any(
            p.fwd_hooks or p.bwd_hooks or p._forward_hooks for p in model.hook_dict.values()
        )
        assert torch.is_grad_enabled()

    head_patching(model, prompts, method="attribution")
    clean_state()
    shift, calls, stop = attribution._shift_keeping, [], [0]

    def counted(delta, seen):
        inner = shift(delta, seen)

        def hook(z, hook):
            calls.append(1)
            if len(calls) == stop[0]:
                raise KeyboardInterrupt
            return inner(z, hook)

        return hook

    monkeypatch.setattr(attribution, "_shift_keeping", counted)
    for k in (1, 2):  # in layer 0's hook, in layer 1's
        calls.clear()
        stop[0] = k
        with pytest.raises(KeyboardInterrupt):
            head_patching(model, prompts, method="attribution")
        clean_state()
    frozen.requires_grad_(True)


def test_auto_runs_the_exact_sweep_up_to_the_budget(monkeypatch):
    model, prompts = zoo.load("polynomial_paper"), polynomial_prompts(1)
    cost = exact_cost(model, prompts)
    # 2 layers x 1 head, every prompt up to the last studied position, 2 layers x (4 d_model
    # d_head + 2 d_model d_mlp) x 2 per token, and the unembedding of one position
    width = int(prompts.position.max()) + 1
    per_token = 2 * 2 * (4 * 64 * 64 + 2 * 64 * 256)
    assert cost == 2 * len(prompts) * (width * per_token + 2 * 64 * 16)
    assert head_patching(model, prompts).method == "exact"
    monkeypatch.setattr(attribution, "EXACT_BUDGET", cost - 1)
    result = head_patching(model, prompts)
    assert result.method == "attribution" and choose_method(model, prompts, "auto") == "attribution"
    assert result.to_dict()["method"] == "attribution"
    assert result.format().startswith("head patching (attribution,")
    assert choose_method(model, prompts, "exact") == "exact"


@pytest.mark.parametrize("method", ["fast", "", None, 1, "Exact", ["exact"]])
def test_a_bad_method_is_one_line(method):
    model, prompts = zoo.load("polynomial_paper"), polynomial_prompts(1)
    with pytest.raises(IterationHeadsError, match="method=") as err:
        head_patching(model, prompts, method=method)
    assert "\n" not in str(err.value) and "exact, attribution, auto" in str(err.value)


def test_one_corrupted_pass_gives_the_linearised_sweep_and_integrated_gradients_differ():
    """The fast path (the corrupted run and its gradients in one pass) equals the linearised
    sweep after a separate corrupted run; ig_steps > 1 takes the integrated-gradients path."""
    from iteration_heads.pathways.attribution import (
        attribution_estimates,
        linearised_sweep,
        run_keeping_z,
    )
    from iteration_heads.pathways.patching_stats import (
        answer_foil,
        kl_from_clean,
        logit_difference,
    )

    prompts, model = polynomial_prompts(7), zoo.load("polynomial_paper")
    width = int(prompts.position.max()) + 1
    clean, corrupted = prompts.clean[:, :width], prompts.corrupted[:, :width]
    position, answer = prompts.position, prompts.answer
    clean_logits, clean_z = run_keeping_z(model, clean, position, 5)
    clean_lp = clean_logits.double().log_softmax(-1)
    fast_logits, (kl_fast, ld_fast), passes = attribution_estimates(
        model, corrupted, position, clean_z, clean_lp, answer, 5
    )
    corrupt_logits, corrupt_z = run_keeping_z(model, corrupted, position, 5)
    assert torch.allclose(fast_logits, corrupt_logits, atol=1e-6)
    foil = answer_foil(corrupt_logits, answer)

    def score(logits, rows):
        kl = kl_from_clean(clean_lp[rows], logits)
        return kl, logit_difference(logits, answer[rows], foil[rows])

    zero = (torch.zeros(len(prompts), dtype=torch.float64),) * 2
    kl_old, ld_old, old_passes = linearised_sweep(
        model, corrupted, position, clean_z, corrupt_z, score, zero, 5
    )
    assert torch.allclose(kl_fast, kl_old, atol=1e-6) and torch.allclose(ld_fast, ld_old, atol=1e-6)
    assert passes == old_passes == -(-len(prompts) // 5)
    one = head_patching(model, prompts, method="attribution")
    four = head_patching(model, prompts, method="attribution", ig_steps=4)
    assert not torch.allclose(one.kl_score["all"], four.kl_score["all"])
    with pytest.raises(IterationHeadsError, match="ig_steps=0"):
        head_patching(model, prompts, method="attribution", ig_steps=0)
