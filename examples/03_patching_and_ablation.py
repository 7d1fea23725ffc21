# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Every intervention, on the paper's model
#
# Ablation, planted patterns, activation patching, path patching and the position-shift
# experiment, each on the zoo's `polynomial_paper` model: the paper's 2 layers x 1 head, where
# each role of the circuit is one head (EoI head L0H0 -> iteration head L1H0). Every
# intervention edits a head's output (`blocks.{l}.attn.hook_z`) or its pattern
# (`blocks.{l}.attn.hook_pattern`) through TransformerLens hooks, which are removed afterwards.
# Scores are on the chain of thought only: **accuracy** = fraction of sequences with every state
# right (averaged per length over L = 4..8), **logit_diff** = correct logit minus the best other
# (> 0 exactly when the prediction is right).

# %%
import iteration_heads as ih
from iteration_heads import zoo

# Figures as plotly JSON (interactive in Jupyter) and as HTML with plotly.js embedded once, no
# CDN: static viewers (nbviewer, VS Code, HTML exports) show them too.
ih.viz.notebook_figures()

model = zoo.load("polynomial_paper")
data = ih.make_dataset(ih.DataConfig(task="polynomial", max_len=8, n_train=1, n_test=64))
test = data.test  # 64 test sequences per length 1..8 (512 in all)
EOI_HEAD, ITERATION_HEAD = (0, 0), (1, 0)

# %% [markdown]
# ## Ablation
# Each head's output replaced by zero, by its mean over the batch, or by its value on another
# sequence (resample). Clean accuracy is 1.0; every ablation of either head drops it to ≈ 0.

# %%
effects = {}
for kind in ("zero", "mean", "resample"):
    for head in (EOI_HEAD, ITERATION_HEAD):
        effects[f"{kind} L{head[0]}H{head[1]}"] = ih.ablation_effect(model, [head], test, kind=kind)
for name, effect in effects.items():
    change = effect.summary()["intervened"]
    print(f"{name:14s} accuracy {change['accuracy']:.3f}  logit_diff {change['logit_diff']:+.2f}")
assert all(effect.accuracy < 0.1 for effect in effects.values())
ih.viz.ablation_chart(effects)

# %% [markdown]
# `ablate` is the same as a context manager, for your own forward passes: here the iteration
# head is zeroed at one query position only (index L+3 = 11, the token before `s_3` for L = 8).
# Only the prediction of `s_3` breaks: under teacher forcing the later predictions read the true
# states, so they stay right (accuracy per position, indices 9..17 predict `s_1..s_8` and EoS).

# %%
clean8 = test.for_length(8)
with ih.ablate(model, ITERATION_HEAD, kind="zero", positions=[11]):
    logits = model(clean8.tokens)
right = logits.argmax(-1) == clean8.targets
print([round(v, 2) for v in right[:, 9:18].float().mean(0).tolist()])

# %% [markdown]
# ## Planted patterns
# Replace L1H0's attention by an ideal or control pattern. The ideal iteration pattern (the token
# before `s_t` attends only to `x_t`) keeps accuracy at 1.0: the head does what its pattern shows.
# Uniform, random or EoI-shaped attention destroys it.

# %%
planted = {
    kind: ih.pattern_effect(model, ITERATION_HEAD, kind, test)
    for kind in ("iteration", "uniform", "random", "eoi")
}
for kind, effect in planted.items():
    print(f"{kind:9s} planted in L1H0: accuracy {effect.accuracy:.3f}")
assert planted["iteration"].accuracy > 0.99 and planted["uniform"].accuracy < 0.1

# %% [markdown]
# `patch_pattern` is the context-manager form; the planted row of L1H0 at query L+1 = 9 (EoI,
# which predicts `s_1`) puts all its weight on key 1 (`x_1`).

# %%
with ih.patch_pattern(model, ITERATION_HEAD, "iteration", lengths=clean8.lengths):
    _, cache = model.run_with_cache(clean8.tokens)
row = cache["blocks.1.attn.hook_pattern"][0, 0, 9]
print(f"query 9 attends to key {int(row.argmax())} with weight {float(row.max()):.2f}")

# %% [markdown]
# ## Activation patching
# Corrupt one input (`x_3` of length-8 sequences, states recomputed), run the corrupted
# sequences and patch back one clean head output at one position, for every (head, position).
# The value is the fraction of the clean logit difference restored (1 = all of it, 0 = none).

# %%
corrupted8 = ih.corrupt(clean8, "input", task="polynomial", position=3)
patching = ih.activation_patching(model, clean8, corrupted8)
print(patching.top(3))
ih.viz.patching_heatmap(patching, labels=data.layout.decode(clean8.tokens[0]))

# %% [markdown]
# The one cell that matters is the iteration head at index 11 (the token before `s_3`, the
# query that reads `x_3`). It restores ≈ 0.17 of the logit difference: it fixes the prediction
# of `s_3`, but the corrupted run's later tokens are its own (different) states, so the
# predictions of `s_4..s_8` stay wrong; the metric averages over all 9 scored positions.

# %%
best = patching.top(1).iloc[0]
assert (int(best["layer"]), int(best["pos"])) == (1, 11) and best["value"] > 0.1

# %% [markdown]
# ## Path patching
# Move EoI by one (length L -> L-1, same first inputs) and send the change of the EoI head's
# output only into the iteration head's query, key or value. The value is the fraction of the
# full corruption's effect that flows through that path: the EoI head talks to the iteration
# head's **query** (it tells it which position to look for), hardly to its key or value.

# %%
clean = test.select(test.lengths >= 4)
shorter = ih.corrupt(clean, "length", task="polynomial", shift=-1)
paths = {
    qkv: ih.path_patch(model, clean, shorter, sender=EOI_HEAD, receiver=ITERATION_HEAD, inputs=qkv)
    for qkv in "qkv"
}
for qkv, result in paths.items():
    print(
        f"L0H0 -> L1H0 {qkv}: effect {result.value:.2f} ± {result.stderr:.2f}, "
        f"accuracy after the patch {result.to_dict()['patched_accuracy']:.2f}"
    )
assert paths["q"].value > 3 * max(paths["k"].value, paths["v"].value)

# %% [markdown]
# ## Position shift
# Patch the EoI head's output from sequences whose EoI sits one position later (length L+1)
# into clean runs of length L: the iteration head should now attend one key earlier,
# `x_{t-1}` instead of `x_t`. `fraction_shifted` = share of queries whose argmax key moved
# exactly there (clean: all of them attend to `x_t`).

# %%
shift = ih.position_shift(model, test, shift=1, eoi_heads=EOI_HEAD, iteration_heads=ITERATION_HEAD)
print(shift)
assert shift.fraction_clean_on_target > 0.95 and shift.fraction_shifted > 0.8
shift.table.head()
