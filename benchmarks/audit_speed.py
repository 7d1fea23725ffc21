"""How long does auditing a GPT-2-small-shaped model take? (issue 13: target under 30 s on 2
CPU cores, detect plus verify, 256 probes)

A GPT-2 of GPT-2 small's shape (12 layers x 12 heads, d_model 768, vocabulary 50257, random
weights built offline from ``GPT2Config()``) on 256 polynomial probes in its own token ids
(``BOS x_1..x_L EoI s_1..s_L EoS``, lengths 1..``--max-len``):

* ``forward``: one scored forward pass over the probes (:func:`run_scored`, every position);
* ``detect``: every head's scores (one pass; a random model has no iteration heads, so no
  state-swapping pass);
* ``verify``: the causal check, run on two heads of layer 5 as if detected, against
  ``--controls`` sets of as many other heads (:func:`ablation_check`; its defaults: each control
  set on 32 probes), and with every control set on all 256 probes;
* the reference in the same run: the first four of those sets through :func:`ablation_effect`
  one at a time (a clean pass and an ablated pass per set, every position, each from the
  embeddings) against the same four through :func:`ablation_sets` on all probes (one clean pass;
  sets pooled, each from its first ablated layer, no padding, only scored positions unembedded),
  with the largest difference of their per-sequence losses;
* ``audit``: :func:`iteration_heads.audit` end to end (detection finds nothing to ablate).

    .venv/bin/python benchmarks/audit_speed.py --threads 2 --json benchmarks/audit_speed_results.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls (no warm-up: every call runs many seconds)."""
    times, result = [], None
    for _ in range(repeats):
        tick = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - tick)
    return sorted(times)[len(times) // 2], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--probes", type=int, default=256)
    parser.add_argument("--max-len", type=int, default=8)
    parser.add_argument("--controls", type=int, default=20)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import GPT2Config, GPT2LMHeadModel

    import iteration_heads as ih
    from iteration_heads.interventions.batch import as_batch
    from iteration_heads.interventions.many_ablations import ablation_sets
    from iteration_heads.interventions.scores import run_scored
    from iteration_heads.interventions.verification import ablation_check

    torch.manual_seed(0)
    model = ih.wrap_hf_model(GPT2LMHeadModel(GPT2Config()))
    probes = ih.Probes.from_task(
        "polynomial",
        symbol_to_token={v: 100 + v for v in range(11)},
        eoi_token=28,
        bos_token=50256,
        eos_token=13,
        max_len=args.max_len,
        n=args.probes,
    )
    heads = [(5, 0), (5, 1)]
    batch = as_batch(model, probes)
    forward_s, _ = timed(lambda: run_scored(model, batch), args.repeats)
    detect_s, _ = timed(lambda: ih.detect(model, probes), args.repeats)
    verify_s, check = timed(
        lambda: ablation_check(model, heads, probes, max_controls=args.controls), args.repeats
    )
    verify_all_s, _ = timed(
        lambda: ablation_check(
            model, heads, probes, max_controls=args.controls, control_probes=None
        ),
        args.repeats,
    )
    sets = [row.split("+") for row in check.table["heads"][:4]]
    names = [[(int(h[1 : h.index("H")]), int(h[h.index("H") + 1 :])) for h in s] for s in sets]
    reference_s, effects = timed(
        lambda: [ih.ablation_effect(model, s, batch) for s in names], args.repeats
    )
    pooled_s, (_, pooled) = timed(lambda: ablation_sets(model, batch, names), args.repeats)
    gap = max(
        float((scores.loss - effect.intervened.loss).abs().max())
        for scores, effect in zip(pooled, effects, strict=True)
    )
    audit_s, audited = timed(lambda: ih.audit(model, probes), args.repeats)
    figures = {
        "threads": args.threads,
        "probes": len(probes),
        "positions": probes.width,
        "forward_s": round(forward_s, 2),
        "detect_s": round(detect_s, 2),
        "verify_sets": len(check.table),
        "control_probes": int(check.table["n_probes"].iloc[-1]),
        "verify_s": round(verify_s, 2),
        "detect_plus_verify_s": round(detect_s + verify_s, 2),
        "verify_every_probe_s": round(verify_all_s, 2),
        "four_sets_one_at_a_time_s": round(reference_s, 2),
        "four_sets_pooled_s": round(pooled_s, 2),
        "speedup_over_reference": round(reference_s / pooled_s, 2),
        "largest_loss_difference": gap,
        "audit_s": round(audit_s, 2),
        "verdict": audited.verdict[:80],
        "target_s": 30.0,
    }
    print(json.dumps(figures))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1)


if __name__ == "__main__":
    main()
