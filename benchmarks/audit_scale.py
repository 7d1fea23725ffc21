"""``iteration-heads audit`` at language-model scale: the random-weight GPT-2-small and 1B Llama
shapes of ``pathways_scale.py`` (the same folders, built once under ``--cache``), audited on
polynomial probes written in token ids of their vocabulary (symbols 100..110, EoI 5, BOS 1,
EoS 2). The ``--dry-run`` plan (its printed total) beside the measured seconds of the audit
itself, through the command line in this process, and the peak resident memory.

    OMP_NUM_THREADS=2 python benchmarks/audit_scale.py --shape llama-1b

A random model does not solve its probes: the audit says so (exit status 3) after running
every stage (detection, the causal check of whatever it flags, the position route), so the
cost is the full audit's. Writes benchmarks/audit_scale_<shape>.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import time
from pathlib import Path

import torch
from pathways_scale import SHAPES, build_folder, peak_bytes, peak_reset

from iteration_heads.cli import main as cli

HERE = Path(__file__).parent
TOKENS = ["--symbol-tokens", ",".join(str(100 + i) for i in range(11)), "--eoi-token", "5",
          "--bos-token", "1", "--eos-token", "2"]  # fmt: skip


def run(argv: list[str]) -> tuple[int, str, float]:
    """Exit status, standard output and seconds of one command in this process."""
    out = io.StringIO()
    tick = time.perf_counter()
    with contextlib.redirect_stdout(out):
        status = cli(argv)
    return status, out.getvalue(), time.perf_counter() - tick


def stage_seconds(plan: str) -> dict[str, float]:
    """Estimated seconds of each stage of a printed plan."""
    found = {}
    for name, value, unit in re.findall(r"^  (\w+) .*? ([\d.]+) (s|min|h) ", plan, re.MULTILINE):
        found[name] = float(value) * {"s": 1, "min": 60, "h": 3600}[unit]
    return found


def stages_run(verdict: dict) -> list[str]:
    """The stages the audit ran: the route and the ablation only where heads were found."""
    ran = ["accuracy", "detection"]
    if verdict.get("position_route"):
        ran.append("route")
    if (verdict.get("used") or {}).get("ablation"):
        ran.append("ablation")
    return ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-1b")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probes", type=int, default=512)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/iteration_heads_scale"))
    options = parser.parse_args()
    folder = build_folder(options.shape, options.cache)
    base = ["audit", str(folder), *TOKENS, "--n-probes", str(options.probes),
            "--threads", str(options.threads)]  # fmt: skip
    status, plan, planning = run([*base, "--dry-run"])
    print(plan, flush=True)
    planned = re.search(r"total: about ([\d.]+) (s|min)", plan)
    estimate = float(planned[1]) * (60 if planned[2] == "min" else 1) if planned else None
    peak_reset()
    status, verdict, seconds = run([*base, "--json"])
    judged = json.loads(verdict) if verdict.strip().startswith("{") else {}
    ran = stages_run(judged)
    run_estimate = sum(stage_seconds(plan).get(name, 0.0) for name in ran)
    record = {
        "command": "python " + " ".join(sys.argv),
        "shape": options.shape,
        "threads": options.threads,
        "probes": options.probes,
        "dry-run s": round(planning, 1),
        "estimated s": estimate,
        "measured s": round(seconds, 1),
        "ratio": round(seconds / estimate, 2) if estimate else None,
        "stages run": "+".join(ran),
        "estimated s of the stages run": round(run_estimate, 1),
        "ratio to the stages run": round(seconds / run_estimate, 2) if run_estimate else None,
        "peak RSS GB": round(peak_bytes() / 1e9, 2),
        "exit status": status,
        "torch": torch.__version__,
        "plan": plan.strip().splitlines(),
        "verdict": judged or verdict,
    }
    out = HERE / f"audit_scale_{options.shape}"
    out.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    keys = ["shape", "probes", "estimated s", "stages run", "estimated s of the stages run",
            "measured s", "ratio to the stages run", "peak RSS GB", "exit status"]  # fmt: skip
    lines = [f"`{record['command']}`", "", "```", plan.strip(), "```", "",
             "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys),
             "| " + " | ".join(str(record[k]) for k in keys) + " |"]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[5:]))


if __name__ == "__main__":
    main()
