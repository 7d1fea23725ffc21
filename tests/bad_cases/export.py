"""Bad-input cases: export (see base.py) — models GPT-2 cannot express exactly, inputs that are
not library models, and output folders that exist, are files or symlinks (``prepare`` writes
them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bad_cases.base import Case, api

OUT = "'exported'"


def prepare(work: Path, namespace: dict[str, Any]) -> None:
    """Models that do not map, library folders, and occupied output folders."""
    import torch

    from iteration_heads.model import ModelConfig, build_model, save
    from iteration_heads.model.export import export_hf

    def tiny(**changes: Any) -> Any:
        return build_model(ModelConfig(d_model=16, max_len=2, **changes))

    biased, nan, inf = tiny(), tiny(), tiny()
    with torch.no_grad():
        biased.unembed.bias[0] = 0.25
        nan.blocks[1].mlp.out.weight[0, 0] = float("nan")
        inf.embed.weight[2, 3] = float("inf")
    namespace |= {
        "export_hf": export_hf,
        "rms": tiny(normalization="RMS"),
        "no_norm": tiny(normalization=None),
        "wide_heads": tiny(d_head_=4, n_heads=2),
        "biased": biased,
        "nan": nan,
        "inf": inf,
    }
    save(tiny(), work / "lib")
    save(tiny(residual="renormalised", biases=False), work / "lib_renormalised")
    save(tiny(normalization="RMS"), work / "lib_rms")
    save(tiny(), work / "lib_corrupt")
    (work / "lib_corrupt" / "model.safetensors").write_bytes(b"not safetensors")
    (work / "full").mkdir()
    (work / "full" / "notes.txt").write_text("mine")
    (work / "a_file.txt").write_text("a file")
    (work / "empty_target").mkdir()
    os.symlink(work / "empty_target", work / "link")
    os.symlink(work / "nowhere", work / "broken_link")


CASES: list[Case] = [
    api("export", "renormalised block", f"export_hf(renormalised, {OUT})"),
    api("export", "RMS normalisation", f"export_hf(rms, {OUT})"),
    api("export", "no normalisation", f"export_hf(no_norm, {OUT})"),
    api("export", "head width not d_model / n_heads", f"export_hf(wide_heads, {OUT})"),
    api("export", "non-zero unembedding bias", f"export_hf(biased, {OUT})"),
    api("export", "NaN weight", f"export_hf(nan, {OUT})"),
    api("export", "infinite weight", f"export_hf(inf, {OUT})"),
    api("export", "model is a number", f"export_hf(42, {OUT})"),
    api("export", "model is None", f"export_hf(None, {OUT})"),
    api("export", "model is a list of names", f"export_hf(['polynomial'], {OUT})"),
    api("export", "model is bytes", f"export_hf(b'lib', {OUT})"),
    api("export", "module not built here", f"export_hf(torch.nn.Linear(2, 2), {OUT})"),
    api("export", "missing model folder", f"export_hf('no/such/model', {OUT})"),
    api("export", "misspelt shipped name", f"export_hf('polynomal', {OUT})"),
    api("export", "model is a file", f"export_hf('a_file.txt', {OUT})"),
    api("export", "HuggingFace folder, not a library model", f"export_hf('hf_good', {OUT})"),
    api("export", "saved renormalised model", f"export_hf('lib_renormalised', {OUT})"),
    api("export", "saved RMS model", f"export_hf('lib_rms', {OUT})"),
    api("export", "saved model with corrupt weights", f"export_hf('lib_corrupt', {OUT})"),
    api("export", "output folder not empty", "export_hf(model, 'full')"),
    api("export", "output folder is the model's own", "export_hf('lib', 'lib')"),
    api("export", "output is a file", "export_hf(model, 'a_file.txt')"),
    api("export", "output under a file", "export_hf(model, 'a_file.txt/hf')"),
    api("export", "output is a symlink", "export_hf(model, 'link')"),
    api("export", "output is a broken symlink", "export_hf(model, 'broken_link')"),
    api("export", "output is an empty string", "export_hf(model, '')"),
    api("export", "output is None", "export_hf(model, None)"),
    api("export", "output is a number", "export_hf(model, 3)"),
    api("export", "output is a shipped model", "export_hf('polynomial', zoo.path('polynomial'))"),
]
