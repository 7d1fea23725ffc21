"""Runs on disk never lose or corrupt data: a run killed with SIGKILL at any instant resumes and
ends exactly as the uninterrupted run; a second process is refused; a full disk stops the run
with one line and loses nothing; a diverging optimiser saves nothing as final; loading is strict.

The killed runs are forked from a fork server that imported the library once (each start costs
milliseconds, not an import of torch), train with one thread, and are compared with an
uninterrupted run of the same kind."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import signal
import time
import warnings
from pathlib import Path

import pytest
import torch
from helpers import (
    CRASH_EPOCHS,
    crash_child,
    crash_run_parts,
    temporaries,
    tiny_config,
    tiny_data,
)
from safetensors.torch import load_file, save_file

from iteration_heads import IterationHeadsError, build_model, load, save
from iteration_heads.cli import main
from iteration_heads.training import TrainConfig, train
from iteration_heads.training.run_dir import locked_run

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["iteration_heads", "iteration_heads.experiments"])  # not
# "helpers": the fork server of Python 3.11 ignores the test path; children import it cheaply


def comparable(run: Path) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """A finished run's history without timings, and its final weights."""
    lines = (run / "history.jsonl").read_text().splitlines()
    history = [
        {k: v for k, v in json.loads(line).items() if not k.endswith("seconds")} for line in lines
    ]
    return history, load_file(str(run / "model.safetensors"))


def child(run: Path, kill_at: tuple[str, str, int] | None = None) -> multiprocessing.Process:
    resume = (run / "run.json").is_file()
    process = CONTEXT.Process(target=crash_child, args=(str(run), resume, kill_at))
    process.start()
    return process


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[tuple[list[dict], dict], float]:
    """The reference run (in a forked process too) and how long it took."""
    folder = tmp_path_factory.mktemp("reference")
    finish(folder / "run")  # also starts the fork server
    tick = time.perf_counter()
    finish(folder / "again")
    return comparable(folder / "run"), time.perf_counter() - tick


def finish(run: Path) -> None:
    process = child(run)
    process.join(120)
    assert process.exitcode == 0, process.exitcode


def assert_same(run: Path, reference) -> None:
    (history, weights), (expected_history, expected_weights) = comparable(run), reference
    assert [r["epoch"] for r in history] == list(range(CRASH_EPOCHS + 1))
    assert history == expected_history
    assert weights.keys() == expected_weights.keys()
    assert all(torch.equal(weights[k], expected_weights[k]) for k in weights)


FINAL = f"epoch-{CRASH_EPOCHS:06d}"
"""The last checkpoint: once it exists (or its temporary folder), the run is in its final save."""


def in_final_save(run: Path) -> bool:
    """Whether the run reached its final save: the last checkpoint (or its temporary folder)."""
    folder = run / "checkpoint"
    return folder.is_dir() and any(p.name.lstrip(".").startswith(FINAL) for p in folder.iterdir())


def kill_at_random(run: Path, duration: float, rng: random.Random) -> tuple[int, int]:
    """Start the run (or resume it) and SIGKILL it at a random instant in ``[0, duration]``,
    again and again until it finishes; one start in four is killed in its final save instead
    (a random instant within a few milliseconds of its last checkpoint). Returns how many kills
    landed, and how many of them in the final save."""
    landed = final = 0
    while True:
        process = child(run)
        if rng.random() < 0.25:
            deadline = time.perf_counter() + duration * 4
            while not in_final_save(run) and time.perf_counter() < deadline:
                time.sleep(0.0005)
            time.sleep(rng.uniform(0.0, 0.01))
        else:
            time.sleep(rng.uniform(0.0, duration))
        if process.exitcode is None:
            os.kill(process.pid, signal.SIGKILL)
        process.join(60)
        if process.exitcode != -signal.SIGKILL:
            assert process.exitcode == 0, process.exitcode
            return landed, final
        landed += 1
        final += in_final_save(run)


