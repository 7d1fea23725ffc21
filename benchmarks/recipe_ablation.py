"""Which training recipe makes the TransformerLens model form an iteration head? (docs/paper.md §9)

Trains polynomial iteration (d_model 64, Lmax 8, CoT, Adam 3e-4, batch 256) under several
recipes and seeds, and records for each run the first epoch where test accuracy (L 4..8) reaches
0.99 and where the last layer's iteration peakiness reaches 0.9, with the wall-clock time.

    python benchmarks/recipe_ablation.py --seeds 0 1 2 --epochs 200 --out docs/results/recipe

Runs are independent; ``--jobs 2`` runs two at once with one thread each.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RECIPES = {
    # name: (embedding_init, embedding_dropout, batch_order, biases, score_padding)
    "tl-init": ("transformer_lens", 0.0, "shuffled", True, False),
    "tl-init+sorted": ("transformer_lens", 0.0, "sorted", True, False),
    "tl-init+dropout": ("transformer_lens", 0.1, "shuffled", True, False),
    "normal-init": ("normal", 0.0, "shuffled", True, False),
    "normal-init+dropout": ("normal", 0.1, "shuffled", True, False),
    "normal-init+dropout+sorted": ("normal", 0.1, "sorted", True, False),
    "normal-init+dropout+no-bias": ("normal", 0.1, "shuffled", False, False),
    "normal-init+dropout+padding-loss": ("normal", 0.1, "shuffled", True, True),
    # every trait of the authors' setup that the TransformerLens model can express
    "authors": ("normal", 0.1, "sorted", False, True),
}


def run_one(recipe: str, seed: int, epochs: int, d_model: int, max_len: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
    from iteration_heads.training import TrainConfig, history_summary, train

    init, dropout, order, biases, score_padding = RECIPES[recipe]
    data = make_dataset(
        DataConfig(task="polynomial", max_len=max_len, seed=seed, score_padding=score_padding)
    )
    model = build_model(
        ModelConfig(d_model=d_model, max_len=max_len, embedding_init=init, biases=biases, seed=seed)
    )
    config = TrainConfig(
        epochs=epochs, embedding_dropout=dropout, batch_order=order, seed=seed, stop_at_target=True
    )
    tick = time.perf_counter()
    history = train(model, data, config, progress=False)
    summary = history_summary(history)
    return {
        "recipe": recipe,
        "seed": seed,
        "wall_seconds": round(time.perf_counter() - tick, 1),
        **{
            k: summary[k]
            for k in (
                "epochs",
                "first_epoch_accuracy",
                "first_epoch_iteration_head",
                "first_epoch_both",
                "train_seconds",
            )
        },
        "final_test": summary["test"],
        "curve": [
            {"epoch": r["epoch"], **r["test"]["summary"], "train_loss": r["train_loss"]}
            for r in history
        ],
    }


def summarise(runs: list[dict], epochs: int) -> str:
    """A markdown table: per recipe, how many seeds formed a head within the budget, and when."""
    lines = [
        f"| recipe | seeds | accuracy >= 0.99 and iteration peakiness >= 0.9 within {epochs} epochs "
        "| epoch reached (per seed) | test accuracy at the last evaluation | iteration peakiness (layer 2) "
        "| EoI peakiness (layer 1) | wall-clock per run (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for recipe in RECIPES:
        rs = sorted((r for r in runs if r["recipe"] == recipe), key=lambda r: r["seed"])
        if not rs:
            continue
        ok = [r for r in rs if r["first_epoch_both"] is not None]
        reached = ", ".join(
            str(r["first_epoch_both"]) if r["first_epoch_both"] else "-" for r in rs
        )

        def mean(key: str, rs: list[dict] = rs) -> str:
            values = [r["final_test"][key] for r in rs]
            values = [
                v[-1] if key == "iteration_peakiness" else v[0] if isinstance(v, list) else v
                for v in values
            ]
            return f"{sum(values) / len(values):.3f} ({', '.join(f'{v:.2f}' for v in values)})"

        wall = sum(r["wall_seconds"] for r in rs) / len(rs)
        lines.append(
            f"| {recipe} | {', '.join(str(r['seed']) for r in rs)} | {len(ok)}/{len(rs)} | {reached} "
            f"| {mean('accuracy')} | {mean('iteration_peakiness')} | {mean('eoi_peakiness')} | {wall:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/results/recipe"))
    parser.add_argument("--summarise", action="store_true", help="only print the table of --out")
    args = parser.parse_args()
    if args.summarise:
        runs = [json.loads(x) for x in (args.out / "runs.jsonl").read_text().splitlines()]
        print(summarise(runs, args.epochs))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "runs.jsonl"
    done = set()
    if results_file.exists():
        done = {
            (r["recipe"], r["seed"]) for r in map(json.loads, results_file.read_text().splitlines())
        }
    todo = [(r, s) for s in args.seeds for r in args.recipes if (r, s) not in done]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run_one, r, s, args.epochs, args.d_model, args.max_len) for r, s in todo
        ]
        for future in futures:
            result = future.result()
            with open(results_file, "a") as f:
                f.write(json.dumps(result) + "\n")
            print(
                f"{result['recipe']:28s} seed {result['seed']}: acc>=0.99 at {result['first_epoch_accuracy']}, "
                f"head at {result['first_epoch_iteration_head']}, both at {result['first_epoch_both']}, "
                f"final {result['final_test']}, {result['wall_seconds']} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
