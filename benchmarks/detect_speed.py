"""How long does ``iteration_heads.detect`` take? (issue 3: targets 1 s and 10 s on 2 CPU cores)

1. The library's 2-layer model (d_model 64, Lmax 8; the shipped ``zoo`` model ``polynomial``
   when present) on 1024 test probes.
2. A GPT-2-shaped random model (12 layers, 12 heads, d_model 768, vocabulary 50257, built
   offline from ``GPT2Config()`` and wrapped by TransformerLens) on 64 probes of 40 tokens
   (``BOS <task> x_1..x_18 EoI s_1..s_18 EoS``).

Each figure is the median of ``--repeats`` timed calls after one warm-up call; building the
models is not timed. Detection runs two forward passes (clean, states swapped).

    .venv/bin/python benchmarks/detect_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

FIXTURE = Path(__file__).parent.parent / "iteration_heads" / "zoo" / "polynomial"


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import GPT2Config, GPT2LMHeadModel

    from iteration_heads import ModelConfig, Probes, build_model, detect
    from iteration_heads.model import load, wrap_hf_model

    small = load(FIXTURE) if FIXTURE.is_dir() else build_model(ModelConfig(d_model=64, max_len=8))
    probes = Probes.from_model(small, task=None if FIXTURE.is_dir() else "polynomial", n=1024)
    small_seconds = timed(lambda: detect(small, probes), args.repeats)

    torch.manual_seed(0)
    big = wrap_hf_model(GPT2LMHeadModel(GPT2Config()))
    big_probes = Probes.from_task(
        "polynomial",
        symbol_to_token={v: 100 + v for v in range(11)},
        task_token=200,
        eoi_token=201,
        eos_token=202,
        bos_token=50256,
        max_len=18,
        n=64,
    )
    assert big_probes.width == 40
    big_seconds = timed(lambda: detect(big, big_probes), args.repeats)

    print(
        json.dumps(
            {
                "threads": args.threads,
                "two_layer_1024_probes_s": round(small_seconds, 3),
                "gpt2_12x12_64_probes_of_40_s": round(big_seconds, 3),
                "targets_s": [1.0, 10.0],
            }
        )
    )


if __name__ == "__main__":
    main()
