# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Audit your own model: a HuggingFace GPT-2
#
# `detect` works on any TransformerLens model, including HuggingFace models wrapped as a
# `TransformerBridge`, with their own vocabulary: you give it probe sequences and say where the
# inputs, EoI and the chain of thought sit; no tokenizer is needed.
#
# The model here is a HuggingFace `GPT2LMHeadModel` (2 layers x 2 heads, d 64) trained on
# polynomial iteration with the masked CoT loss, shipped as a test fixture
# (`tests/fixtures/gpt2_polynomial`, saved with `save_pretrained`; recipe in
# `tests/fixtures/make_fixtures.py`: N(0, 1) token and position embeddings, embedding dropout
# 0.1, Adam 3e-4, 55 epochs at Lmax 8 — minutes of CPU, too long to retrain here; a brief run of
# 40-50 epochs at Lmax 6 did not yet form the circuit).

# %%
import json
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

import iteration_heads as ih
from iteration_heads.model import wrap_hf_model

# Figures as plotly JSON (interactive in Jupyter) and as HTML with plotly.js embedded once, no
# CDN: static viewers (nbviewer, VS Code, HTML exports) show them too.
ih.viz.notebook_figures()

here = Path.cwd().resolve()
ROOT = next(p for p in (here, *here.parents) if (p / "tests" / "fixtures").is_dir())
FIXTURE = ROOT / "tests" / "fixtures" / "gpt2_polynomial"
hf_logging.disable_progress_bar()

# %% [markdown]
# Load it offline and wrap it: the bridge exposes the usual hooks
# (`blocks.{l}.attn.hook_pattern`, ...). `metadata.json` records how it was trained.

# %%
model = wrap_hf_model(GPT2LMHeadModel.from_pretrained(FIXTURE))
print(type(model).__name__, model.cfg.n_layers, "layers x", model.cfg.n_heads, "heads")
meta = json.loads((FIXTURE / "metadata.json").read_text())
{k: meta[k] for k in ("task", "architecture", "epochs", "test_accuracy")}

# %% [markdown]
# ## Probes in the model's own vocabulary
# This model was trained on the sequence template `<task> x_1 … x_L <EoI> s_1 … s_L <EoS>` with
# the token ids below (for a model of yours, read them off its tokenizer). Three positions locate
# the parts of each probe of input length L:
# * `input_start`: index of `x_1` = number of tokens before the inputs (here 1: the task token;
#   a template `<bos> <task> x_1 …` would have 2);
# * `eoi`: index of the token that ends the input (here right after it: `input_start + L`);
# * `cot_start`: index of `s_1` (here `eoi + 1`; later if the template puts, say, a separator
#   between EoI and the first state).

# %%
SYMBOLS = {v: v for v in range(11)}  # symbol v (0..10) is token id v in this model
TASK, EOI, EOS = 15, 11, 12  # token ids of <polynomial>, <EoI>, <EoS>
MAX_LEN, PER_LENGTH = 8, 64
task = ih.get_task("polynomial")
to_ids = torch.tensor([SYMBOLS[v] for v in range(task.n_symbols)])  # symbol -> token id
generator = torch.Generator().manual_seed(1)
width = 1 + 2 * MAX_LEN + 2  # 19 positions: the model's context
tokens, targets, lengths = [], [], []
for L in range(1, MAX_LEN + 1):
    x = task.sample_inputs(PER_LENGTH, L, generator=generator)
    s = task.states(x)
    seq = torch.full((PER_LENGTH, width), EOS)
    seq[:, 0] = TASK
    seq[:, 1 : L + 1] = to_ids[x]
    seq[:, L + 1] = EOI
    seq[:, L + 2 : 2 * L + 2] = to_ids[s]
    target = torch.full_like(seq, -100)  # scored: the predictions of s_1 .. s_L and EoS
    target[:, L + 1 : 2 * L + 2] = seq[:, L + 2 : 2 * L + 3]
    tokens.append(seq)
    targets.append(target)
    lengths.append(torch.full((PER_LENGTH,), L))
tokens, targets, lengths = torch.cat(tokens), torch.cat(targets), torch.cat(lengths)
input_start = 1
eoi = input_start + lengths
probes = ih.Probes(tokens, lengths, input_start=input_start, eoi=eoi, cot_start=eoi + 1)
print(probes)
print("a probe of length 3:", tokens[lengths == 3][0].tolist())

