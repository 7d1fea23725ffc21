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
# # Pathways of multi-hop reasoning
#
# Dutta et al. ("How to think step-by-step", TMLR 2024) studied Llama-2 7B reasoning over
# fictional ontologies: which heads carry each subtask of the chain of thought, how small a
# circuit keeps the answers, where the answer-writing heads sit, where the in-context answer
# overtakes the model's prior (the "rift"), and from which part of the prompt the answer comes.
# Here the same analyses run on the zoo's `ontology` model (4 layers x 4 heads, trained here in
# about ten minutes on 2 CPU cores), then, unchanged, on the paper's two-layer model
# (`polynomial_paper`, one head per layer).

# %%
import json
from pathlib import Path

import torch

from iteration_heads import DataConfig, make_dataset, viz, zoo
from iteration_heads import pathways as pw
from iteration_heads.detection.encoding import TextEncoding
from iteration_heads.experiments.ontology_study import (
    contradiction_prompts,
    model_ontology,
    solved,
)
from iteration_heads.model import load_hf_folder
from iteration_heads.tasks import make_ontology_problems

# Figures as plotly JSON (interactive in Jupyter) and as HTML with plotly.js embedded once, no
# CDN: static viewers (nbviewer, VS Code, HTML exports) show them too.
viz.notebook_figures()

torch.manual_seed(0)
model = zoo.load("ontology")
ontology = model_ontology(model)  # the task the model was trained on (a memorised world included)
problems = make_ontology_problems(ontology, 30, seed=2024, kind="fictional")
print(problems.decode(0))

# %% [markdown]
# ## The prompts
# One prompt per chain-of-thought step (decision, copy, induction), studied at the position that
# predicts it, with a corruption that swaps the name the answer is copied from. Like Dutta et al.,
# keep the steps the model gets right.

# %%
prompts = pw.ontology_prompts(problems)
prompts = prompts.select(solved(model, prompts))
print(
    len(prompts), "prompts;", {label: prompts.labels.count(label) for label in set(prompts.labels)}
)

# %% [markdown]
# ## Which heads carry each subtask: head patching
# Each head's clean output restored into the corrupted run; 1 = the clean next-token distribution
# is fully back (KL score), per subtask.

# %%
patching = pw.head_patching(model, prompts)
print(patching.format())
viz.head_patching_heatmap(patching)

# %% [markdown]
# ## The smallest circuit: mean-ablation pruning
# Keep the top-k heads, mean-ablate the rest over contradicting prompts (Dutta's "false
# ontology"), and compare with the full model's top-1 prediction, against random heads kept.
# Ranked by patching score (Dutta's choice) the circuit is almost the whole model: the patching
# score misses the early heads every step needs.

# %%
reference = make_ontology_problems(ontology, 40, seed=7, kind="contradicting").tokens
reference = reference[:, : prompts.clean.shape[1]]
curve = pw.pruning_curve(model, prompts, patching.ranking(), reference, n_random=3)
print(curve.smallest_circuit())
viz.pruning_chart(curve)

# %% [markdown]
# ## Answer writers
# Direct logit attribution of every head onto the answer, split by the segment each head reads.
# The writers sit in layers 2 and 3: the second half, as in Llama-2.

# %%
writers = pw.answer_writers(model, prompts)
print(writers.layer_histogram())
viz.writers_chart(writers)

# %% [markdown]
# ## The rift: prior against context
# On questions whose facts contradict the world the model memorised, read the residual stream
# with the logit lens: the world's token leads in the middle, the in-context answer wins after.

# %%
contradicting = make_ontology_problems(ontology, 30, seed=11, kind="contradicting")
contra, prior = contradiction_prompts(model, contradicting)
lens = pw.logit_lens(model, contra, prior=prior)
print(lens.rift("copy"))
viz.logit_lens_chart(lens, label="copy")

# %% [markdown]
# ## Parallel pathways: cut attention to one segment
# Copies read the facts (and the subject just written), induction reads only the chain of
# thought.

# %%
segments = pw.segment_pathways(model, prompts, scope="answer")
viz.segment_chart(segments)

# %% [markdown]
# ## Information flow, traced back from the answer

# %%
graph = pw.trace_flow(model, prompts, index=0)
print(graph.format())
viz.flow_graph_chart(graph, names=list(problems.vocab.names))

# %% [markdown]
# ## The same tools on the paper's model
# No task-specific code: iterative-task prompts (the input `x_t` corrupted), the same head
# patching and tracing recover the EoI head L0H0 -> iteration head L1H0.

# %%
paper_model = zoo.load("polynomial_paper")
data = make_dataset(DataConfig(task="polynomial", max_len=8, n_train=1, n_test=8))
steps = pw.iteration_prompts(data.test, data.layout)
print(pw.head_patching(paper_model, steps).format())
summary = pw.trace_many(paper_model, steps)
print(summary.edges.head(6))

# %% [markdown]
# ## Your own model and your own prompts
# A model trained elsewhere reads text through its tokenizer, and your prompts can live in a JSON
# Lines file (schema: docs/guide/pathways.md). Here: the GPT-2 that the tests ship, trained with
# plain PyTorch on the polynomial task written as text (`<s> 3 2 10 = 3 7 5 </s>`). The paper's
# iteration prompts are written as text records, saved, read back through the model's tokenizer,
# and head patching finds its iteration heads, L1H0 and L1H1.

# %%
here = Path.cwd()
root = next(p for p in (here, *here.parents) if (p / "tests" / "fixtures").is_dir())
text_model, tokenizer = load_hf_folder(root / "tests" / "fixtures" / "gpt2_text_polynomial")
encoding = TextEncoding(tokenizer, "<s> {inputs} {eoi} {states} </s>")
records = pw.iteration_records(encoding, n=24, max_len=8, min_len=4)
print(json.dumps(records[0]))
path = Path("polynomial_prompts.jsonl")
path.write_text("".join(json.dumps(r) + "\n" for r in records))
own = pw.read_prompts(path, tokenizer)
path.unlink()
print(pw.head_patching(text_model, own).format(k=2))
