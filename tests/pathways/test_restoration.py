"""Per-head activation patching: the batched sweep equals a per-head loop of hand-written hooks
(native and HuggingFace models), an attention-only model is restored exactly, the iteration
head of the shipped polynomial model comes first, and prompts whose corruption changes nothing
are excluded and counted."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import gpt2, llama
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from iteration_heads import DataConfig, make_dataset, zoo
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import Prompts, iteration_prompts
from iteration_heads.pathways.restoration import ALL_LABELS, HeadPatching, head_patching

TOL = 1e-6


@pytest.fixture(scope="module")
def polynomial():
    return zoo.load("polynomial_paper")


@pytest.fixture(scope="module")
def prompts():
    data = make_dataset(DataConfig(task="polynomial", max_len=8, n_train=8, n_test=8))
    return iteration_prompts(data.test, data.layout)


@pytest.fixture(scope="module")
def result(polynomial, prompts):
    return head_patching(polynomial, prompts)


def random_prompts(d_vocab: int, n: int = 12, width: int = 10, seed: int = 0) -> Prompts:
    """Random prompts studied at varied positions, one earlier token changed."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, d_vocab, (n, width), generator=g)
    position = torch.randint(3, width, (n,), generator=g)
    corrupted = clean.clone()
    at = torch.randint(0, 3, (n,), generator=g)
    rows = torch.arange(n)
    corrupted[rows, at] = (clean[rows, at] + torch.randint(1, d_vocab, (n,), generator=g)) % d_vocab
    answer = torch.randint(0, d_vocab, (n,), generator=g)
    labels = tuple("ab"[i % 2] for i in range(n))
    return Prompts(clean, corrupted, position, answer, torch.zeros_like(clean), ("s",), labels)


def logits_at(model, tokens, position, hooks=()):
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=list(hooks))
    return logits[torch.arange(len(tokens)), position].double()


def kl(clean_logits, logits):
    p, q = clean_logits.log_softmax(-1), logits.log_softmax(-1)
    return (p.exp() * (p - q)).sum(-1)


def loop_scores(model, prompts: Prompts):
    """Per-prompt KL and logit-difference scores ``[layer, head, n]``, one ``run_with_hooks``
    per head, on the full-width prompts."""
    names = lambda name: name.endswith("attn.hook_z")  # noqa: E731
    model.eval()
    with torch.no_grad():
        _, cache = model.run_with_cache(prompts.clean, names_filter=names)
    clean = logits_at(model, prompts.clean, prompts.position)
    corrupt = logits_at(model, prompts.corrupted, prompts.position)
    rows = torch.arange(len(prompts))
    top = corrupt.argsort(-1, descending=True)
    foil = torch.where(top[:, 0] == prompts.answer, top[:, 1], top[:, 0])

    def ld(logits):
        return logits[rows, prompts.answer] - logits[rows, foil]

    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    kl_s = torch.zeros(n_layers, n_heads, len(prompts), dtype=torch.float64)
    ld_s = torch.zeros_like(kl_s)
    for layer in range(n_layers):
        for head in range(n_heads):

            def patch(z, hook, layer=layer, head=head):
                z = z.clone()
                z[:, :, head] = cache[f"blocks.{layer}.attn.hook_z"][:, :, head]
                return z

            patched = logits_at(
                model,
                prompts.corrupted,
                prompts.position,
                [(f"blocks.{layer}.attn.hook_z", patch)],
            )
            kl_s[layer, head] = (kl(clean, corrupt) - kl(clean, patched)) / kl(clean, corrupt)
            ld_s[layer, head] = (ld(patched) - ld(corrupt)) / (ld(clean) - ld(corrupt))
    return kl_s, ld_s, foil, kl(clean, corrupt), ld(clean), ld(corrupt)


# ---------------------------------------------------------------- 1. equal to a per-head loop


