"""Bad-input cases: ``audit --dry-run`` on run folders and :func:`plan_checkpoints` — run
folders with no checkpoint or a broken one (written by ``prepare`` from a tiny library model),
and options that do not apply to a dry run across checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bad_cases.base import Case, api, cli

AREA = "audit dry run on run folders"
GOOD = "ckpt_good"
DRY = f"audit {GOOD} --n-probes 32 --dry-run"

CASES: list[Case] = [
    cli(AREA, "subfolders that are no checkpoint", "audit ckpt_unnamed --dry-run"),
    cli(AREA, "a run folder that does not exist", "audit ckpt_missing --dry-run"),
    cli(AREA, "a checkpoint without weights", "audit ckpt_no_weights --dry-run"),
    cli(AREA, "a later checkpoint without weights", "audit ckpt_later_broken --dry-run"),
    cli(AREA, "a checkpoint whose config is a list", "audit ckpt_config_list --dry-run"),
    cli(AREA, "a checkpoint whose config is corrupt", "audit ckpt_config_corrupt --dry-run"),
    cli(AREA, "a checkpoint with truncated weights", "audit ckpt_truncated --dry-run"),
    cli(AREA, "a trainer state with a step as text", "audit ckpt_bad_state --dry-run"),
    cli(AREA, "a trainer state that is a list", "audit ckpt_state_list --dry-run"),
    cli(AREA, "--figure with --dry-run", f"{DRY} --figure curves.html"),
    cli(AREA, "--report with --dry-run", f"{DRY} --report r.html"),
    cli(AREA, "--no-route on a run folder", f"{DRY} --no-route"),
    cli(AREA, "--no-route on a run folder, real run", f"audit {GOOD} --no-route"),
    cli(AREA, "too few probes", f"audit {GOOD} --n-probes 8 --dry-run"),
    cli(AREA, "probes too short", f"audit {GOOD} --max-len 2 --dry-run"),
    cli(AREA, "probes longer than the context", f"audit {GOOD} --max-len 40 --dry-run"),
    cli(AREA, "unknown task", f"{DRY} --task addition"),
    cli(AREA, "probe count as text", f"audit {GOOD} --n-probes many --dry-run"),
    api(AREA, "zero probes", f"plan_checkpoints('{GOOD}', n_probes=0)"),
    api(AREA, "fractional probe count", f"plan_checkpoints('{GOOD}', n_probes=32.5)"),
    api(AREA, "boolean max length", f"plan_checkpoints('{GOOD}', max_len=True)"),
    api(AREA, "timing as text", f"plan_checkpoints('{GOOD}', n_probes=32, timing='fast')"),
    api(AREA, "a folder that does not exist", "plan_checkpoints('ckpt_missing')"),
    api(AREA, "a folder with no checkpoint", "plan_checkpoints('ckpt_empty')"),
    api(AREA, "a later checkpoint without weights", "plan_checkpoints('ckpt_later_broken')"),
    api(AREA, "a model folder, not a run folder", f"plan_checkpoints('{GOOD}/checkpoint-1')"),
    api(AREA, "probes not Probes", "detection_passes(model, 'probes')"),
    api(AREA, "a model that is not a TransformerLens one", "detection_passes(None, probes)"),
]


def prepare(work: Path, namespace: dict[str, Any]) -> None:
    """Run folders of a tiny untrained library model: a good one and broken variants."""
    from helpers import library_probes

    from iteration_heads import DataConfig, ModelConfig, build_model, save
    from iteration_heads.auditing.checkpoint_cost import detection_passes, plan_checkpoints

    data = DataConfig(task="polynomial", max_len=4, n_train=32, n_test=64)
    metadata = {"task": "polynomial", "data": data.to_dict(), "summary": {"epochs": 1}}
    good = work / GOOD
    save(build_model(ModelConfig(d_model=16, max_len=4)), good / "checkpoint-1", metadata=metadata)
    shutil.copytree(good / "checkpoint-1", good / "checkpoint-2")
    (work / "ckpt_empty" / "sub").mkdir(parents=True)
    (work / "ckpt_unnamed" / "final").mkdir(parents=True)  # a model folder: no step, no epoch
    shutil.copy(good / "checkpoint-1" / "config.json", work / "ckpt_unnamed" / "final")

    def variant(name: str, change: Any, checkpoint: str = "checkpoint-1") -> None:
        shutil.copytree(good, work / name)
        change(work / name / checkpoint)

    variant("ckpt_no_weights", lambda c: (c / "model.safetensors").unlink())
    variant("ckpt_later_broken", lambda c: (c / "model.safetensors").unlink(), "checkpoint-2")
    variant("ckpt_config_list", lambda c: (c / "config.json").write_text("[1, 2]"))
    variant("ckpt_config_corrupt", lambda c: (c / "config.json").write_text('{"d_model": '))

    def truncate(c: Path) -> None:
        weights = (c / "model.safetensors").read_bytes()
        (c / "model.safetensors").write_bytes(weights[: len(weights) // 2])

    variant("ckpt_truncated", truncate)
    variant(
        "ckpt_bad_state", lambda c: (c / "trainer_state.json").write_text('{"global_step": "x"}')
    )
    variant("ckpt_state_list", lambda c: (c / "trainer_state.json").write_text(json.dumps([1])))
    namespace.update(
        plan_checkpoints=plan_checkpoints,
        detection_passes=detection_passes,
        probes=library_probes(n=16, max_len=4),
    )
