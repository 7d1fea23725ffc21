"""K seeds of one configuration: stacked in one process (`train_seeds`) against one process per
seed run one after another (`train`), each at one thread, and the stacked run at two threads.

Polynomial iteration with CoT, d_model 64, Lmax 8, the default recipe (Adam 3e-4, batch 256,
embedding dropout 0.1), evaluation only at epoch 0 and at the end. Every measurement runs in a
fresh process. Reported: training tokens per second (real tokens, not padding; evaluation and
start-up excluded, from the histories' `train_seconds`) and the end-to-end wall time of all the
processes (imports, data, evaluation included).

    python benchmarks/batched_seeds.py                       # K = 2, 4, 8; 2 epochs
    python benchmarks/batched_seeds.py --n-train 256 --epochs 2  # the small setting
    python benchmarks/batched_seeds.py --device cuda --ks 2 4 8 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("batched_seeds_results.json")


def configs(args: argparse.Namespace):
    from iteration_heads import DataConfig, ModelConfig
    from iteration_heads.training import TrainConfig

    model = ModelConfig(d_model=args.d_model, max_len=args.max_len)
    n = args.n_train
    data = DataConfig(task="polynomial", max_len=args.max_len, n_train=n, n_test=n)
    train = TrainConfig(epochs=args.epochs, eval_every=10**6, device=args.device)
    return model, data, train


def tokens(data, train, seed: int) -> int:
    """Real tokens one seed trains on over the run (its own batch order, no padding)."""
    import torch

    total = 0
    for epoch in range(train.epochs):
        order = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        for batch, _ in data.train.batches(train.batch_size, generator=order):
            total += batch.numel()
    return total


def child(args: argparse.Namespace) -> None:
    """One measurement in this process; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from dataclasses import replace

    from iteration_heads import build_model, make_dataset
    from iteration_heads.training import train
    from iteration_heads.training.batched import train_seeds

    model_config, data_config, train_config = configs(args)
    if args.mode == "separate":
        seed = args.seed
        mc, dc = replace(model_config, seed=seed), replace(data_config, seed=seed)
        data = make_dataset(dc, mc.layout)
        history = train(build_model(mc), data, replace(train_config, seed=seed), progress=False)
        histories, datasets = [history], [data]
        seeds = [seed]
    else:
        seeds = list(range(args.seeds))
        runs = train_seeds(model_config, data_config, train_config, seeds)
        histories = [history for _, history in runs]
        datasets = [make_dataset(replace(data_config, seed=s), model_config.layout) for s in seeds]
    n_tokens = sum(tokens(d, train_config, s) for d, s in zip(datasets, seeds, strict=True))
    seconds = sum(h[-1]["train_seconds"] for h in histories)  # batched: shares sum to the whole
    print(json.dumps({"train_seconds": seconds, "tokens": n_tokens}))


def run_child(args: argparse.Namespace, mode: str, seeds: int, threads: int) -> dict:
    """Run one measurement in a fresh process: ``seeds`` stacked, or the seed ``seeds``
    alone (mode "separate")."""
    flag = "--seed" if mode == "separate" else "--seeds"
    command = [sys.executable, __file__, "--child", mode, flag, str(seeds)]
    command += ["--threads", str(threads), "--device", args.device, "--epochs", str(args.epochs)]
    command += ["--n-train", str(args.n_train), "--d-model", str(args.d_model)]
    command += ["--max-len", str(args.max_len)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    tick = time.perf_counter()
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - tick
    return result


def measure(args: argparse.Namespace, k: int, separate: list[dict]) -> dict:
    """One row: the first ``k`` separate runs against ``k`` seeds stacked."""
    row: dict = {"k": k}
    modes = {"separate_1_thread": separate[:k]}
    modes["batched_1_thread"] = [run_child(args, "batched", k, 1)]
    if args.device == "cpu":
        modes["batched_2_threads"] = [run_child(args, "batched", k, 2)]
    for name, results in modes.items():
        seconds = sum(r["train_seconds"] for r in results)
        row[name] = {
            "train_seconds": round(seconds, 2),
            "tokens_per_second": round(sum(r["tokens"] for r in results) / seconds),
            "epochs_per_second": round(k * args.epochs / seconds, 3),
            "process_seconds": round(sum(r["process_seconds"] for r in results), 2),
        }
    base = row["separate_1_thread"]
    for name in modes:
        row[name]["speedup_train"] = round(base["train_seconds"] / row[name]["train_seconds"], 2)
        row[name]["speedup_end_to_end"] = round(
            base["process_seconds"] / row[name]["process_seconds"], 2
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8], help="seeds per run")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=1024, help="sequences per length")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument("--child", choices=["separate", "batched"], dest="mode", help="internal")
    parser.add_argument("--seeds", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return
    import torch

    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, device {args.device}, polynomial "
        f"d_model {args.d_model}, Lmax {args.max_len}, n_train {args.n_train}/length, "
        f"{args.epochs} epochs",
        flush=True,
    )
    # one process per seed (each trains alone, as `train` does), one after another; the first
    # K of them are the K separate runs of each row
    separate = [run_child(args, "separate", seed, 1) for seed in range(max(args.ks))]
    rows = []
    for k in args.ks:
        row = measure(args, k, separate)
        rows.append(row)
        for name, r in row.items():
            if name != "k":
                print(
                    f"K={k} {name:18s} {r['tokens_per_second']:>9,} tok/s "
                    f"({r['epochs_per_second']:.2f} seed-epochs/s, train {r['train_seconds']:.1f} s, "
                    f"x{r['speedup_train']:.2f}); processes {r['process_seconds']:.1f} s "
                    f"(x{r['speedup_end_to_end']:.2f})",
                    flush=True,
                )
    settings = {
        k: v for k, v in vars(args).items() if k not in ("mode", "seed", "seeds", "threads")
    }
    settings["json"] = str(args.json)
    result = {"torch": torch.__version__, "cpus": os.cpu_count(), "settings": settings}
    args.json.write_text(json.dumps({**result, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