@pytest.mark.parametrize("which", ["polynomial_3x2", "gpt2", "llama"])
def test_batched_sweep_equals_a_per_head_loop(which, prompts):
    if which == "polynomial_3x2":
        model = zoo.load(which)
        chosen = prompts.select(torch.arange(0, len(prompts), 3))
    else:
        model = gpt2() if which == "gpt2" else llama()
        chosen = random_prompts(model.cfg.d_vocab)
    result = head_patching(model, chosen, min_kl=0.0, batch_size=5)  # several passes
    kl_s, ld_s, foil, kl_corr, ld_clean, ld_corr = loop_scores(model, chosen)
    assert result.n_excluded[ALL_LABELS] == 0
    assert torch.equal(result.foil, foil)
    assert torch.allclose(result.kl_corrupted, kl_corr, atol=TOL, rtol=TOL)
    assert torch.allclose(result.logit_diff_clean, ld_clean, atol=TOL)
    assert torch.allclose(result.logit_diff_corrupted, ld_corr, atol=TOL)
    # the KL score divides by KL_corr: compare what it normalises (batch shapes and thread
    # counts change float32 sums in their last bits)
    kl_scale = max(1.0, float(kl_corr.max()))  # 1e-6 of the KLs' scale (float32 logits)
    assert torch.allclose(result.per_prompt_kl * kl_corr, kl_s * kl_corr, atol=TOL * kl_scale)
    # the logit-difference score divides by LD_clean - LD_corr, small on random models:
    # compare what it normalises, LD_patched - LD_corr, to 1e-6 of the logits' scale (float32
    # logits of 30 differ in their last bit between batch shapes)
    gap = ld_clean - ld_corr
    scale = max(1.0, float(ld_clean.abs().max()))
    assert torch.allclose(result.per_prompt_logit_diff * gap, ld_s * gap, atol=TOL * scale)
    assert result.n_forward >= 2
    for label in result.groups:
        rows = torch.tensor([label in (ALL_LABELS, x) for x in chosen.labels])
        assert torch.allclose(result.kl_score[label].double(), kl_s[..., rows].mean(-1), atol=1e-5)
        expected = kl_s[..., rows].std(-1) / math.sqrt(int(rows.sum()))
        assert torch.allclose(result.kl_stderr[label].double(), expected, atol=1e-5)
        # Dutta's ratio of batch means, from the per-prompt scores: sum(kl_c * s) / sum(kl_c)
        ratio = (kl_corr[rows] * kl_s[..., rows]).sum(-1) / kl_corr[rows].sum()
        assert torch.allclose(result.kl_ratio[label].double(), ratio, atol=1e-5)
        assert result.n_prompts[label] == int(rows.sum())


# ---------------------------------------------------------------- 2. invariants


def attention_only(n_layers: int, n_heads: int) -> TransformerBridge:
    cfg = TransformerBridgeConfig(
        d_model=32,
        d_head=8,
        n_heads=n_heads,
        n_layers=n_layers,
        n_ctx=12,
        d_vocab=16,
        attn_only=True,
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="standard",
        seed=1,
        device="cpu",
    )
    return TransformerBridge.boot_native(cfg).eval()


def test_patching_every_head_restores_an_attention_only_model_exactly():
    model = attention_only(2, 2)
    chosen = random_prompts(16, width=12)
    names = lambda name: name.endswith("attn.hook_z")  # noqa: E731
    with torch.no_grad():
        _, cache = model.run_with_cache(chosen.clean, names_filter=names)
    # every head of every layer, every position (on bridges hook.name is the hook's alias
    # target, so the cached value is bound by name)
    hooks = [
        (f"blocks.{layer}.attn.hook_z", lambda z, hook, v=cache[f"blocks.{layer}.attn.hook_z"]: v)
        for layer in range(2)
    ]
    clean = logits_at(model, chosen.clean, chosen.position)
    patched = logits_at(model, chosen.corrupted, chosen.position, hooks)
    corrupt = logits_at(model, chosen.corrupted, chosen.position)
    assert torch.allclose(patched, clean, atol=1e-5)  # the corrupted token is before `position`
    assert not torch.allclose(corrupt, clean, atol=1e-2)
    # with one head, patching it is patching everything: both scores are exactly 1
    single = head_patching(attention_only(1, 1), chosen, min_kl=0.0)
    assert torch.allclose(
        single.per_prompt_kl, torch.ones(1, 1, len(chosen), dtype=torch.float64), atol=TOL
    )
    assert torch.allclose(
        single.per_prompt_logit_diff, torch.ones(1, 1, len(chosen), dtype=torch.float64), atol=1e-5
    )
    assert torch.allclose(single.kl_ratio[ALL_LABELS], torch.ones(1, 1), atol=TOL)


def test_model_is_left_as_found(polynomial, prompts):
    polynomial.train()
    head_patching(polynomial, prompts.select(range(20)))
    assert polynomial.training
    assert all(not hp.fwd_hooks for hp in polynomial.hook_dict.values())
    polynomial.eval()


# ---------------------------------------------------------------- 3. the recovered circuit


