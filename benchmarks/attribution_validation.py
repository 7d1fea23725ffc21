"""How close is attribution patching to exact head patching? (issue 29, items 1-2)

For each model (the zoo's ``ontology`` and ``polynomial_paper``, the HuggingFace fixtures
``gpt2_polynomial``, ``gpt2_text_polynomial`` and ``llama_prontoqa``, grouped-query attention),
``head_patching(method="exact")`` against ``head_patching(method="attribution")`` on the same
prompts, per label (subtask) and over all prompts (``all``):

* Spearman rank correlation of the KL ratios of means over every head (and of the
  logit-difference ratios);
* top-3 and top-5 overlap: the fraction of the exact top-k heads (by KL ratio) that attribution
  puts in its own top k;
* the time of each method (one call each, clean and corrupted runs included);
* integrated gradients (``--ig-steps``, every head moving together from corrupted to clean):
  the same Spearman figure, to see whether it helps;
* TransformerLens's ``attribution_patch`` (:func:`transformer_lens_estimates`) against the
  library's bookkeeping: the largest difference of the per-prompt estimates, relative to
  their largest magnitude, and its time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/attribution_validation.py --threads 1 \\
        --json benchmarks/attribution_validation_results.json \\
        --markdown benchmarks/attribution_validation_results.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps (average ranks for ties; NaN entries dropped)."""
    frame = pd.DataFrame({"a": a.flatten().double().numpy(), "b": b.flatten().double().numpy()})
    frame = frame.dropna()
    ranks = frame.rank()
    return float(ranks["a"].corr(ranks["b"]))


def overlap(exact: list, estimate: list, k: int) -> float:
    return len(set(exact[:k]) & set(estimate[:k])) / max(1, min(k, len(exact)))


def load(name: str, n: int) -> tuple[Any, Any]:
    """The model and its prompts."""
    from iteration_heads import DataConfig, make_dataset, zoo
    from iteration_heads.detection.encoding import TextEncoding
    from iteration_heads.experiments.ontology_study import model_ontology
    from iteration_heads.model import load_hf_folder
    from iteration_heads.pathways import (
        iteration_prompts,
        iteration_records,
        ontology_prompts,
        prompts_from_records,
        prontoqa_prompts,
    )
    from iteration_heads.tasks import make_ontology_problems
    from iteration_heads.tasks.prontoqa import ProntoQAConfig, make_prontoqa

    if name == "ontology":
        model = zoo.load("ontology")
        problems = make_ontology_problems(model_ontology(model), n, seed=10_000, kind="fictional")
        return model, ontology_prompts(problems)
    if name in ("polynomial_paper", "gpt2_polynomial"):
        model = zoo.load(name) if name == "polynomial_paper" else load_hf_folder(FIXTURES / name)[0]
        data = make_dataset(DataConfig(task="polynomial", max_len=8, n_train=8, n_test=n))
        return model, iteration_prompts(data.test, data.layout)
    if name == "gpt2_text_polynomial":
        model, tokenizer = load_hf_folder(FIXTURES / name)
        encoding = TextEncoding(tokenizer, "<s> {inputs} {eoi} {states} </s>")
        records = iteration_records(encoding, n=n, max_len=8, min_len=3, seed=1)
        return model, prompts_from_records(records, tokenizer)
    folder = FIXTURES / "llama_prontoqa"
    model, tokenizer = load_hf_folder(folder)
    spec = json.loads((folder / "ground_truth.json").read_text())["problems"]
    config = ProntoQAConfig(
        **{k: tuple(v) if k == "hops" else v for k, v in spec["config"].items()}
    )
    drawn = make_prontoqa(config, spec["drawn"], seed=spec["seed"])
    held_out = [drawn[i] for i in spec["indices"]][:n]
    subtasks = ("decision", "copy", "induction", "answer")
    return model, prontoqa_prompts(held_out, tokenizer, subtasks=subtasks)


def timed(fn: Any) -> tuple[float, Any]:
    tick = time.perf_counter()
    result = fn()
    return time.perf_counter() - tick, result


