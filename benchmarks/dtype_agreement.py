"""How far do the analyses move when the weights are bfloat16 instead of float32? (issue 29,
item 5)

For the zoo's ``ontology`` model and the HuggingFace fixture ``llama_prontoqa`` (rotary
positions, RMSNorm, grouped-query attention), on the same prompts as
``benchmarks/attribution_validation.py``: head patching (exact, and attribution) and the
answer writers' direct logit attribution, first in float32, then with the same model cast to
bfloat16 (:func:`iteration_heads.model.precision.cast_model`). Per label (subtask) and over all
prompts (``all``):

* Spearman rank correlation over every head of the KL ratios (patching) or of the mean DLA
  (writers), float32 against bfloat16;
* top-5 overlap: the fraction of the float32 top 5 heads that bfloat16 puts in its own top 5;
* the largest absolute difference, and that difference relative to the largest float32 value;
* the wall time of each call in each dtype (one thread).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dtype_agreement.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from attribution_validation import FIXTURES, load, overlap, spearman

HERE = Path(__file__).parent
COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dtype_agreement.py --threads 1"


def ranking(values: torch.Tensor) -> list[tuple[int, int]]:
    """Heads by decreasing value (NaN last)."""
    flat = torch.nan_to_num(values.flatten().double(), nan=-float("inf"))
    n_heads = values.shape[1]
    return [(int(i) // n_heads, int(i) % n_heads) for i in flat.argsort(descending=True)]


def analyses(model: Any, prompts: Any) -> dict[str, tuple[float, dict[str, torch.Tensor]]]:
    """Each analysis: its wall time and its per-label head map."""
    from iteration_heads.pathways import answer_writers, head_patching

    out = {}
    for name, run, read in (
        ("patching exact", lambda: head_patching(model, prompts, method="exact"), "kl_ratio"),
        (
            "patching attribution",
            lambda: head_patching(model, prompts, method="attribution"),
            "kl_ratio",
        ),
        ("writers DLA", lambda: answer_writers(model, prompts), "dla"),
    ):
        tick = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - tick
        out[name] = (seconds, {k: v.float() for k, v in getattr(result, read).items()})
    return out


def compare(name: str, n: int) -> list[dict[str, Any]]:
    from iteration_heads.model.precision import cast_model

    model, prompts = load(name, n)
    full = analyses(model, prompts)
    cast_model(model, "bfloat16")
    half = analyses(model, prompts)
    rows = []
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    for analysis, (f_s, f_maps) in full.items():
        h_s, h_maps = half[analysis]
        for label, a in f_maps.items():
            b = h_maps[label]
            if bool(torch.isnan(a).all()):
                continue
            keep = ~(torch.isnan(a) | torch.isnan(b))
            diff = float((a - b)[keep].abs().max())
            scale = float(a[keep].abs().max())
            rows.append(
                {
                    "model": name,
                    "heads": f"{n_layers}x{n_heads}",
                    "prompts": len(prompts),
                    "analysis": analysis,
                    "label": label,
                    "spearman": round(spearman(a, b), 4),
                    "top5": round(overlap(ranking(a), ranking(b), 5), 2),
                    "max_abs_diff": float(f"{diff:.3g}"),
                    "rel_diff": float(f"{diff / max(scale, 1e-12):.3g}"),
                    "float32_s": round(f_s, 3),
                    "bfloat16_s": round(h_s, 3),
                }
            )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model (layers x heads) | prompts | analysis | label | Spearman | top-5 | max abs diff "
        "| relative | float32 s | bfloat16 s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} ({r['heads']}) | {r['prompts']} | {r['analysis']} | {r['label']} "
            f"| {r['spearman']:.3f} | {r['top5']:.2f} | {r['max_abs_diff']:.3g} "
            f"| {r['rel_diff']:.3g} | {r['float32_s']:.2f} | {r['bfloat16_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=16, help="problems per model")
    parser.add_argument("--models", nargs="+", default=["ontology", "llama_prontoqa"])
    parser.add_argument("--json", type=Path, default=HERE / "dtype_agreement_results.json")
    parser.add_argument("--markdown", type=Path, default=HERE / "dtype_agreement_results.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(COMMAND)
    rows = []
    for name in args.models:
        if name == "llama_prontoqa" and not (FIXTURES / name / "model.safetensors").exists():
            print(f"skipping {name}: fixture not built")
            continue
        rows += compare(name, args.n)
    cpu = torch.backends.cpu.get_cpu_capability()
    record = {"command": COMMAND, "threads": args.threads, "n": args.n, "cpu": cpu, "rows": rows}
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    header = f"`{COMMAND}` (torch {torch.__version__}, CPU capability {cpu})\n\n"
    args.markdown.write_text(header + markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
