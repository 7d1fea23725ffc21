"""Bad-input cases: precision (see base.py) — casting a model's weights
(:func:`iteration_heads.model.precision.cast_model`) and ``--dtype`` on ``pathways`` and
``audit``. Every refusal comes before a weight is cast or a model is loaded. (float16 on this
CPU is refused too, but only where a float16 matmul is slow: it is not a case here, whose
outcome must not depend on the machine; tests/model/test_precision.py covers it.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bad_cases.base import Case, api, cli

RUN_FOLDER = Path(__file__).resolve().parents[1] / "fixtures" / "gpt2_text_polynomial"
PATHWAYS = "pathways ontology --ontology --n 2 --analyses writers"


def prepare(work: Path, namespace: dict[str, Any]) -> None:
    from iteration_heads.auditing import open_subject
    from iteration_heads.cli.pathway_runs import open_model
    from iteration_heads.model.precision import cast_model, dtype_named, model_dtype

    int8 = torch.nn.Linear(2, 2)
    int8.weight = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.int8), requires_grad=False)
    namespace.update(
        cast_model=cast_model,
        dtype_named=dtype_named,
        model_dtype=model_dtype,
        open_model=open_model,
        open_subject=open_subject,
        Path=Path,
        int8_model=int8,
        meta_model=torch.nn.Linear(2, 2, device="meta"),
    )


CASES: list[Case] = [
    api("precision", "unknown dtype name", "cast_model(model, 'int8')"),
    api("precision", "abbreviated dtype name", "cast_model(model, 'bf16')"),
    api("precision", "capitalised dtype name", "cast_model(model, 'BFloat16')"),
    api("precision", "dtype name with a space", "cast_model(model, ' bfloat16')"),
    api("precision", "empty dtype name", "cast_model(model, '')"),
    api("precision", "dtype as None", "cast_model(model, None)"),
    api("precision", "dtype as a number of bits", "cast_model(model, 16)"),
    api("precision", "dtype in a list", "cast_model(model, ['bfloat16'])"),
    api("precision", "float64 torch dtype", "cast_model(model, torch.float64)"),
    api("precision", "complex torch dtype", "cast_model(model, torch.complex64)"),
    api("precision", "integer torch dtype", "dtype_named(torch.int8)"),
    api("precision", "a model's name instead of a model", "cast_model('polynomial', 'bfloat16')"),
    api("precision", "a module without weights", "cast_model(torch.nn.ReLU(), 'bfloat16')"),
    api("precision", "integer (quantised) weights", "cast_model(int8_model, 'bfloat16')"),
    api("precision", "weights on an unchecked device", "cast_model(meta_model, 'bfloat16')"),
    api("precision", "dtype of no model", "model_dtype(None)"),
    api("precision", "open_model with an unknown dtype", "open_model(Path('ontology'), 'half')"),
    api(
        "precision",
        "open_subject with an unknown dtype",
        "open_subject('polynomial', n_probes=64, dtype='fp16')",
    ),
    cli("precision", "pathways: unknown dtype", f"{PATHWAYS} --dtype float64"),
    cli("precision", "pathways: abbreviated dtype", f"{PATHWAYS} --dtype bf16"),
    cli("precision", "pathways: capitalised dtype", f"{PATHWAYS} --dtype BFLOAT16"),
    cli("precision", "pathways: two dtypes", f"{PATHWAYS} --dtype float32,bfloat16"),
    cli("precision", "pathways: --dtype without a value", f"{PATHWAYS} --dtype"),
    cli("precision", "audit: unknown dtype", "audit polynomial --dtype int8"),
    cli("precision", "audit: empty dtype", "audit polynomial --dtype ''"),
    cli(
        "precision",
        "audit: bfloat16 on a run folder",
        f"audit {RUN_FOLDER / 'checkpoints'} --template '<s> {{inputs}} {{eoi}} {{states}} </s>' "
        "--dtype bfloat16",
    ),
    cli("precision", "audit: --dtype without a value", "audit polynomial --dtype"),
]
