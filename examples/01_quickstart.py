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
# # Quick start: find and verify an iteration head in a shipped model
#
# The `polynomial` model of the zoo (2 layers x 2 heads, d_model 64, inputs up to length 8) was
# trained with the library's recipe on polynomial iteration `s_t = s_{t-1}·x_t + 1 mod 11`
# written as a chain of thought: `<polynomial> x_1 … x_L <EoI> s_1 … s_L <EoS>`. The paper's
# circuit: an **EoI head** in layer 0 ("where does the input end?") feeds an **iteration head**
# in layer 1, which attends from the token before `s_t` back to `x_t`. This notebook finds it,
# looks at it and checks it causally. (`polynomial_paper` is the paper's 2 x 1 model, trained
# with the paper's optimiser; the same cells run on it.)

# %%
import iteration_heads as ih
from iteration_heads import zoo

# Figures as plotly JSON (interactive in Jupyter) and as HTML with plotly.js embedded once, no
# CDN: static viewers (nbviewer, VS Code, HTML exports) show them too.
ih.viz.notebook_figures()

# %% [markdown]
# The shipped models, and what the `polynomial` one reached on its test split (accuracy averaged
# over lengths 4..8; peakiness per layer = fraction of queries putting > 0.5 on the target key).

# %%
print(zoo.names())
model = zoo.load("polynomial")  # a TransformerLens TransformerBridge, offline
info = zoo.info("polynomial")
{k: info[k] for k in ("shape", "epochs", "test_accuracy", "eoi_peakiness", "iteration_peakiness")}

# %% [markdown]
# One test sequence of length 6, decoded: the inputs, EoI, then every state of the iteration.

# %%
data = ih.make_dataset(ih.DataConfig(task="polynomial", max_len=8, n_train=1, n_test=64))
probe = data.test.for_length(6).tokens[0]
print(" ".join(data.layout.decode(probe)))

# %% [markdown]
# `detect` scores every head against the two attention steps of the circuit on the model's test
# split and checks that predictions use the current state (state sensitivity: fraction of
# predictions that change when the CoT states are swapped between sequences; 1.00 = always).

# %%
report = ih.detect(model)
print(report)
assert report.has_iteration_circuit, report.verdict
assert report.found("iteration") == [(1, 0), (1, 1)] and report.found("eoi") == [(0, 1)]

# %% [markdown]
# The same scores as a heatmap (layer x head), the detected circuit outlined in red: EoI
# peakiness ≈ 0.6 for L0H1 (above the paper's 0.5), iteration peakiness ≈ 1.0 for L1H1. L1H0
# is a partial iteration head: it reads `x_t` at the middle steps (t = 2–7) and leaves the
# first and last to L1H1 (the "partial" lines of the report).

# %%
ih.viz.detection_heatmap(report)

# %% [markdown]
# The two heads on the probe. Orange squares: the ideal EoI pattern (every state looks at EoI);
# green squares: the ideal iteration pattern (the token before `s_t` looks at `x_t`, a line
# parallel to the diagonal). L0H1's weight sits in the EoI column, L1H1's on the green line.

# %%
ih.viz.attention_heatmap(model, probe, heads=[(0, 1), (1, 0), (1, 1)])

# %% [markdown]
# The same attention as an interactive circuitsvis view (works offline; hover a token to see
# where it attends).

# %%
ih.viz.attention_view(model, probe, heads=[(0, 1), (1, 0), (1, 1)])

# %% [markdown]
# Causal check: mean-ablating the detected heads must break the task. `verify` ablates the
# circuit, then each role alone; accuracy is sequence accuracy (every state right), clean ≈ 1.0.

# %%
verification = ih.verify(model, report, n=512)
print(verification)
assert verification.confirmed, verification.verdict

# %% [markdown]
# One ablation by hand: replace the iteration head's output by its mean over the batch. The
# model can no longer fetch `x_t`, and sequence accuracy collapses from 1.0 to below 0.1; the
# partial head L1H0 alone costs little (L1H1 covers its steps), the other layer-0 head L0H0
# nearly nothing.

# %%
effect = ih.ablation_effect(model, [(1, 1)], kind="mean", n=512)
print(effect)
assert effect.clean.mean("accuracy") > 0.99 and effect.accuracy < 0.1
others = {
    f"L{a}H{b}": ih.ablation_effect(model, [(a, b)], n=512) for a, b in [(0, 0), (0, 1), (1, 0)]
}
assert others["L1H0"].accuracy > 0.5 and others["L0H0"].accuracy > 0.5
ih.viz.ablation_chart({**others, "L1H1": effect})

# %% [markdown]
# Next: `02_watch_a_head_form` trains such a model from scratch, `03_patching_and_ablation`
# runs every intervention of the library, `04_audit_your_model` audits a HuggingFace model and
# `05_transfer` reuses the head for another task.