def killed_runs_end_as_the_uninterrupted_run(
    folder: Path, kills: int, duration: float, reference, seed: int
) -> None:
    """Runs killed at random instants until ``kills`` kills have landed (a fifth of them or more
    in the final save): each ends as the uninterrupted run, with no temporary file left."""
    rng, landed, final, runs = random.Random(seed), 0, 0, 0
    tick = time.perf_counter()
    while landed < kills or final < kills // 5:
        run = folder / f"run{runs}"
        more, more_final = kill_at_random(run, duration, rng)
        landed, final, runs = landed + more, final + more_final, runs + 1
        assert_same(run, reference)
        assert sorted(p.name for p in (run / "checkpoint").iterdir()) == [
            f"epoch-{CRASH_EPOCHS - 1:06d}",
            FINAL,
        ]
        assert temporaries(run) == []
    print(
        f"{landed} kills over {runs} runs, {final} in the final save, "
        f"{time.perf_counter() - tick:.1f} s"
    )


def test_runs_killed_at_30_random_instants_end_as_the_uninterrupted_run(
    tmp_path, uninterrupted
) -> None:
    reference, duration = uninterrupted
    killed_runs_end_as_the_uninterrupted_run(tmp_path, 30, duration * 0.5, reference, seed=0)


@pytest.mark.slow
def test_runs_killed_at_300_random_instants_end_as_the_uninterrupted_run(
    tmp_path, uninterrupted
) -> None:
    reference, duration = uninterrupted
    killed_runs_end_as_the_uninterrupted_run(tmp_path, 300, duration, reference, seed=1)


def test_kills_inside_every_kind_of_write_resume_to_the_uninterrupted_run(
    tmp_path, uninterrupted
) -> None:
    """Killed inside atomic writes (the temporary file written, not yet renamed) of every file
    of a run, and in the middle of a history line, one kill after another on the same run."""
    reference, _ = uninterrupted
    run = tmp_path / "run"
    plan = [
        ("write", "checkpoint/model.safetensors", 1),  # starting: the initial checkpoint
        ("write", "history.jsonl", 1),  # starting: the empty history
        ("write", "run.json", 1),  # starting: the run's record, written last
        ("append", "history.jsonl", 2),  # half of epoch 1's record
        ("write", "history.jsonl", 1),  # resuming: the history rewrite (the torn line dropped)
        ("write", "checkpoint/optimizer.safetensors", 2),
        ("write", "checkpoint/state.json", 1),  # the manifest: the folder is not renamed yet
        ("write", "checkpoint/optimizer.json", 3),
        ("write", "model.safetensors", 1),  # the final model
        ("write", "config.json", 1),
        ("write", "metadata.json", 1),
    ]
    for kill_at in plan:
        process = child(run, kill_at)
        process.join(60)
        assert process.exitcode == -signal.SIGKILL, (kill_at, process.exitcode)
    assert temporaries(run)  # the last kills left the final model's temporary files ...
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        finish(run)
    assert_same(run, reference)
    assert temporaries(run) == []  # ... which the resume removed


def test_a_second_process_is_refused_and_the_history_stays_increasing(tmp_path) -> None:
    run = tmp_path / "run"
    process = CONTEXT.Process(target=crash_child, args=(str(run), False, None, 40))
    process.start()
    deadline = time.time() + 60
    while not (run / ".lock.holder").is_file() and time.time() < deadline:
        time.sleep(0.01)
    holder = json.loads((run / ".lock.holder").read_text())
    model, data, config = crash_run_parts()
    with pytest.raises(IterationHeadsError, match=f"in use by process {holder['pid']}"):
        train(model, data, config, out_dir=run, resume=True, progress=False)
    second = CONTEXT.Process(target=crash_child, args=(str(run), True, None, 40))
    second.start()
    second.join(60)
    assert second.exitcode == 1 and process.exitcode is None  # refused while the first trains
    process.join(120)
    assert process.exitcode == 0
    lines = (run / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(41))
    assert not (run / ".lock.holder").exists()


