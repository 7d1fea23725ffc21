"""A run folder is trusted only as far as it checks out: checkpoints against their manifests,
the history against the checkpoint, the run record against the configs; every other file of it
that is damaged or edited is a one-line error, with nothing changed, never a silent rewrite or
a traceback. Temporary files of interrupted writes are removed by the next run; Ctrl-C and
options that differ from the resumed run's are one line on the command line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from helpers import crash_run_parts, temporaries
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import iteration_heads.training.loop as loop_module
from iteration_heads import IterationHeadsError, load, save
from iteration_heads.cli import main
from iteration_heads.training import TrainConfig, train
from iteration_heads.training.resume import check_manifest, read_checkpoint
from iteration_heads.training.run_dir import (
    check_resumable,
    read_history,
    read_run_record,
    remove_stale_temporaries,
)

EPOCHS = 4
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
"""Arbitrary JSON values."""


def run_folder(root: Path, name: str = "run") -> Path:
    """A finished run of EPOCHS epochs: an evaluation and a checkpoint after every epoch."""
    model, data, config = crash_run_parts(EPOCHS)
    config = TrainConfig(**{**config.to_dict(), "threads": None})
    train(model, data, config, out_dir=root / name, progress=False)
    return root / name


def resume(run: Path, epochs: int = EPOCHS) -> list[dict]:
    model, data, config = crash_run_parts(epochs)
    config = TrainConfig(**{**config.to_dict(), "threads": None})
    return train(model, data, config, out_dir=run, resume=True, progress=False)


def files(run: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    return run_folder(tmp_path_factory.mktemp("finished"))


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def newest(run: Path) -> Path:
    return run / "checkpoint" / f"epoch-{EPOCHS:06d}"


# ---------------------------------------------------------------- checkpoints and their manifests


@pytest.mark.parametrize(
    "lie",
    [
        lambda files: {},  # the manifest lists nothing
        lambda files: {k: v for k, v in files.items() if k != "model.safetensors"},
        lambda files: {**files, "model.safetensors": "abc"},  # an entry of the wrong type
        lambda files: {**files, "model.safetensors": {"bytes": "12", "sha256": 3}},
        lambda files: {**files, "optimizer.json": None},
    ],
)
def test_a_checkpoint_whose_manifest_lies_is_skipped(run: Path, lie) -> None:
    folder = newest(run)
    state = json.loads((folder / "state.json").read_text())
    (folder / "state.json").write_text(json.dumps({**state, "files": lie(state["files"])}))
    weights = bytearray((folder / "model.safetensors").read_bytes())
    weights[-3] ^= 0xFF  # and the weights flipped, which the lying manifest no longer covers
    weights[-11] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(weights))
    with pytest.warns(UserWarning, match="skipped a damaged checkpoint: .*manifest"):
        assert read_checkpoint(run).epoch == EPOCHS - 1
    with pytest.warns(UserWarning, match="skipped a damaged checkpoint"):
        history = resume(run)
    assert [r["epoch"] for r in history] == list(range(EPOCHS + 1))  # the last epoch retrained
    trained = load_file(str(newest(run) / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in trained.values())


def test_a_manifest_that_names_another_epoch_is_damaged(run: Path) -> None:
    state = json.loads((newest(run) / "state.json").read_text())
    (newest(run) / "state.json").write_text(json.dumps({**state, "epoch": 1}))
    with pytest.warns(UserWarning, match="names epoch 1, expected 4"):
        assert read_checkpoint(run).epoch == EPOCHS - 1


def test_no_trusted_checkpoint_is_one_line_and_changes_nothing(run: Path, capsys) -> None:
    for folder in (run / "checkpoint").iterdir():
        (folder / "state.json").write_text('{"epoch": 0, "files": {}}')
    before = files(run)
    model, data, config = crash_run_parts(EPOCHS)
    config = TrainConfig(**{**config.to_dict(), "threads": None})
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning), pytest.raises(IterationHeadsError, match="no intact") as err:
        train(model, data, config, out_dir=run, resume=True, progress=False)
    assert "\n" not in str(err.value)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert files(run) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifest=JSON)
def test_any_manifest_is_checked_or_refused_in_one_line(manifest) -> None:
    try:
        check_manifest(Path("nowhere"), manifest, 3)
    except IterationHeadsError as err:
        assert "\n" not in str(err)
    else:
        raise AssertionError(f"accepted {manifest!r}")


# ---------------------------------------------------------------- the history


def write_epochs(run: Path, epochs: list[int | str]) -> None:
    """Rewrite the history with the records of ``epochs`` (their original lines), or raw lines."""
    records = {json.loads(line)["epoch"]: line for line in (run / "history.jsonl").open()}
    lines = [records[e] if isinstance(e, int) else e + "\n" for e in epochs]
    (run / "history.jsonl").write_text("".join(lines))


@pytest.mark.parametrize(
    "epochs, message",
    [
        ([], "holds no record, but the checkpoint is at epoch 4"),
        ([1, 0, 2, 3, 4], "line 1 is epoch 1, expected the first evaluation, epoch 0"),
        ([0, 2, 1, 3, 4], "line 2 is epoch 2 after epoch 0, expected epoch 1"),
        ([0, 1, 1, 2, 3, 4], "line 3 is epoch 1 after epoch 1"),
        ([0, 1, 2, 3], "ends at epoch 3, but the checkpoint is at epoch 4"),
        ([0, 1, 3, 4], "line 3 is epoch 3 after epoch 1, expected epoch 2"),
        ([0, 1, 2, 3, 4, 3], "line 6 is epoch 3 after epoch 4"),
        ([0, "42", 1, 2, 3, 4], "line 2: 42 is not an evaluation record"),
        ([0, 1, '{"x": 1}', 2, 3, 4], 'line 3: {"x": 1} is not an evaluation record'),
        ([0, 1, '{"epoch": true}', 2], "line 3: .* is not an evaluation record"),
        ([0, 1, '{"epoch": -1}', 2], "line 3: .* is not an evaluation record"),
        ([0, "[" * 100_000, 1], "line 2: nested too deeply"),
    ],
)
def test_a_history_that_does_not_match_the_checkpoint_is_refused(
    run: Path, epochs, message, capsys
) -> None:
    write_epochs(run, epochs)
    before = files(run)
    with pytest.raises(IterationHeadsError, match=message) as err:
        resume(run, EPOCHS + 2)
    assert "\n" not in str(err.value)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "6", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("iteration-heads: error: ")
    assert files(run) == before


def test_history_records_after_the_checkpoint_are_recomputed(run: Path) -> None:
    shutil.rmtree(newest(run))  # the run resumes from epoch 3; epoch 4's record is recomputed
    assert [r["epoch"] for r in resume(run)] == list(range(EPOCHS + 1))
    with open(run / "history.jsonl", "a") as handle:
        handle.write('{"epoch": 5, "tr')  # a torn last line is dropped with a warning
    with pytest.warns(UserWarning, match="dropped a torn last line"):
        assert [r["epoch"] for r in resume(run)] == list(range(EPOCHS + 1))


def test_a_periodic_checkpoint_between_evaluations_resumes(tmp_path: Path) -> None:
    """Evaluations every 4 epochs, checkpoints every 3: killed after the checkpoint of epoch 6,
    the run has evaluated epochs 0 and 4 only, which is right."""
    model, data, _ = crash_run_parts()
    config = TrainConfig(epochs=7, eval_every=4, checkpoint_every=3, batch_size=32)
    run = tmp_path / "run"
    train(model, data, config, out_dir=run, progress=False)
    shutil.rmtree(run / "checkpoint" / "epoch-000007")
    lines = (run / "history.jsonl").read_text().splitlines(keepends=True)
    (run / "history.jsonl").write_text(lines[0])  # [0]: the evaluation of epoch 4 is missing
    with pytest.raises(IterationHeadsError, match="ends at epoch 0, but the checkpoint is at"):
        train(crash_run_parts()[0], data, config, out_dir=run, resume=True, progress=False)
    (run / "history.jsonl").write_text("".join(lines[:2]))  # [0, 4]
    history = train(crash_run_parts()[0], data, config, out_dir=run, resume=True, progress=False)
    assert [r["epoch"] for r in history] == [0, 4, 7]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(JSON.map(json.dumps) | st.text(max_size=6), max_size=5))
def test_any_history_parses_or_is_refused_in_one_line(lines, tmp_path_factory) -> None:
    run = tmp_path_factory.mktemp("history")
    (run / "history.jsonl").write_text("".join(line.replace("\n", " ") + "\n" for line in lines))
    try:
        records = read_history(run)
    except IterationHeadsError as err:
        assert "\n" not in str(err)
    else:
        assert all(isinstance(r, dict) and type(r["epoch"]) is int for r in records)


# ---------------------------------------------------------------- run.json, config.json, metadata


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"model": {}, "data": {}, "train": []}', "train must be a JSON object"),
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
        ('{"model": {}, "data": {}}', "is not a run record"),
        ('{"model": {"d_model": "x"}, "data": {}, "train": {}}', "is not a run record"),
        ('{"model": {}, "data": {}, "train": {"epochs": 1' + "0" * 5000 + "}}", "corrupt JSON"),
    ],
)
def test_a_bad_run_record_is_one_line(run: Path, text: str, message: str, capsys) -> None:
    (run / "run.json").write_text(text)
    before = files(run)
    with pytest.raises(IterationHeadsError, match=message):
        resume(run)
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert files(run) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section=st.sampled_from(["model", "data", "train", None]), value=JSON)
def test_any_run_record_parses_or_is_refused_in_one_line(section, value, tmp_path_factory):
    run = tmp_path_factory.mktemp("record")
    record = {"model": {"d_model": 16, "max_len": 4}, "data": {"max_len": 4}, "train": {}}
    record = value if section is None else {**record, section: value}
    (run / "run.json").write_text(json.dumps(record))
    try:
        read_run_record(run)
    except IterationHeadsError as err:
        assert "\n" not in str(err)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    return save(crash_run_parts()[0], tmp_path_factory.mktemp("saved") / "model")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["config.json", "metadata.json"]), key=st.text(max_size=10), value=JSON)
def test_any_saved_model_file_loads_or_is_refused_in_one_line(saved_model, name, key, value):
    original = (saved_model / name).read_text()
    data = json.loads(original)
    try:
        (saved_model / name).write_text(json.dumps(value if key == "" else {**data, key: value}))
        load(saved_model)
    except IterationHeadsError as err:
        assert "\n" not in str(err)
    finally:
        (saved_model / name).write_text(original)


# ---------------------------------------------------------------- temporaries, options, Ctrl-C


def test_the_next_run_removes_its_own_stale_temporaries_only(run: Path) -> None:
    ours = [
        ".model.safetensors.k2j4x9_a.tmp",
        ".config.json.abcdefgh.tmp",
        ".history.jsonl.0123abcd.tmp",
        "checkpoint/.epoch-000004.zzzzzzzz.tmp/model.safetensors",
        ".run.json.q1w2e3r4.tmp/run.json",  # the private folders of atomic writes ...
        ".model.safetensors.a9s8d7f6.tmp/.tmpAbC123",  # ... and what a writer staged in them
    ]
    theirs = [".notes.txt.abcdefgh.tmp", "checkpoint/.mine.tmp.keep"]
    for name in ours + theirs:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(b"x" * 100)
    resume(run, EPOCHS + 1)
    assert not any((run / name).exists() for name in ours)
    assert not (run / "checkpoint" / ".epoch-000004.zzzzzzzz.tmp").exists()
    assert not (run / ".model.safetensors.a9s8d7f6.tmp").exists()
    assert all((run / name).exists() for name in theirs)
    assert remove_stale_temporaries(run) == []


def test_resume_refuses_options_that_differ_from_the_runs(run: Path, capsys) -> None:
    before = files(run)
    argv = ["train", "--out", str(run), "--resume", "--quiet"]
    conflicting = ["--lr", "0.5", "--d-model", "64", "--task", "parity", "--seed", "3"]
    assert main([*argv, *conflicting]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    for shown in ("--lr 0.5 (the run: 0.001)", "--d-model 64 (the run: 16)", "--task parity",
                  "--seed 3 (the run: 0)"):  # fmt: skip
        assert shown in err
    for more in (["--no-cot"], ["--trainable", "blocks.0.mlp"], ["--eval-every", "2"],
                 ["--batch-size=64"], ["--d-mo", "64"], ["--stop-at-target"]):  # fmt: skip
        assert main([*argv, *more]) == 2
        assert "differ from the run's" in capsys.readouterr().err
    assert files(run) == before
    same = ["--lr", "1e-3", "--d-model", "16", "--max-len", "4", "--seed", "0", "--epochs", "5"]
    assert main([*argv, *same, "--batch-size", "32", "--checkpoint-every", "1"]) == 0
    assert json.loads((run / "history.jsonl").read_text().splitlines()[-1])["epoch"] == 5


def test_ctrl_c_in_train_is_one_line_with_the_resume_command(tmp_path, monkeypatch, capsys):
    evaluations = loop_module.evaluation_records
    calls = {"n": 0}

    def interrupted_at_the_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return evaluations(*args, **kwargs)

    monkeypatch.setattr(loop_module, "evaluation_records", interrupted_at_the_fourth)
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--max-len", "4", "--d-model", "16", "--n-train", "32",
            "--n-test", "16", "--epochs", "5", "--eval-every", "1", "--checkpoint-every", "1",
            "--quiet"]  # fmt: skip
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"iteration-heads: interrupted: {out} keeps its checkpoint of epoch 2; continue with: "
        f"iteration-heads train --out {out} --resume"
    ]
    assert temporaries(out) == []
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    assert [r["epoch"] for r in read_history(out)] == list(range(6))

    def interrupt(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("iteration_heads.cli.inspect.run_tasks", interrupt)
    assert main(["tasks"]) == 130  # any command: one line, exit 130
    assert capsys.readouterr().err == "iteration-heads: interrupted\n"


# ---------------------------------------------------------------- edited configs and records


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [("data", "task", "parity"), ("data", "seed", 7), ("train", "lr", 0.5), ("model", "seed", 3)],
)
def test_a_run_record_edited_after_its_checkpoints_is_refused(
    run: Path, section: str, field: str, value, capsys
) -> None:
    record = json.loads((run / "run.json").read_text())
    manifest = json.loads((newest(run) / "state.json").read_text())
    assert manifest["configs"][section] == record[section]  # written with the checkpoint
    record[section][field] = value
    (run / "run.json").write_text(json.dumps(record))
    (run / "metadata.json").unlink()  # the manifest alone catches it
    before = files(run)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "6", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"run.json {section}.{field} is {value!r}" in lines[0]
    assert files(run) == before


def test_an_old_checkpoint_is_checked_against_the_model_metadata(run: Path) -> None:
    for folder in (run / "checkpoint").iterdir():  # as written before configs were stored
        state = json.loads((folder / "state.json").read_text())
        (folder / "state.json").write_text(json.dumps({**state, "configs": None}))
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "data": {**record["data"], "n_test": 8}}))
    before = files(run)
    with pytest.raises(IterationHeadsError, match=r"data\.n_test is 8, but its metadata\.json"):
        check_resumable(run)
    assert files(run) == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"test": "x"}, "line 2: test='x', expected an object with a summary object"),
        ({"train_loss": "x"}, "line 2: train_loss='x', expected a number or null"),
        ({"eval_seconds": "1s"}, "line 2: eval_seconds='1s', expected a number or null"),
        ({"step": -1}, "line 2: step=-1, expected an integer >= 0"),
        ({"train": {"summary": {"accuracy": True}}}, "train.summary.accuracy=True"),
    ],
)
def test_a_history_record_with_a_bad_field_is_refused_before_training(
    run: Path, change: dict, message: str, capsys
) -> None:
    lines = (run / "history.jsonl").read_text().splitlines(keepends=True)
    lines[1] = json.dumps({**json.loads(lines[1]), **change}) + "\n"
    (run / "history.jsonl").write_text("".join(lines))
    before = files(run)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "6", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert files(run) == before  # nothing trained, nothing appended
    with pytest.raises(IterationHeadsError, match=re.escape(message)):
        read_history(run)
