"""``iteration-heads pathways`` at language-model scale: a GPT-2-small shape (12 x 12, d 768,
vocabulary 50,257) and a 1B-class Llama shape (16 layers x 32 heads, 8 key/value heads, d 2048,
MLP 8192, vocabulary 32,000), random weights, read through the natural-language PrOntoQA
generator (the word-level tokenizer of tests/fixtures/llama_prontoqa) — 64 prompts of about 200
tokens (weights drawn with a standard deviation of 0.1, not 0.02: at 0.02 the output barely
depends on the input, and no corruption changes it by head patching's ``min_kl``). For each
analysis: the ``--dry-run`` plan (passes, seconds, peak memory) beside the
measured seconds, forward passes (a hook on the last block) and peak resident memory (reset
per analysis through /proc/self/clear_refs), and head patching in forward-pass equivalents.

    OMP_NUM_THREADS=2 python benchmarks/pathways_scale.py --shape gpt2-small
    OMP_NUM_THREADS=2 python benchmarks/pathways_scale.py --shape llama-1b \\
        --analyses patching,writers,lens
    OMP_NUM_THREADS=2 python benchmarks/pathways_scale.py --shape gpt2-small --distinct --dry-run

The prompts are every studied step of a few problems, so steps of one problem share its
sequence (7 distinct sequences for 64 prompts), which the analyses that treat every row alike
run once; ``--distinct`` takes one step of each of 64 problems instead (nothing shared).

``--device cuda`` runs the same on a GPU (skipped without one). Writes
benchmarks/pathways_scale_<shape>.json and .md; the model folder is built once under
``--cache`` (default /tmp/iteration_heads_scale).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from iteration_heads.auditing.cost import time_forward
from iteration_heads.cli.pathway_runs import open_model, run_analyses
from iteration_heads.cli.pathways import ANALYSES
from iteration_heads.passes import shared_sequences
from iteration_heads.pathways.cost import plan_pathways
from iteration_heads.pathways.text_ontology import prontoqa_prompts
from iteration_heads.tasks.prontoqa import ProntoQAConfig, make_prontoqa

HERE = Path(__file__).parent
TOKENIZER = HERE.parent / "tests" / "fixtures" / "llama_prontoqa"
SHAPES: dict[str, dict[str, Any]] = {
    "gpt2-small": {"kind": "gpt2", "n_layer": 12, "n_head": 12, "n_embd": 768,
                   "vocab_size": 50257, "n_positions": 1024, "initializer_range": 0.1},
    "llama-1b": {"kind": "llama", "num_hidden_layers": 16, "num_attention_heads": 32,
                 "num_key_value_heads": 8, "hidden_size": 2048, "intermediate_size": 8192,
                 "vocab_size": 32000, "max_position_embeddings": 2048,
                 "initializer_range": 0.1},
}  # fmt: skip


def build_folder(shape: str, cache: Path) -> Path:
    """A HuggingFace folder of ``shape`` with seeded random weights and the fixture's tokenizer
    (built once)."""
    folder = cache / shape
    if (folder / "config.json").is_file():
        return folder
    import transformers

    spec = dict(SHAPES[shape])
    kind = spec.pop("kind")
    torch.manual_seed(0)
    if kind == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**spec))
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**spec))
    model.save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER / name, folder / name)
    return folder


def text_prompts(tokenizer: Any, n: int, seed: int, distinct: bool = False) -> Any:
    """``n`` studied steps of natural-language PrOntoQA problems of about 200 tokens: every
    step of about ``n / 6`` problems (steps of one problem share its sequence), or with
    ``distinct`` one seeded step of each of ``n`` problems (no two prompts share a sequence)."""
    config = ProntoQAConfig(shots=1, distractors=2, hops=(2,))
    problems = make_prontoqa(config, n if distinct else max(4, n // 6), seed=seed)
    prompts = prontoqa_prompts(problems, tokenizer, skip_uncorruptible=True)
    if distinct:
        inverse = shared_sequences(prompts.clean, prompts.position).inverse
        pick = torch.Generator().manual_seed(seed)
        steps = [(inverse == u).nonzero()[:, 0] for u in inverse.unique()]
        prompts = prompts.select(
            torch.stack([s[torch.randint(len(s), (1,), generator=pick)][0] for s in steps])
        )
    return prompts.select(torch.arange(min(n, len(prompts))))


def peak_reset() -> None:
    with contextlib.suppress(OSError):  # not Linux: the peak is then the process's
        Path("/proc/self/clear_refs").write_text("5")


def peak_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="gpt2-small")
    parser.add_argument("--analyses", default=",".join(ANALYSES))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument(
        "--distinct", action="store_true", help="one step per problem: no shared sequences"
    )
    parser.add_argument("--method", default="auto", help="head patching method")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dry-run", action="store_true", help="write the plan only")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/iteration_heads_scale"))
    options = parser.parse_args()
    if options.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return
    tick = time.perf_counter()
    folder = build_folder(options.shape, options.cache)
    opened = open_model(folder)
    model = opened.model.to(options.device)
    built = time.perf_counter() - tick
    prompts = text_prompts(opened.tokenizer, options.prompts, seed=0, distinct=options.distinct)
    distinct = len(shared_sequences(prompts.clean, prompts.position).tokens)
    everything = options.analyses == ",".join(ANALYSES)
    name = f"pathways_scale_{options.shape}" + ("_distinct" if options.distinct else "")
    name += "" if everything else "_" + options.analyses.replace(",", "-")
    width = int(prompts.clean.shape[1])
    chosen = options.analyses.split(",")
    timing = time_forward(model, width, rows=4, backward=True)  # w.r.t. activations: ~1 forward
    tick = time.perf_counter()
    plan = plan_pathways(model, prompts, chosen, prior="context-free", method=options.method,
                         timing=timing)  # fmt: skip
    planning = time.perf_counter() - tick
    print(plan.format(), flush=True)
    if options.dry_run:
        out = HERE / f"{name}_plan.json"
        record = {"command": "python " + " ".join(sys.argv), "threads": torch.get_num_threads(),
                  "prompts": len(prompts), "distinct sequences": distinct, "width": width,
                  "plan": plan.to_dict()}  # fmt: skip
        out.write_text(json.dumps(record, indent=2, default=str) + "\n")
        out.with_suffix(".md").write_text(f"`{record['command']}`\n\n```\n{plan.format()}\n```\n")
        return
    calls: list[int] = []
    model.blocks[-1].register_forward_pre_hook(lambda module, args: calls.append(1))
    one_forward = timing.seconds(forwards=1, tokens=len(prompts) * width)
    rows, results = [], {}
    for stage in plan.stages:
        analysis = stage.name.split()[0]
        args = argparse.Namespace(chosen=[analysis], seed=0, n_random=5, n_traced=8, centre="auto",
                                  mean="position", prior="context-free", method=options.method)  # fmt: skip
        calls.clear()
        peak_reset()
        tick = time.perf_counter()
        results |= run_analyses(model, prompts, args, results)[0]  # as one full run reads them
        seconds = time.perf_counter() - tick
        row = {"analysis": stage.name, "planned passes": stage.forwards,
               "run passes": len(calls), "estimated s": round(stage.seconds, 1),
               "measured s": round(seconds, 1), "ratio": round(seconds / stage.seconds, 2),
               "planned peak GB": round(stage.working / 1e9, 2),
               "peak RSS GB": round(peak_bytes() / 1e9, 2),
               "forward-pass equivalents": round(seconds / one_forward, 1)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    total_est, total_run = sum(r["estimated s"] for r in rows), sum(r["measured s"] for r in rows)
    result = {
        "command": "python " + " ".join(sys.argv),
        "shape": options.shape,
        "threads": torch.get_num_threads(),
        "device": options.device,
        "prompts": len(prompts),
        "distinct sequences": distinct,
        "width": width,
        "weights GB": round(sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9, 2),
        "model built and loaded s": round(built, 1),
        "planning s": round(planning, 1),
        "one forward of every prompt s (timed)": round(one_forward, 1),
        "analyses": rows,
        "total estimated s": round(total_est, 1),
        "total measured s": round(total_run, 1),
    }
    out = HERE / name
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    keys = list(rows[0]) if rows else []
    lines = [f"`{result['command']}` — {len(prompts)} prompts ({distinct} distinct sequences) of width {width}, "
             f"{result['threads']} threads, {options.device}", "",
             "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]  # fmt: skip
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    lines += ["", f"total: estimated {total_est:.0f} s, measured {total_run:.0f} s"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