# %% [markdown]
# (The same probes in one call:
# `ih.Probes.from_task("polynomial", symbol_to_token=SYMBOLS, eoi_token=EOI, eos_token=EOS,
# task_token=TASK, max_len=8, n=512)`.) Now the audit: every head's EoI and iteration scores,
# and the verdict.

# %%
report = ih.detect(model, probes)
print(report)
assert report.has_iteration_circuit, report.verdict

# %% [markdown]
# ## Reading the report: a circuit spread over heads
# With two heads per layer, `detect` also scores each layer's heads **summed** (`report.layers`).
# No single layer-0 head passes the EoI rule (peakiness ≥ 0.5), but their sum does (≈ 0.53):
# the EoI half is spread over L0H0 (0.16) and L0H1 (0.32), each attending to EoI from some of
# the states. The iteration half sits in layer 1: L1H0 (0.88) and L1H1 (0.58) each pass, their
# sum reaches 0.95. The uniform causal pattern is the chance level (`*_uniform_*`); a sum of two
# heads gets twice a single head's mean weight.

# %%
columns = ["eoi_peakiness", "eoi_mean", "eoi_uniform_mean"]
columns += ["iteration_peakiness", "iteration_mean", "iteration_uniform_mean", "role"]
report.layers[["layer", "n_heads", *columns]].round(2)

# %%
layer0 = report.layers.loc[0]
assert layer0["eoi_peakiness"] > 0.5 and report.layers.loc[1, "iteration_peakiness"] > 0.9
ih.viz.detection_heatmap(report)

# %% [markdown]
# The four heads on one probe of length 8: layer 0 splits the EoI column between its heads,
# layer 1 draws the iteration line (green squares).

# %%
ih.viz.attention_heatmap(model, probes, index=int((lengths == 8).nonzero()[0]))

# %% [markdown]
# The causal check works on the wrapped model too, with the probes' own targets. Since the EoI
# half is a layer sum, the circuit is all four heads (`verify` then has no other heads to
# compare with), so here each head is mean-ablated alone: every one of them matters, and sequence
# accuracy (lengths 4..8) falls from 1.0.

# %%
single = {
    f"L{layer}H{head}": ih.ablation_effect(model, [(layer, head)], (tokens, targets, lengths))
    for layer in range(2)
    for head in range(2)
}
print({name: round(effect.accuracy, 3) for name, effect in single.items()})
assert single["L1H0"].accuracy < 0.5
ih.viz.ablation_chart(single)

# %% [markdown]
# ## A random model of the same shape is not flagged
# Untrained GPT-2 and Llama models (2 layers x 2 heads, d 64, same vocabulary) under the same
# probes: attention is near uniform, no head passes, no circuit.

# %%
torch.manual_seed(0)
random_models = {
    "random GPT-2": GPT2LMHeadModel(GPT2Config.from_pretrained(FIXTURE)),
    "random Llama": LlamaForCausalLM(
        LlamaConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=16,
            max_position_embeddings=32,
        )
    ),
}
for name, hf_model in random_models.items():
    random_report = ih.detect(wrap_hf_model(hf_model), probes)
    print(f"{name}: {random_report.verdict}")
    assert not random_report.has_iteration_circuit

# %% [markdown]
# ## The whole audit in one call
# `ih.audit` gives the verdict in three layers: are there iteration heads (attention), are they
# used (ablating them against as many other heads, and swapping the current state), and what
# tells them the position (each earlier component patched into their queries). The same works
# on any HuggingFace checkpoint folder from the command line:
# `iteration-heads audit FOLDER --template "<s> {inputs} {eoi} {states} </s>"`
# (see docs/guide/auditing.md).

# %%
probes = ih.Probes.from_task(
    "polynomial", symbol_to_token=SYMBOLS, eoi_token=EOI, eos_token=EOS, task_token=TASK,
    max_len=MAX_LEN, n=512,
)  # fmt: skip
result = ih.audit(model, probes)  # these probes carry their targets: ablation needs them
print(result.verdict)
assert result.has_iteration_heads and result.used