def test_iteration_head_has_the_highest_kl_score_on_zoo_polynomial(result):
    assert result.ranking() == [(1, 0), (0, 0)]
    assert result.top(1) == [(1, 0)]
    assert float(result.values[1, 0]) > 0.9  # measured 0.94 (L0H0: 0.28)
    assert float(result.values[0, 0]) < 0.4
    assert float(result.kl_ratio[ALL_LABELS][1, 0]) > 0.9
    assert result.ranking(metric="logit_diff")[0] == (1, 0)
    for step in range(2, 9):  # step 1 reads x_1 at the EoI position: the EoI head matters
        assert result.ranking(f"step {step}")[0] == (1, 0)
    assert result.ranking("step 1")[0] == (0, 0)


# ---------------------------------------------------------------- 4. exclusion and counts


def test_prompts_whose_corruption_changes_nothing_are_excluded_and_counted(polynomial, prompts):
    chosen = prompts.select(range(30))
    corrupted = chosen.corrupted.clone()
    same = torch.arange(30) % 3 == 0
    corrupted[same] = chosen.clean[same]  # these corruptions change nothing: KL 0
    chosen = Prompts(
        chosen.clean,
        corrupted,
        chosen.position,
        chosen.answer,
        chosen.segments,
        chosen.segment_names,
        chosen.labels,
    )
    result = head_patching(polynomial, chosen)
    assert result.n_excluded[ALL_LABELS] >= 10
    excluded = result.kl_corrupted < 1e-3
    assert bool(excluded[same].all())
    assert torch.isnan(result.per_prompt_kl[..., excluded]).all()
    assert not torch.isnan(result.per_prompt_kl[..., ~excluded]).any()
    for label in result.groups:
        size = len(chosen.labels) if label == ALL_LABELS else chosen.labels.count(label)
        assert result.n_prompts[label] + result.n_excluded[label] == size
    json.loads(result.to_json())  # NaN per-prompt scores stay out of the strict JSON
    kept = head_patching(polynomial, chosen.select(~excluded))
    assert torch.allclose(kept.values, result.values, atol=1e-5)
    with pytest.raises(IterationHeadsError, match="nothing to restore"):
        head_patching(polynomial, chosen.select(same))


# ---------------------------------------------------------------- 5. views and errors


def test_result_views(result):
    assert isinstance(result, HeadPatching)
    frame = result.to_frame()
    assert len(frame) == len(result.groups) * 2
    row = frame[(frame["label"] == ALL_LABELS) & (frame["layer"] == 1)].iloc[0]
    assert row["kl_ratio"] == pytest.approx(float(result.values[1, 0]))  # the default: ratio
    assert row["kl_score"] == pytest.approx(float(result.kl_score[ALL_LABELS][1, 0]))
    assert row["kl_median"] == pytest.approx(float(result.spread()["median"][1, 0]))
    assert row["n"] == result.n_prompts[ALL_LABELS]
    data = json.loads(result.to_json())
    assert data["kl_ratio"][ALL_LABELS] == result.values.tolist() and data["aggregate"] == "ratio"
    assert data["spread"]["kl"]["iqr"][ALL_LABELS] == result.spread()["iqr"].tolist()
    text = result.format()
    assert repr(result) == text and "<script" not in result._repr_html_()
    assert "L1H0 KL ratio 0.9" in text and "step 8" in text and "excluded" in text
    with pytest.raises(IterationHeadsError, match="label 'nope'"):
        result.ranking("nope")
    with pytest.raises(IterationHeadsError, match="metric 'wasserstein'"):
        result.ranking(metric="wasserstein")


def test_bad_inputs_raise(polynomial, prompts):
    chosen = prompts.select(range(4))
    no_corruption = Prompts(
        chosen.clean,
        None,
        chosen.position,
        chosen.answer,
        chosen.segments,
        chosen.segment_names,
        chosen.labels,
    )
    with pytest.raises(IterationHeadsError, match="needs corrupted prompts"):
        head_patching(polynomial, no_corruption)
    with pytest.raises(IterationHeadsError, match="prompts must be Prompts"):
        head_patching(polynomial, chosen.clean)
    with pytest.raises(IterationHeadsError, match="min_kl=-1"):
        head_patching(polynomial, chosen, min_kl=-1)
    with pytest.raises(IterationHeadsError, match="batch_size=0"):
        head_patching(polynomial, chosen, batch_size=0)
    big = Prompts(
        chosen.clean + 16,
        chosen.corrupted,
        chosen.position,
        chosen.answer,
        chosen.segments,
        chosen.segment_names,
        chosen.labels,
    )
    with pytest.raises(IterationHeadsError, match="clean token id"):
        head_patching(polynomial, big)
