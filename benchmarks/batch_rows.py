"""Rows per forward pass: the pathways' sweeps at the old fixed 2,048 rows against rows sized to
the memory budget and the CPU's working set (``iteration_heads.memory.analysis_rows``), in the
same run, on the zoo ontology model (4 layers x 4 heads) with the prompts of notebook 06, and on
a GPT-2-small-shaped model (random weights, 12 x 12, d 768) at 200 tokens. Same numbers either
way (checked), different seconds and peak memory of the passes.

    OMP_NUM_THREADS=1 python benchmarks/batch_rows.py [--threads 1]

Writes benchmarks/batch_rows_results.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from iteration_heads import ModelConfig, build_model, zoo
from iteration_heads import pathways as pw
from iteration_heads.experiments.ontology_study import model_ontology, solved
from iteration_heads.memory import analysis_rows, forward_bytes
from iteration_heads.pathways.reference import reference_means
from iteration_heads.tasks import make_ontology_problems

HERE = Path(__file__).parent
FIXED = 2048


def timed(work: Any) -> tuple[Any, float]:
    tick = time.perf_counter()
    out = work()
    return out, time.perf_counter() - tick


def ontology_case() -> dict[str, Any]:
    model = zoo.load("ontology")
    ontology = model_ontology(model)
    problems = make_ontology_problems(ontology, 30, seed=2024, kind="fictional")
    prompts = pw.ontology_prompts(problems)
    prompts = prompts.select(solved(model, prompts))
    reference = make_ontology_problems(ontology, 40, seed=7, kind="contradicting").tokens
    reference = reference[:, : prompts.clean.shape[1]]
    ranking = pw.all_heads(model)
    cut = int(prompts.position.max()) + 1
    rows = {"fixed": FIXED, "budget": analysis_rows(model, cut)}
    out: dict[str, Any] = {"model": "zoo ontology (4 x 4, d 64)", "prompts": len(prompts),
                           "width": cut, "rows": rows}  # fmt: skip
    curves, patched = {}, {}
    for name, size in rows.items():
        curves[name], out[f"pruning {name} s"] = timed(
            lambda size=size: pw.pruning_curve(
                model, prompts, ranking, reference, n_random=3, batch_size=size
            )
        )
        patched[name], out[f"patching {name} s"] = timed(
            lambda size=size: pw.head_patching(model, prompts, method="exact", batch_size=size)
        )
        out[f"pass memory {name} MB"] = round(
            forward_bytes(model, size, cut, logits="one", cached=4) / 2**20, 1
        )
    out["same pruning"] = bool(torch.equal(curves["fixed"].agreement, curves["budget"].agreement))
    out["patching max difference"] = max(
        float((patched["fixed"].kl_ratio[k] - patched["budget"].kl_ratio[k]).abs().max())
        for k in patched["fixed"].kl_ratio
    )
    return out


def gpt2_case() -> dict[str, Any]:
    config = ModelConfig(n_layers=12, n_heads=12, d_model=768, max_len=100, d_vocab_=50257,
                         n_ctx_=200)  # fmt: skip
    model = build_model(config)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 50257, (4, 200), generator=generator)
    rows = {"fixed": FIXED, "budget": analysis_rows(model, 200)}
    out: dict[str, Any] = {"model": "GPT-2-small shape (12 x 12, d 768), random", "prompts": 4,
                           "width": 200, "rows": rows}  # fmt: skip
    for name, size in rows.items():
        _, out[f"reference means {name} s"] = timed(
            lambda size=size: reference_means(model, tokens.repeat(4, 1), batch_size=size)
        )
        out[f"pass memory {name} MB"] = round(
            forward_bytes(model, min(size, 16), 200, logits="one", cached=12) / 2**20, 1
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    results = {
        "command": f"python benchmarks/batch_rows.py --threads {options.threads}",
        "threads": options.threads,
        "cases": [ontology_case(), gpt2_case()],
    }
    (HERE / "batch_rows_results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"`{results['command']}`", "", "| case | measure | fixed 2,048 rows | budgeted |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    for case in results["cases"]:
        rows = case["rows"]
        lines.append(f"| {case['model']} | rows per pass | {rows['fixed']} | {rows['budget']} |")
        for key in [k for k in case if k.endswith(" fixed s") or k.endswith(" fixed MB")]:
            stem, unit = key.rsplit(" fixed ", 1)
            lines.append(
                f"| | {stem} ({unit}) | {case[key]:.3g} | {case[f'{stem} budget {unit}']:.3g} |"
            )
    (HERE / "batch_rows_results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps(results["cases"][0], indent=1))


if __name__ == "__main__":
    main()
