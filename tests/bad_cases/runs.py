"""Bad-input cases: run folders damaged or edited on disk, and resumes that do not match the run
(see base.py). Each folder is a copy of one finished run, with one thing wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from helpers import crash_run_parts

from bad_cases.base import Case, api, cli
from iteration_heads import TrainConfig, train
from iteration_heads.training.history import check_history
from iteration_heads.training.resume import check_manifest, read_checkpoint
from iteration_heads.training.run_dir import history_summary, read_history, read_run_record
from iteration_heads.viz.curves import training_curves

AREA = "run folder"
EPOCHS = 3


def _history(run: Path, change) -> None:
    lines = (run / "history.jsonl").read_text().splitlines(keepends=True)
    (run / "history.jsonl").write_text("".join(change(lines)))


def _record(run: Path, change) -> None:
    (run / "run.json").write_text(change(json.loads((run / "run.json").read_text())))


def _manifests(run: Path, change) -> None:
    for folder in (run / "checkpoint").iterdir():
        state = json.loads((folder / "state.json").read_text())
        (folder / "state.json").write_text(json.dumps(change(state)))


def _flip(run: Path) -> None:
    for folder in (run / "checkpoint").iterdir():
        weights = bytearray((folder / "model.safetensors").read_bytes())
        weights[-2] ^= 0xFF
        (folder / "model.safetensors").write_bytes(bytes(weights))


def _model_file(run: Path, name: str, text: str) -> None:
    for other in (run / "checkpoint", run / "history.jsonl", run / "run.json"):
        shutil.rmtree(other) if other.is_dir() else other.unlink()
    (run / name).write_text(text)


def _model_json(run: Path, name: str, change) -> None:
    (run / name).write_text(json.dumps(change(json.loads((run / name).read_text()))))


def _section(section: str, **changes: Any):
    return lambda r: json.dumps({**r, section: {**r[section], **changes}})


def _record_line(run: Path, number: int, change) -> None:
    def edit(lines: list[str]) -> list[str]:
        lines[number] = json.dumps(change(json.loads(lines[number]))) + "\n"
        return lines

    _history(run, edit)


def _other_configs(run: Path) -> None:  # manifests naming another data size than run.json
    record = json.loads((run / "run.json").read_text())
    configs = {k: record[k] for k in ("model", "data", "train")}
    configs["data"] = {**configs["data"], "n_train": 5}
    _manifests(run, lambda s: {**s, "configs": configs})


def _unstored(run: Path) -> None:  # a checkpoint written before configs were stored in it
    _manifests(run, lambda s: {k: v for k, v in s.items() if k != "configs"})
    _record(run, _section("data", task="parity"))


DEEP = "[" * 200_000 + "]" * 200_000
DAMAGE: dict[str, Any] = {
    "h_empty": lambda run: _history(run, lambda lines: []),
    "h_reordered": lambda run: _history(run, lambda lines: [lines[1], lines[0], *lines[2:]]),
    "h_duplicated": lambda run: _history(run, lambda lines: [lines[0], *lines]),
    "h_gap": lambda run: _history(run, lambda lines: [lines[0], *lines[2:]]),
    "h_short": lambda run: _history(run, lambda lines: lines[:-1]),
    "h_late_start": lambda run: _history(run, lambda lines: lines[1:]),
    "h_42": lambda run: _history(run, lambda lines: [lines[0], "42\n", *lines[1:]]),
    "h_object": lambda run: _history(run, lambda lines: [lines[0], '{"x": 1}\n', *lines[1:]]),
    "h_text_epoch": lambda run: _history(run, lambda ls: [ls[0], '{"epoch": "1"}\n', *ls[2:]]),
    "h_bad_json": lambda run: _history(run, lambda lines: [lines[0], "{epoch: 1\n", *lines[1:]]),
    "h_deep": lambda run: _history(run, lambda lines: [lines[0], DEEP + "\n", *lines[1:]]),
    "r_train_list": lambda run: _record(run, lambda r: json.dumps({**r, "train": []})),
    "r_deep": lambda run: _record(run, lambda r: DEEP),
    "r_list": lambda run: _record(run, lambda r: json.dumps([r])),
    "r_no_train": lambda run: _record(run, lambda r: json.dumps({**r, "train": None} | {})),
    "r_bad_width": lambda run: _record(
        run, lambda r: json.dumps({**r, "model": {**r["model"], "d_model": "wide"}})
    ),
    "r_huge_number": lambda run: _record(
        run, lambda r: json.dumps(r).replace('"epochs": 3', '"epochs": 3' + "0" * 5000)
    ),
    "r_huge_lr": lambda run: _record(run, _section("train", lr=10**400)),
    "r_huge_max_len": lambda run: _record(run, _section("data", max_len=10**400)),
    "r_huge_seed": lambda run: _record(run, _section("train", seed=10**20)),
    "r_other_task": lambda run: _record(run, _section("data", task="parity")),
    "r_other_data_seed": lambda run: _record(run, _section("data", seed=7)),
    "r_other_lr": lambda run: _record(run, _section("train", lr=0.5)),
    "r_other_heads": lambda run: _record(run, _section("model", n_heads=2)),
    "r_task_unstored": _unstored,
    "h_text_test": lambda run: _record_line(run, 1, lambda r: {**r, "test": "x"}),
    "h_text_loss": lambda run: _record_line(run, 1, lambda r: {**r, "train_loss": "x"}),
    "h_no_summary": lambda run: _record_line(run, 1, lambda r: {**r, "train": {}}),
    "h_bool_seconds": lambda run: _record_line(run, 1, lambda r: {**r, "eval_seconds": True}),
    "h_text_accuracy": lambda run: _record_line(
        run, 2, lambda r: {**r, "test": {**r["test"], "summary": {"accuracy": "high"}}}
    ),
    "h_short_losses": lambda run: _record_line(
        run, 2, lambda r: {**r, "test": {**r["test"], "loss": [1.0]}}
    ),
    "c_configs_list": lambda run: _manifests(run, lambda s: {**s, "configs": [1]}),
    "c_configs_other": lambda run: _other_configs(run),
    "m_huge_max_len": lambda run: _model_json(
        run, "config.json", lambda c: {**c, "max_len": 10**400}
    ),
    "m_task_unknown": lambda run: _model_json(
        run, "metadata.json", lambda m: {**m, "task": "addition"}
    ),
    "m_task_number": lambda run: _model_json(run, "metadata.json", lambda m: {**m, "task": 3}),
    "m_cot_text": lambda run: _model_json(run, "metadata.json", lambda m: {**m, "cot": "yes"}),
    "m_data_text": lambda run: _model_json(run, "metadata.json", lambda m: {**m, "data": "copy"}),
    "c_no_files": lambda run: _manifests(run, lambda s: {**s, "files": {}}),
    "c_wrong_type": lambda run: _manifests(
        run, lambda s: {**s, "files": {**s["files"], "model.safetensors": "abc"}}
    ),
    "c_other_epoch": lambda run: _manifests(run, lambda s: {**s, "epoch": 99}),
    "c_not_object": lambda run: _manifests(run, lambda s: [s]),
    "c_flipped": _flip,
    "m_deep_config": lambda run: _model_file(run, "config.json", DEEP),
    "m_metadata_list": lambda run: _model_file(run, "metadata.json", "[1, 2]"),
}
"""Copies of a finished run, each damaged one way."""


def prepare(work: Path, namespace: dict[str, Any]) -> None:
    model, data, config = crash_run_parts(EPOCHS)
    config = TrainConfig(**{**config.to_dict(), "threads": None})
    train(model, data, config, out_dir=work / "goodrun", progress=False)
    for name, damage in DAMAGE.items():
        shutil.copytree(work / "goodrun", work / name)
        damage(work / name)
    namespace.update(
        Path=Path,
        read_history=read_history,
        read_run_record=read_run_record,
        read_checkpoint=read_checkpoint,
        check_manifest=check_manifest,
        check_history=check_history,
        history_summary=history_summary,
        training_curves=training_curves,
        run_model=crash_run_parts(EPOCHS)[0],
        run_data=data,
        run_config=config,
    )


def _resume(name: str, extra: str = "") -> str:
    return f"train --out {name} --resume --quiet {extra}".strip()


RESUMED = "train(run_model, run_data, run_config, out_dir={!r}, resume=True, progress=False)"

CASES: list[Case] = [
    # the command line resumes with options that are not the run's
    cli(AREA, "resume with another learning rate", _resume("goodrun", "--lr 0.5")),
    cli(AREA, "resume with another width", _resume("goodrun", "--d-model 64")),
    cli(AREA, "resume with another task", _resume("goodrun", "--task parity")),
    cli(AREA, "resume with another seed", _resume("goodrun", "--seed 3")),
    cli(AREA, "resume without chain of thought", _resume("goodrun", "--no-cot")),
    cli(AREA, "resume with an abbreviated option", _resume("goodrun", "--batch-si 64")),
    cli(AREA, "resume training one submodule", _resume("goodrun", "--trainable blocks.0.mlp")),
    cli(AREA, "resume stopping at target", _resume("goodrun", "--stop-at-target")),
    cli(AREA, "resume with another optimizer", _resume("goodrun", "--optimizer sgd")),
    cli(AREA, "resume shorter than the run", _resume("goodrun", "--epochs 1")),
    cli(AREA, "resume with several differences", _resume("goodrun", "--lr 0.5 --n-layers 3")),
    # the history does not match the checkpoint
    cli(AREA, "emptied history", _resume("h_empty", "--epochs 5")),
    cli(AREA, "reordered history", _resume("h_reordered")),
    cli(AREA, "duplicated history line", _resume("h_duplicated")),
    cli(AREA, "history missing an evaluation", _resume("h_gap")),
    cli(AREA, "history ending before the checkpoint", _resume("h_short")),
    cli(AREA, "history not starting at epoch 0", _resume("h_late_start")),
    cli(AREA, "a number as a history line", _resume("h_42")),
    cli(AREA, "an object without epoch in the history", _resume("h_object")),
    cli(AREA, "a text epoch in the history", _resume("h_text_epoch")),
    cli(AREA, "bad JSON in the middle of the history", _resume("h_bad_json")),
    cli(AREA, "a history line nested too deeply", _resume("h_deep")),
    api(AREA, "API resume of an emptied history", RESUMED.format("h_empty")),
    api(AREA, "API resume of a reordered history", RESUMED.format("h_reordered")),
    api(AREA, "reading a history with a number line", "read_history('h_42')"),
    api(AREA, "reading a history with an object line", "read_history('h_object')"),
    # the run record
    cli(AREA, "train config that is a list", _resume("r_train_list")),
    cli(AREA, "run record nested 200000 deep", _resume("r_deep")),
    cli(AREA, "run record that is a list", _resume("r_list")),
    cli(AREA, "run record without a train config", _resume("r_no_train")),
    cli(AREA, "run record with a text width", _resume("r_bad_width")),
    cli(AREA, "run record with a 5000-digit number", _resume("r_huge_number")),
    api(AREA, "API resume of a train config that is a list", RESUMED.format("r_train_list")),
    api(AREA, "reading a run record nested too deeply", "read_run_record(Path('r_deep'))"),
    # checkpoints whose manifests lie
    cli(AREA, "manifests that list no file", _resume("c_no_files")),
    cli(AREA, "manifest entry of the wrong type", _resume("c_wrong_type")),
    cli(AREA, "manifests naming another epoch", _resume("c_other_epoch")),
    cli(AREA, "manifests that are not objects", _resume("c_not_object")),
    cli(AREA, "weights flipped in every checkpoint", _resume("c_flipped")),
    api(
        AREA,
        "a manifest entry that is text",
        "check_manifest(Path('x'), {'epoch': 1, 'files': {'model.safetensors': 'abc'}}, 1)",
    ),
    api(AREA, "a manifest that is a number", "check_manifest(Path('x'), 3)"),
    # a saved model's files
    api(AREA, "config.json nested too deeply", "load('m_deep_config')"),
    api(AREA, "metadata.json that is a list", "load('m_metadata_list')"),
    # numbers beyond what torch takes, in the run record and on the command line
    cli(AREA, "run record with a learning rate of 10**400", _resume("r_huge_lr")),
    cli(AREA, "run record with a max_len of 10**400", _resume("r_huge_max_len")),
    cli(AREA, "run record with a seed of 10**20", _resume("r_huge_seed")),
    cli(
        AREA,
        "train for 10**20 epochs",
        "train --out big --task copy --epochs 100000000000000000000",
    ),
    cli(
        AREA,
        "train with a batch of 10**20",
        "train --out big --task copy --batch-size 100000000000000000000",
    ),
    cli(AREA, "train with seed 10**20", "train --out big --task copy --seed 100000000000000000000"),
    cli(
        AREA,
        "train on 10**20 threads",
        "train --out big --task copy --threads 100000000000000000000",
    ),
    cli(
        AREA,
        "train with a max length of 10**20",
        "train --out big --task copy --max-len 100000000000000000000",
    ),
    cli(AREA, "detect with 10**20 probes", "detect goodrun --n-probes 100000000000000000000"),
    # run.json edited after the checkpoints were written
    cli(AREA, "run record naming another task", _resume("r_other_task", "--epochs 5")),
    cli(AREA, "run record with another data seed", _resume("r_other_data_seed")),
    cli(AREA, "run record with another learning rate", _resume("r_other_lr", "--epochs 5")),
    cli(AREA, "run record with more heads", _resume("r_other_heads")),
    cli(AREA, "another task, checkpoint without configs", _resume("r_task_unstored")),
    api(AREA, "API resume of a run record naming another task", RESUMED.format("r_other_task")),
    cli(AREA, "manifest configs that are a list", _resume("c_configs_list")),
    cli(AREA, "manifest configs of another data size", _resume("c_configs_other")),
    # history records whose fields are not what training writes
    cli(AREA, "a history record whose test is text", _resume("h_text_test", "--epochs 6")),
    cli(AREA, "a history record whose loss is text", _resume("h_text_loss")),
    cli(AREA, "a history record without a train summary", _resume("h_no_summary")),
    cli(AREA, "a history record with boolean seconds", _resume("h_bool_seconds")),
    cli(AREA, "a history record with a text accuracy", _resume("h_text_accuracy")),
    cli(AREA, "a history record with one loss for 3 lengths", _resume("h_short_losses")),
    api(AREA, "reading a history whose test is text", "read_history('h_text_test')"),
    api(
        AREA,
        "summary of a record whose test is text",
        "history_summary([{'epoch': 0, 'test': 'x'}])",
    ),
    api(AREA, "curves of a history whose test is text", "training_curves('h_text_test')"),
    # a saved model's config and metadata
    cli(AREA, "evaluating a model whose max_len is 10**400", "eval m_huge_max_len"),
    cli(AREA, "detecting in a model whose max_len is 10**400", "detect m_huge_max_len"),
    cli(AREA, "evaluating a model of an unknown task", "eval m_task_unknown"),
    cli(AREA, "detecting in a model of an unknown task", "detect m_task_unknown"),
    cli(AREA, "evaluating a model whose task is a number", "eval m_task_number"),
    cli(AREA, "detecting in a model whose task is a number", "detect m_task_number"),
    api(AREA, "loading a model whose cot is text", "load('m_cot_text')"),
    api(AREA, "loading a model whose data config is text", "load('m_data_text')"),
    cli(AREA, "evaluating a model with a deep config.json", "eval m_deep_config"),
]
