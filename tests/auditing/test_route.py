"""The position route at scale: each component's pass resumes at the iteration heads' layer
from the clean residual stream and stops at their pattern, and gives what a full forward pass
with the same path patching gives, on the library's models and on wrapped GPT-2 and Llama
(whose rotary embeddings have no ``hook_pos_embed`` and whose attention has no bias)."""

from __future__ import annotations

import pytest
import torch
from helpers import gpt2, llama

import iteration_heads as ih
from iteration_heads.auditing.route import components_before, position_route
from iteration_heads.interventions.paths import receiver_hooks

TOKENS = {"symbol_to_token": {v: t for v, t in enumerate(range(4, 15))}, "eoi_token": 3,
          "bos_token": 0, "eos_token": 1, "max_len": 8, "n": 64}  # fmt: skip


def cases():
    yield "polynomial_paper", lambda: ih.load("polynomial_paper"), [(1, 0)]
    yield "polynomial_3x2", lambda: ih.load("polynomial_3x2"), [(2, 0), (2, 1)]
    yield "gpt2", lambda: gpt2(n_layer=3, vocab=16, n_ctx=19, seed=1), [(1, 1)]
    yield "llama", lambda: llama(n_layers=3, vocab=16, seed=1), [(1, 0)]


def probes_for(name, model):
    if name.startswith("polynomial"):
        return ih.Probes.from_model(model, n=64)
    return ih.Probes.from_task("polynomial", **TOKENS)


def by_hand(model, probes, receivers, component):
    """The receivers' mean weight on x_t with ``component``'s change (``"all"``: the whole
    residual stream's) patched into their queries, from full forward passes."""
    layer = receivers[0][0]
    keep = probes.lengths >= 2
    clean = probes.select(keep)
    shorter = clean.with_inputs(
        [clean.inputs[b, : int(n) - 1] for b, n in enumerate(clean.lengths)]
    )
    with torch.no_grad():
        _, a = model.run_with_cache(clean.tokens)
        _, b = model.run_with_cache(shorter.tokens)
    if component == "all":
        delta = b[f"blocks.{layer}.hook_resid_pre"] - a[f"blocks.{layer}.hook_resid_pre"]
    else:
        (c,) = [c for c in components_before(model, layer) if c.label == component]
        delta = c.output(model, b) - c.output(model, a)
    mask = torch.zeros(clean.tokens.shape, dtype=torch.bool)
    weights = []
    for row in range(len(clean)):
        for t in range(int(clean.lengths[row])):
            mask[row, clean.query_positions[row, t]] = True
    hooks = receiver_hooks(model, receivers, ["q"], delta * mask[..., None])
    with torch.no_grad():
        seen = {}
        name = f"blocks.{layer}.attn.hook_pattern"
        model.run_with_hooks(
            clean.tokens, fwd_hooks=[*hooks, (name, lambda p, hook: seen.setdefault("p", p))]
        )
    pattern = seen["p"][:, [h for _, h in receivers]].float().mean(1)
    for row in range(len(clean)):
        for t in range(int(clean.lengths[row])):
            q, k = clean.query_positions[row, t], clean.input_positions[row, t]
            weights.append(pattern[row, q, k])
    return torch.stack(weights).mean()


@pytest.mark.parametrize(("name", "build", "receivers"), list(cases()), ids=lambda v: str(v)[:20])
def test_each_component_matches_a_full_pass_by_hand(name, build, receivers) -> None:
    model = build().eval()
    probes = probes_for(name, model)
    route = position_route(model, probes, receivers, batch_size=23)  # several batches
    table = route.table.set_index("component")
    top = table.index[0]
    for component in ("all", top, table.index[-1]):
        expected = by_hand(model, probes, receivers, component)
        got = route.clean_weight - (
            route.total_effect if component == "all" else table.loc[component, "effect"]
        )
        assert got == pytest.approx(float(expected), abs=1e-5), component


@pytest.mark.parametrize(("name", "build", "receivers"), list(cases()), ids=lambda v: str(v)[:20])
def test_component_passes_run_only_the_receivers_layer(name, build, receivers) -> None:
    """Blocks before the receivers run in the two cached passes of each batch only; blocks
    after them never run."""
    model = build().eval()
    probes = probes_for(name, model)
    layer = receivers[0][0]
    position_route(model, probes, receivers)  # once first: blocks_skipped checks the model once
    fired = {0: 0, layer: 0, int(model.cfg.n_layers) - 1: 0}
    hooks = [(f"blocks.{lay}.attn.hook_pattern", lambda p, hook, lay=lay: fired.__setitem__(lay, fired[lay] + 1))
             for lay in fired]  # fmt: skip
    for hook_name, fn in hooks:
        model.add_hook(hook_name, fn)
    try:
        route = position_route(model, probes, receivers, batch_size=1000)
    finally:
        model.reset_hooks()
    senders = len(route.table)
    assert fired[0] == 2  # the clean and the shorter probes, once
    assert fired[layer] == 2 + senders  # "clean", "all" and one per component
    assert fired[int(model.cfg.n_layers) - 1] == (
        0 if layer < int(model.cfg.n_layers) - 1 else fired[layer]
    )