def test_a_run_that_has_its_lock_but_no_run_json_yet_is_refused_as_in_use(tmp_path) -> None:
    """A run starting in another process holds its lock before it writes run.json: a resume in
    that instant hears who holds the run, not that there is nothing to resume."""
    run = tmp_path / "run"
    model, data, config = crash_run_parts()
    with locked_run(run):
        assert not (run / "run.json").exists()
        for resume in (True, False):
            with pytest.raises(IterationHeadsError, match=f"in use by process {os.getpid()}"):
                train(model, data, config, out_dir=run, resume=resume, progress=False)
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


def test_a_full_disk_stops_the_run_with_one_line_and_loses_nothing(tmp_path, monkeypatch) -> None:
    model, data, config = crash_run_parts()
    config = TrainConfig(**{**config.to_dict(), "threads": None})  # this process's threads
    train(model, data, config, out_dir=tmp_path / "reference", progress=False)
    reference = comparable(tmp_path / "reference")

    fsync, calls = os.fsync, {"n": 0}

    def full_disk(handle):
        calls["n"] += 1
        if calls["n"] >= 40:  # the disk fills up after a few epochs
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(handle)

    monkeypatch.setattr(os, "fsync", full_disk)
    run = tmp_path / "run"
    model, _, _ = crash_run_parts()
    with pytest.raises(IterationHeadsError, match="No space left on device") as raised:
        train(model, data, config, out_dir=run, progress=False)
    assert "\n" not in str(raised.value)
    assert not (run / "model.safetensors").exists()
    assert temporaries(run) == []
    monkeypatch.setattr(os, "fsync", fsync)  # space freed
    model, _, _ = crash_run_parts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a history line may have been torn by the full disk
        train(model, data, config, out_dir=run, resume=True, progress=False)
    assert comparable(run)[0] == reference[0]
    assert all(torch.equal(comparable(run)[1][k], v) for k, v in reference[1].items())


def test_a_diverging_optimiser_saves_nothing_as_final(tmp_path) -> None:
    model, data, config = crash_run_parts()
    config = TrainConfig(**{**config.to_dict(), "lr": 1e30, "threads": None})
    run = tmp_path / "run"
    with pytest.raises(IterationHeadsError, match=r"training diverged: loss (nan|inf) at epoch"):
        train(model, data, config, out_dir=run, progress=False)
    assert not (run / "model.safetensors").exists() and not (run / "config.json").exists()
    kept = sorted(p.name for p in (run / "checkpoint").iterdir())
    assert kept and all(load_file(str(run / "checkpoint" / k / "model.safetensors")) for k in kept)
    assert (
        main(
            [
                "train",
                "--out",
                str(tmp_path / "cli"),
                "--lr",
                "1e30",
                "--epochs",
                "2",
                "--max-len",
                "4",
                "--d-model",
                "16",
                "--n-train",
                "32",
                "--quiet",
            ]
        )
        == 2
    )


