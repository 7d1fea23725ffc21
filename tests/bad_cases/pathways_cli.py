"""Bad-input cases: iteration-heads pathways and its report (see base.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bad_cases.base import Case, api, cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOKEN_HF = FIXTURES / "gpt2_polynomial"  # no tokenizer
TEXT_HF = FIXTURES / "gpt2_text_polynomial"  # a polynomial tokenizer: no English names
AREA = "pathways"
GEN = "pathways ontology --ontology"
COST = "pathways cost"

FILES: dict[str, str] = {
    "pw_tokens.jsonl": json.dumps({"tokens": [0, 5, 6], "step": {"token": 2}}),
    "pw_text.jsonl": json.dumps({"text": "3 5 = 3 5", "step": {"char": 8}}),
    "pw_wide.jsonl": json.dumps({"tokens": [0, 5, 999], "step": {"token": 2}}),
    "pw_broken.jsonl": '{"tokens": [0, 5, 6], "step":',
    "pw_prompts.txt": json.dumps({"tokens": [0, 5, 6], "step": {"token": 2}}),
}


def prepare(work: Path, namespace: dict[str, Any]) -> None:
    """The JSON Lines files the cases read, an empty folder and a folder named like a file;
    the cost planners for the Python cases."""
    from iteration_heads.auditing import cost as audit_cost
    from iteration_heads.pathways.cost import plan_pathways

    namespace.update(plan_pathways=plan_pathways, plan_audit=audit_cost.plan_audit,
                     time_forward=audit_cost.time_forward,
                     forward_bytes=audit_cost.forward_bytes)  # fmt: skip
    for name, text in FILES.items():
        (work / name).write_text(text + "\n")
    (work / "pw_empty_model").mkdir()
    (work / "pw_taken.html").mkdir()


CASES: list[Case] = [
    cli(AREA, "neither --prompts nor --ontology", "pathways ontology"),
    cli(AREA, "--shards 0", f"{GEN} --analyses patching --shards 0"),
    cli(AREA, "--shards without head patching", f"{GEN} --analyses writers --shards 2"),
    cli(AREA, "--shards with attribution", f"{GEN} --method attribution --shards 2"),
    cli(AREA, "--jobs without --shards", f"{GEN} --analyses patching --jobs 2"),
    cli(AREA, "--shards with --executor options", f"{GEN} --shards 2 --partition gpu"),
    cli(AREA, "both --prompts and --ontology", f"{GEN} --prompts pw_tokens.jsonl"),
    cli(AREA, "prompts file that does not exist", "pathways ontology --prompts missing.jsonl"),
    cli(AREA, "prompts file that is not .jsonl", "pathways ontology --prompts pw_prompts.txt"),
    cli(AREA, "invalid JSON in the prompts file", "pathways ontology --prompts pw_broken.jsonl"),
    cli(AREA, "token outside the model's vocabulary", "pathways ontology --prompts pw_wide.jsonl"),
    cli(AREA, "text records with a token-id model", "pathways polynomial --prompts pw_text.jsonl"),
    cli(
        AREA,
        "text records with a tokenizer-less HF folder",
        f"pathways {TOKEN_HF} --prompts pw_text.jsonl",
    ),
    cli(AREA, "--shots 9", f"pathways {TEXT_HF} --ontology --shots 9"),
    cli(AREA, "negative --shots", f"pathways {TEXT_HF} --ontology --shots -1"),
    cli(AREA, "--shots on the zero-shot ontology model", f"{GEN} --shots 2"),
    cli(AREA, "--hops 0", f"{GEN} --hops 0"),
    cli(AREA, "--hops 6", f"{GEN} --hops 6"),
    cli(AREA, "--hops the model was not trained on", f"{GEN} --hops 5"),
    cli(AREA, "--hops with --prompts", "pathways ontology --prompts pw_tokens.jsonl --hops 2"),
    cli(AREA, "no problems", f"{GEN} --n 0"),
    cli(AREA, "negative seed", f"{GEN} --seed -1"),
    cli(AREA, "zero random head sets", f"{GEN} --n-random 0"),
    cli(AREA, "zero traced prompts", f"{GEN} --n-traced 0"),
    cli(AREA, "fractional problem count", f"{GEN} --n 2.5"),
    cli(AREA, "unknown analysis", f"{GEN} --analyses writers,circuits"),
    cli(AREA, "empty analysis list", f"{GEN} --analyses ,"),
    cli(AREA, "unknown --solved", f"{GEN} --solved word"),
    cli(AREA, "unknown --prior", f"{GEN} --prior world"),
    cli(AREA, "unknown --centre", f"{GEN} --centre median"),
    cli(AREA, "report in a missing folder", f"{GEN} --report no/such/folder/p.html"),
    cli(AREA, "report path is a folder", f"{GEN} --report pw_taken.html"),
    cli(AREA, "JSON output in a missing folder", f"{GEN} --out-json no/such/p.json"),
    cli(AREA, "--ontology on a model of another task", "pathways polynomial --ontology"),
    cli(AREA, "--ontology on an HF folder without tokenizer", f"pathways {TOKEN_HF} --ontology"),
    cli(AREA, "--ontology through a tokenizer without the names", f"pathways {TEXT_HF} --ontology"),
    cli(AREA, "model folder that does not exist", "pathways no/such/model --ontology"),
    cli(AREA, "folder without config.json", "pathways pw_empty_model --ontology"),
    # --dry-run (the plan) and the memory check: refused before any model work
    cli(AREA, "--dry-run with --report", f"{GEN} --dry-run --report pw_plan.html"),
    cli(AREA, "--dry-run with --out-json", f"{GEN} --dry-run --out-json pw_plan.json"),
    cli(AREA, "--dry-run with an unknown analysis", f"{GEN} --dry-run --analyses patch"),
    cli(AREA, "--dry-run with --n 0", f"{GEN} --dry-run --n 0"),
    cli(AREA, "--dry-run with --n-random 0", f"{GEN} --dry-run --n-random 0"),
    cli(AREA, "--dry-run with --n-traced 0", f"{GEN} --dry-run --n-traced 0"),
    cli(AREA, "--dry-run with --hops 9", f"{GEN} --dry-run --hops 9"),
    cli(AREA, "--dry-run with --shots on the ontology model", f"{GEN} --dry-run --shots 2"),
    cli(AREA, "--dry-run without prompts", "pathways ontology --dry-run"),
    cli(
        AREA,
        "--dry-run on a missing prompts file",
        "pathways ontology --dry-run --prompts no.jsonl",
    ),
    cli(
        AREA,
        "--dry-run on a token outside the vocabulary",
        "pathways ontology --dry-run --prompts pw_wide.jsonl",
    ),
    cli(AREA, "--dry-run on a missing model", "pathways no/such/model --ontology --dry-run"),
    cli(AREA, "--method that does not exist", f"{GEN} --method fast"),
    cli(AREA, "--method with --dry-run as a number", f"{GEN} --dry-run --method 1"),
    cli(
        "audit dry run",
        "--dry-run with --report",
        "audit polynomial_paper --dry-run --report pw_a.html",
    ),
    cli(
        "audit dry run",
        "--dry-run with --n-probes 3",
        "audit polynomial_paper --dry-run --n-probes 3",
    ),
    cli(
        "audit dry run",
        "--dry-run with --max-len 2",
        "audit polynomial_paper --dry-run --max-len 2",
    ),
    cli("audit dry run", "--dry-run on a missing model", "audit no/such/model --dry-run"),
    api(COST, "unknown analysis", "plan_pathways(model, steps, ['patch'])"),
    api(COST, "analyses as one string", "plan_pathways(model, steps, 'writers')"),
    api(COST, "token ids instead of prompts", "plan_pathways(model, tokens, ['writers'])"),
    api(COST, "no random head set", "plan_pathways(model, steps, ['checks'], n_random=0)"),
    api(COST, "a float of traced prompts", "plan_pathways(model, steps, ['flow'], n_traced=1.5)"),
    api(COST, "negative seed", "plan_pathways(model, steps, ['pruning'], seed=-1)"),
    api(COST, "unknown patching method", "plan_pathways(model, steps, ['writers'], method='fast')"),
    api(COST, "unknown prior", "plan_pathways(model, steps, ['lens'], prior='bigram')"),
    api(COST, "unknown solved filter", "plan_pathways(model, steps, ['lens'], solved='all')"),
    api(COST, "audit plan of token ids", "plan_audit(model, tokens)"),
    api(COST, "audit plan with no probe per pass", "plan_audit(model, probes, batch_size=0)"),
    api(COST, "audit plan with route as a string", "plan_audit(model, probes, route='yes')"),
    api(COST, "audit plan with no route probe", "plan_audit(model, probes, route_probes=0)"),
    api(COST, "timing at width 0", "time_forward(model, 0)"),
    api(COST, "timing on no row", "time_forward(model, 4, rows=0)"),
    api(COST, "memory of negative rows", "forward_bytes(model, -1, 4)"),
    api(COST, "memory with logits 'some'", "forward_bytes(model, 1, 4, logits='some')"),
]
