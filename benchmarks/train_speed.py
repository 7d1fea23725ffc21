"""Training speed of the library against a plain-PyTorch reference, measured in one run.

For (d_model 64, Lmax 8) and (d_model 128, Lmax 16), polynomial iteration with CoT, Adam 3e-4,
batch 256: tokens per second of the library's `train` (its own timer, evaluation excluded) and
of a minimal plain-PyTorch model of the same shape (benchmarks/reference_model.py) on the same
batches; their ratio; achieved GFLOP/s; a matmul peak measured here; and the cost of evaluation
at the default frequency (every 10 epochs) as a fraction of training time.

    python benchmarks/train_speed.py                  # throughput + evaluation cost (~3 min)
    python benchmarks/train_speed.py --time-to-head   # also: epochs and time to an iteration head

Use --threads to pin torch's thread count (default: all cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from reference_model import ReferenceModel

from iteration_heads import DataConfig, ModelConfig, build_model, make_dataset
from iteration_heads.tasks import IGNORE
from iteration_heads.training import TrainConfig, evaluate, history_summary, train

SIZES = [(64, 8), (128, 16)]


def matmul_peak(n: int = 1024, reps: int = 20) -> float:
    """GFLOP/s of an n×n fp32 matmul on this machine, best of a few runs."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(3):
        tick = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, (time.perf_counter() - tick) / reps)
    return 2 * n**3 / best / 1e9


def flops_per_epoch(data, d_model: int, n_layers: int, d_vocab: int, batch_size: int) -> float:
    """Training FLOPs of one epoch (3 × forward: matmuls + attention scores and mixing)."""
    total = 0.0
    for tokens, _ in data.train.batches(batch_size, generator=torch.Generator().manual_seed(0)):
        b, t = tokens.shape
        matmul_params = n_layers * 12 * d_model * d_model + d_model * d_vocab
        attention = n_layers * 2 * 2 * t * d_model  # QK^T and pattern @ V, per token (full square)
        total += 6 * b * t * matmul_params + 3 * b * t * attention
    return total


def tokens_per_epoch(data, batch_size: int) -> int:
    gen = torch.Generator().manual_seed(0)
    return sum(t.numel() for t, _ in data.train.batches(batch_size, generator=gen))


def reference_epochs(
    data, d_model: int, max_len: int, epochs: int, seed: int = 0
) -> tuple[float, float]:
    """Wall and CPU seconds for `epochs` epochs of the plain-PyTorch reference, same batches."""
    torch.manual_seed(seed)
    model = ReferenceModel(data.layout.d_vocab, 2 * max_len + 3, d_model).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    tick, cpu_tick = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(epoch)
        for tokens, targets in data.train.batches(256, generator=gen):
            logits = model(tokens)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - tick, time.process_time() - cpu_tick


def library_epochs(data, d_model: int, max_len: int, epochs: int) -> tuple[float, float]:
    """Wall and CPU seconds of training (evaluation excluded) for `epochs` epochs of `train`."""
    model = build_model(ModelConfig(d_model=d_model, max_len=max_len))
    config = TrainConfig(epochs=epochs, eval_every=10**6)
    history = train(model, data, config, progress=False)
    return history[-1]["train_seconds"], history[-1]["train_cpu_seconds"]


