"""How long does a patching sweep over every head and position take? (issue 4, point 5)

The trained 2-layer, 1-head polynomial model (the shipped ``zoo`` model ``polynomial``: d_model 64,
Lmax 8, width 19, so 2 x 19 x 1 = 38 cells) on ``--n`` test sequences (default 32 and 256), clean against one
changed input ``x_k``, metric: logit difference of the correct token on the CoT positions.

* ``batched``: :func:`iteration_heads.activation_patching` ((cell, sequence) pairs stacked
  along the batch, ``--batch-size`` rows per forward pass, no-op pairs skipped);
* ``transformer_lens``: the same sweep through
  ``transformer_lens.patching.get_act_patch_attn_head_out_by_pos`` (one pass per cell).

Each figure is the median of ``--repeats`` timed calls after one warm-up call (the clean and
corrupted reference runs are included in both).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/patching_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

FIXTURE = Path(__file__).parent.parent / "iteration_heads" / "zoo" / "polynomial"


def timed(fn, repeats: int) -> tuple[float, Any]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - tick)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, nargs="+", default=[32, 256], help="clean sequences")
    parser.add_argument("--batch-size", type=int, default=2048, help="rows per forward pass")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformer_lens.patching shows a progress bar

    from iteration_heads import activation_patching, corrupt
    from iteration_heads.interventions import as_batch
    from iteration_heads.model import load
    from iteration_heads.tasks import Split

    model = load(FIXTURE)
    rows = []
    for n in args.n:
        batch = as_batch(model, n=n)
        clean = Split(batch.tokens, batch.targets, batch.lengths, True)  # type: ignore[arg-type]
        bad = corrupt(clean, "input", task="polynomial", seed=0)
        fast_s, fast = timed(
            lambda c=clean, b=bad: activation_patching(model, c, b, batch_size=args.batch_size),
            args.repeats,
        )
        slow_s, slow = timed(
            lambda c=clean, b=bad: activation_patching(model, c, b, method="transformer_lens"),
            args.repeats,
        )
        rows.append(
            {
                "sequences": n,
                "cells": int(fast.values.numel()),
                "batched_forward_passes": fast.n_forward,
                "batched_s": round(fast_s, 3),
                "transformer_lens_forward_passes": slow.n_forward,
                "transformer_lens_s": round(slow_s, 3),
                "speedup": round(slow_s / fast_s, 2),
                "max_abs_difference": float((fast.raw - slow.raw).abs().max()),
            }
        )
    print(json.dumps({"threads": args.threads, "batch_size": args.batch_size, "runs": rows}))


if __name__ == "__main__":
    main()