def validate(name: str, n: int, ig_steps: int) -> list[dict[str, Any]]:
    from iteration_heads.pathways import attribution
    from iteration_heads.pathways.attribution import transformer_lens_estimates
    from iteration_heads.pathways.restoration import head_patching

    model, prompts = load(name, n)
    exact_s, exact = timed(lambda: head_patching(model, prompts, method="exact"))
    attr_s, attr = timed(lambda: head_patching(model, prompts, method="attribution"))
    ig_s, ig = timed(lambda: head_patching(model, prompts, method="attribution", ig_steps=ig_steps))
    tl_s, (tl_kl, tl_ld) = timed(lambda: transformer_lens_estimates(model, prompts))
    # the library's per-prompt estimates of KL_patched - KL_corr and LD_patched - LD_corr
    mine_kl = -attr.per_prompt_kl * attr.kl_corrupted
    mine_ld = attr.per_prompt_logit_diff * (attr.logit_diff_clean - attr.logit_diff_corrupted)
    keep = ~torch.isnan(mine_kl[0, 0])
    tl_diff = max(
        float((m[..., keep] - t[..., keep]).abs().max() / t[..., keep].abs().max().clamp(min=1e-12))
        for m, t in ((mine_kl, tl_kl), (mine_ld, tl_ld))
    )
    n_layers, n_heads = exact.values.shape
    rows = []
    for label in exact.groups:
        ranked = exact.ranking(label)
        rows.append(
            {
                "model": name,
                "heads": f"{n_layers}x{n_heads}",
                "label": label,
                "n": exact.n_prompts[label],
                "spearman_kl": round(spearman(exact.kl_ratio[label], attr.kl_ratio[label]), 3),
                "spearman_ld": round(
                    spearman(exact.logit_diff_ratio[label], attr.logit_diff_ratio[label]), 3
                ),
                "top3": round(overlap(ranked, attr.ranking(label), 3), 3),
                "top5": round(overlap(ranked, attr.ranking(label), 5), 3),
                f"spearman_kl_ig{ig_steps}": round(
                    spearman(exact.kl_ratio[label], ig.kl_ratio[label]), 3
                ),
                "exact_s": round(exact_s, 3),
                "attribution_s": round(attr_s, 3),
                f"ig{ig_steps}_s": round(ig_s, 3),
                "transformer_lens_s": round(tl_s, 3),
                "transformer_lens_rel_diff": float(f"{tl_diff:.2g}"),
                "exact_cost": attribution.exact_cost(model, prompts),
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], ig_steps: int) -> str:
    """One line per (model, label): the agreement figures and the times."""
    lines = [
        f"| model (layers x heads) | label | prompts | Spearman KL | Spearman LD | top-3 | top-5 "
        f"| Spearman KL, IG {ig_steps} steps | exact s | attribution s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} ({r['heads']}) | {r['label']} | {r['n']} | {r['spearman_kl']:.3f} "
            f"| {r['spearman_ld']:.3f} | {r['top3']:.2f} | {r['top5']:.2f} "
            f"| {r[f'spearman_kl_ig{ig_steps}']:.3f} | {r['exact_s']:.2f} | {r['attribution_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=16, help="problems / sequences per model")
    parser.add_argument("--ig-steps", type=int, default=4)
    parser.add_argument(
        "--models",
        nargs="+",
        default=[
            "ontology",
            "polynomial_paper",
            "gpt2_polynomial",
            "gpt2_text_polynomial",
            "llama_prontoqa",
        ],
    )
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        if name == "llama_prontoqa" and not (FIXTURES / name / "model.safetensors").exists():
            print(f"skipping {name}: fixture not built")
            continue
        rows += validate(name, args.n, args.ig_steps)
        print(pd.DataFrame([r for r in rows if r["model"] == name]).to_string(index=False))
    if args.json:
        record = {"threads": args.threads, "n": args.n, "ig_steps": args.ig_steps, "rows": rows}
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(rows, args.ig_steps))


if __name__ == "__main__":
    main()