def measure_size(d_model: int, max_len: int, epochs: int, peak: float) -> dict:
    data = make_dataset(DataConfig(task="polynomial", max_len=max_len))
    n_tokens = tokens_per_epoch(data, 256)
    flops = flops_per_epoch(data, d_model, 2, data.layout.d_vocab, 256)
    reference_epochs(data, d_model, max_len, 1)  # warm-up
    lib, ref = [], []
    for _ in range(2):  # alternate, keep the best of each
        lib.append(library_epochs(data, d_model, max_len, epochs))
        ref.append(reference_epochs(data, d_model, max_len, epochs))
    lib_s, ref_s = min(w for w, _ in lib) / epochs, min(w for w, _ in ref) / epochs
    lib_cpu, ref_cpu = min(c for _, c in lib) / epochs, min(c for _, c in ref) / epochs
    model = build_model(ModelConfig(d_model=d_model, max_len=max_len))
    tick = time.perf_counter()
    evaluate(model, data.test)
    evaluate(model, data.train)
    eval_s = time.perf_counter() - tick
    return {
        "d_model": d_model,
        "max_len": max_len,
        "epoch_seconds_library": round(lib_s, 3),
        "epoch_seconds_reference": round(ref_s, 3),
        "tokens_per_second_library": round(n_tokens / lib_s),
        "tokens_per_second_reference": round(n_tokens / ref_s),
        "throughput_ratio": round(ref_s / lib_s, 3),
        "cpu_time_ratio": round(ref_cpu / lib_cpu, 3),
        "gflops_library": round(flops / lib_s / 1e9, 1),
        "matmul_peak_gflops": round(peak, 1),
        "evaluation_seconds": round(eval_s, 3),
        "evaluation_fraction_at_eval_every_10": round(eval_s / (10 * lib_s), 3),
    }


def time_to_head(d_model: int, max_len: int, epochs: int, seed: int = 0) -> dict:
    data = make_dataset(DataConfig(task="polynomial", max_len=max_len, seed=seed))
    model = build_model(ModelConfig(d_model=d_model, max_len=max_len, seed=seed))
    tick = time.perf_counter()
    config = TrainConfig(epochs=epochs, seed=seed, stop_at_target=True)
    history = train(model, data, config, progress=False)
    summary = history_summary(history)
    return {
        "d_model": d_model,
        "max_len": max_len,
        "seed": seed,
        "first_epoch_accuracy_0.99": summary["first_epoch_accuracy"],
        "first_epoch_iteration_head_0.9": summary["first_epoch_iteration_head"],
        "first_epoch_both": summary["first_epoch_both"],
        "wall_seconds": round(time.perf_counter() - tick, 1),
        "final": summary["test"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs per throughput measurement")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--time-to-head", action="store_true")
    parser.add_argument("--max-epochs", type=int, default=300, help="budget for --time-to-head")
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=[f"{d}x{n}" for d, n in SIZES],
        help="d_model x Lmax, e.g. 64x8",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --time-to-head run")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, matmul peak {peak:.1f} GFLOP/s"
    )
    results: dict = {"threads": torch.get_num_threads(), "throughput": [], "time_to_head": []}
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    for d_model, max_len in [] if args.skip_throughput else sizes:
        r = measure_size(d_model, max_len, args.epochs, peak)
        results["throughput"].append(r)
        print(
            f"d_model {d_model:3d}, Lmax {max_len:2d}: library {r['tokens_per_second_library']:>8,} tok/s "
            f"({r['epoch_seconds_library']:.2f} s/epoch), reference {r['tokens_per_second_reference']:>8,} tok/s "
            f"({r['epoch_seconds_reference']:.2f} s/epoch), ratio {r['throughput_ratio']:.2f} "
            f"(CPU time {r['cpu_time_ratio']:.2f}), "
            f"{r['gflops_library']} GFLOP/s, evaluation {r['evaluation_seconds']:.2f} s "
            f"= {100 * r['evaluation_fraction_at_eval_every_10']:.1f} % of 10 epochs",
            flush=True,
        )
    if args.time_to_head:
        for d_model, max_len in sizes:
            r = time_to_head(d_model, max_len, args.max_epochs, args.seed)
            results["time_to_head"].append(r)
            print(
                f"d_model {d_model:3d}, Lmax {max_len:2d}: accuracy >= 0.99 at epoch {r['first_epoch_accuracy_0.99']}, "
                f"iteration peakiness >= 0.9 at epoch {r['first_epoch_iteration_head_0.9']}, "
                f"both at {r['first_epoch_both']}, {r['wall_seconds']:.0f} s",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
