"""The machinery that makes a causal check cheap: logits at the scored positions only, blocks
before a resumed layer skipped, passes planned by width and first layer, and many head sets
pooled into shared passes. Each must give the numbers of the plain computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import transformers as hf
from helpers import library_probes, tiny_model

import iteration_heads as ih
import iteration_heads.zoo
from iteration_heads.errors import IterationHeadsError
from iteration_heads.interventions import Scores, ablation_effect, as_batch
from iteration_heads.interventions.many_ablations import ablation_sets
from iteration_heads.interventions.verification import ablation_check
from iteration_heads.model import load
from iteration_heads.passes import blocks_skipped, plan_passes, scored_logits


def small_model(architecture: str) -> torch.nn.Module:
    """Three layers, two heads, width 32, vocabulary 16, built offline; eval mode."""
    torch.manual_seed(0)
    if architecture == "native":
        return tiny_model(n_layers=3, max_len=8).eval()
    if architecture == "gpt2":
        config = hf.GPT2Config(n_layer=3, n_head=2, n_embd=32, vocab_size=16, n_positions=24)
        return ih.wrap_hf_model(hf.GPT2LMHeadModel(config)).eval()
    options = {
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "vocab_size": 16,
        "max_position_embeddings": 24,
    }
    if architecture == "neox":
        return ih.wrap_hf_model(hf.GPTNeoXForCausalLM(hf.GPTNeoXConfig(**options))).eval()
    config = hf.LlamaConfig(num_key_value_heads=2, **options)
    return ih.wrap_hf_model(hf.LlamaForCausalLM(config)).eval()


ARCHITECTURES = ["native", "gpt2", "neox", "llama"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_scored_logits_from_any_layer_equal_a_whole_forward_pass(architecture) -> None:
    """From the embeddings and from layer 2 (the blocks before it passed through, and not
    run), the logits at the scored positions are those of a whole forward pass (to 1e-5)."""
    model = small_model(architecture)
    tokens = library_probes(24).tokens
    scored = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(1)) < 0.3
    with torch.no_grad():
        full, cache = model.run_with_cache(tokens, names_filter="blocks.2.hook_resid_pre")
        from_tokens = scored_logits(model, tokens, scored)
        with blocks_skipped(model, 2):  # the first use checks the shortcut is exact
            pass
        calls = []  # the layers inside blocks 0 and 1 (a skipped block calls none of them)
        inner = [
            module
            for block in model.blocks[:2]
            for module in block.original_component.modules()
            if module is not block.original_component and list(module.parameters(False))
        ]
        assert inner
        handles = [m.register_forward_hook(lambda *args: calls.append(1)) for m in inner]
        try:
            resumed = scored_logits(
                model, cache["blocks.2.hook_resid_pre"], scored, start_at_layer=2
            )
        finally:
            for handle in handles:
                handle.remove()
    assert torch.allclose(from_tokens, full[scored], atol=1e-5, rtol=0)
    assert torch.allclose(resumed, full[scored], atol=1e-5, rtol=0)
    assert calls == []  # blocks 0 and 1 did not run


def test_plan_passes_runs_every_row_once_within_its_pass() -> None:
    generator = torch.Generator().manual_seed(0)
    starts = torch.randint(0, 6, (300,), generator=generator)
    widths = torch.randint(3, 20, (300,), generator=generator)
    keys = {(int(s), int(w)) for s, w in zip(starts, widths, strict=True)}
    for overhead, max_rows in ((0.0, 1000), (500.0, 64), (1e12, 128)):
        passes = plan_passes(starts, widths, 6, overhead, max_rows)
        rows = torch.cat([r for r, _, _ in passes])
        assert sorted(rows.tolist()) == list(range(300))
        for r, start, width in passes:
            assert len(r) <= max_rows
            assert bool((starts[r] >= start).all()) and bool((widths[r] <= width).all())
        if overhead == 0.0:  # nothing is worth merging: one pass per (start, width)
            assert len(passes) == len(keys)
        if overhead == 1e12:  # everything is: as few passes as max_rows allows
            assert len(passes) == 3


def test_scores_of_the_scored_positions_equal_a_hand_computation() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=generator)
    targets = torch.full((3, 5), -100)
    targets[0, 1:3], targets[1, 4], targets[2, :] = torch.tensor([2, 4]), 1, logits[2].argmax(-1)
    scores = Scores.of(logits, targets)
    for b in range(3):
        where = targets[b] != -100
        row, goal = logits[b][where], targets[b][where]
        right = row.argmax(-1) == goal
        others = row.scatter(-1, goal[:, None], float("-inf")).amax(-1)
        diff = row.gather(-1, goal[:, None])[:, 0] - others
        assert scores.accuracy[b] == float(right.all())
        assert scores.token_accuracy[b] == pytest.approx(float(right.float().mean()), abs=1e-6)
        loss = F.cross_entropy(row, goal)
        assert scores.loss[b] == pytest.approx(float(loss), abs=1e-6)
        assert scores.logit_diff[b] == pytest.approx(float(diff.mean()), abs=1e-6)
    assert scores.accuracy[2] == 1.0


@pytest.mark.parametrize("kind", ["zero", "mean", "resample"])
def test_pooled_sets_on_a_huggingface_model_equal_one_ablation_at_a_time(kind) -> None:
    """GPT-2 (blocks skipped before each set's first layer; passes pooled and trimmed) against
    ablation_effect, one whole forward pass per set: per-sequence scores to 1e-5."""
    model = small_model("gpt2")
    batch = as_batch(model, library_probes(96))
    sets = [[(1, 0)], [(2, 1)], [(0, 1), (2, 0)], [(1, 1), (2, 0), (2, 1)]]
    clean, ablated = ablation_sets(model, batch, sets, kind=kind, seed=2, batch_size=40)
    for heads, scores in zip(sets, ablated, strict=True):
        effect = ablation_effect(model, heads, batch.as_data(), kind=kind, seed=2, batch_size=40)
        for metric in ("accuracy", "loss", "logit_diff"):
            expected = getattr(effect.intervened, metric)
            assert torch.allclose(getattr(scores, metric), expected, atol=1e-5, rtol=0), metric
    assert torch.allclose(clean.loss, effect.clean.loss, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["zero", "mean"])
def test_a_set_run_on_some_sequences_scores_them_as_on_all(kind) -> None:
    """A sequence's scores do not depend on which other rows share its pass."""
    model = load(iteration_heads.zoo.path("polynomial_3x2"))
    batch = as_batch(model, n=200)
    sets = [[(2, 1)], [(0, 0), (2, 0)], [(1, 1)]]
    rows = [None, torch.arange(0, 200, 7), torch.tensor([199, 3, 50, 3])]
    _, every = ablation_sets(model, batch, sets, kind=kind)
    _, some = ablation_sets(model, batch, sets, kind=kind, rows=rows, batch_size=32)
    for full, part, index in zip(every, some, rows, strict=True):
        index = torch.arange(200) if index is None else index
        assert torch.allclose(part.loss, full.loss[index], atol=1e-6, rtol=0)
        assert torch.equal(part.lengths, full.lengths[index])


def test_verify_runs_control_sets_on_samples_of_the_probes() -> None:
    model = load(iteration_heads.zoo.path("polynomial_3x2"))
    batch = as_batch(model, n=256)
    check = ablation_check(model, [(1, 0), (2, 1)], batch, max_controls=3, control_probes=40)
    probes = dict(zip(check.table["role"], check.table["n_probes"], strict=False))
    assert probes == {"circuit": 256, "control": 40}
    every = ablation_check(model, [(1, 0), (2, 1)], batch, max_controls=3, control_probes=None)
    assert set(every.table["n_probes"]) == {256}
    default = ablation_check(model, [(1, 0), (2, 1)], batch, max_controls=3)
    assert default.table["n_probes"].tolist() == [256, 214, 214, 214]  # 640 sequences / 3 sets
    assert every.table.loc[0, "accuracy"] == check.table.loc[0, "accuracy"]
    for bad in (0, -3, 2.5, "all"):
        with pytest.raises(IterationHeadsError, match="control_probes="):
            ablation_check(model, [(1, 0)], batch, control_probes=bad)
    with pytest.raises(IterationHeadsError, match="rows"):
        ablation_sets(model, batch, [[(1, 0)]], rows=[torch.tensor([256])])