def test_resume_keeps_the_runs_length_unless_extended(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    common = ["--max-len", "4", "--d-model", "16", "--n-train", "32", "--n-test", "16"]
    assert main(["train", "--out", str(out), "--epochs", "3", "--quiet", *common]) == 0
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    assert json.loads((out / "run.json").read_text())["train"]["epochs"] == 3
    assert json.loads((out / "history.jsonl").read_text().splitlines()[-1])["epoch"] == 3
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the run is 3 epochs long" in err and len(err.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(["train", "--out", str(out), "--resume", "--epochs", "5", "--quiet"]) == 0
    assert json.loads((out / "run.json").read_text())["train"]["epochs"] == 5
    assert json.loads((out / "history.jsonl").read_text().splitlines()[-1])["epoch"] == 5


def test_folders_that_are_not_runs_are_never_overwritten(tmp_path, capsys) -> None:
    saved = save(build_model(tiny_config()), tmp_path / "model")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, expected in (
        (saved, "holds a saved model"),
        (notes, "not a run's (todo.txt)"),
        (a_file, "is a file"),
    ):
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        assert main(["train", "--out", str(out), "--epochs", "1", "--quiet"]) == 2
        assert expected in capsys.readouterr().err
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_start_that_never_finished_reruns_and_a_torn_history_line_is_dropped(tmp_path) -> None:
    data = tiny_data(n_train=16, n_test=8)
    config = TrainConfig(epochs=2, eval_every=1, batch_size=32)
    run = tmp_path / "run"
    (run / "checkpoint" / ".epoch-000000.x.tmp").mkdir(parents=True)  # killed while starting
    with pytest.raises(IterationHeadsError, match="the run never started"):
        train(build_model(tiny_config()), data, config, out_dir=run, resume=True, progress=False)
    full = train(build_model(tiny_config()), data, config, out_dir=run, progress=False)
    with open(run / "history.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "tr')  # a torn line, as a kill in the middle leaves it
    with pytest.warns(UserWarning, match="dropped a torn last line"):
        resumed = train(
            build_model(tiny_config()), data, config, out_dir=run, resume=True, progress=False
        )
    assert [r["epoch"] for r in resumed] == [r["epoch"] for r in full] == [0, 1, 2]


def test_damaged_checkpoints_are_skipped_for_the_previous_one(tmp_path) -> None:
    data = tiny_data(n_train=16, n_test=8)
    config = TrainConfig(epochs=4, eval_every=1, checkpoint_every=1, batch_size=32)
    run = tmp_path / "run"
    train(build_model(tiny_config()), data, config, out_dir=run, progress=False)
    newest = run / "checkpoint" / "epoch-000004" / "optimizer.safetensors"
    newest.write_bytes(newest.read_bytes()[:-7] + b"garbage")
    with pytest.warns(UserWarning, match="skipped a damaged checkpoint"):
        history = train(
            build_model(tiny_config()), data, config, out_dir=run, resume=True, progress=False
        )
    assert [r["epoch"] for r in history] == [0, 1, 2, 3, 4]  # epoch 4 trained again from 3
    for folder in (run / "checkpoint").iterdir():
        (folder / "model.safetensors").write_bytes(b"garbage")
    with (
        pytest.warns(UserWarning),
        pytest.raises(IterationHeadsError, match="no intact checkpoint"),
    ):
        train(build_model(tiny_config()), data, config, out_dir=run, resume=True, progress=False)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda t: {k: v.half() for k, v in t.items()}, "dtype mismatches"),
        (lambda t: {k: v.long() for k, v in t.items()}, "dtype mismatches"),
        (lambda t: {k: torch.full_like(v, float("nan")) for k, v in t.items()}, "not finite"),
    ],
)
def test_loading_is_strict_about_dtypes_and_finiteness(tmp_path, damage, message) -> None:
    folder = save(build_model(tiny_config()), tmp_path / "model")
    weights = load_file(str(folder / "model.safetensors"))
    save_file(damage(weights), str(folder / "model.safetensors"))
    with pytest.raises(IterationHeadsError, match=message):
        load(folder)


def test_loading_refuses_devices_that_do_not_exist(tmp_path) -> None:
    folder = save(build_model(tiny_config()), tmp_path / "model")
    with pytest.raises(IterationHeadsError, match="device='nosuch', expected a device name"):
        load(folder, device="nosuch")
    if not torch.cuda.is_available():
        with pytest.raises(IterationHeadsError, match="not available"):
            load(folder, device="cuda")
    assert load(folder, device="cpu").cfg.d_model == tiny_config().d_model


def test_a_kill_between_a_checkpoint_and_its_pruning_is_tidied_by_the_next_save(tmp_path) -> None:
    """Killed after a checkpoint folder was renamed into place but before the oldest was
    removed, a run holds three; saving the same epoch again (a finished run resumed) prunes."""
    import shutil

    from iteration_heads.training.resume import checkpoints, save_checkpoint

    model, _, _ = crash_run_parts()
    optimizer = torch.optim.Adam(model.parameters())
    for epoch in (1, 2):
        save_checkpoint(tmp_path, model, optimizer, epoch)
    shutil.copytree(
        tmp_path / "checkpoint" / "epoch-000002", tmp_path / "checkpoint" / "epoch-000003"
    )
    assert [e for e, _ in checkpoints(tmp_path)] == [3, 2, 1]
    save_checkpoint(tmp_path, model, optimizer, 3)
    assert [e for e, _ in checkpoints(tmp_path)] == [3, 2]
