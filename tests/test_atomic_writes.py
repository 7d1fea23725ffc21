"""Atomic writes leave the old file or the new one, and nothing but their own temporary folder,
even when the writer stages files of its own (safetensors writes ``.tmpXXXXXX`` beside the path
it is given) and the process is killed inside it."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from helpers import temporaries
from safetensors import SafetensorError

from iteration_heads import ModelConfig, build_model, load, save
from iteration_heads.errors import IterationHeadsError
from iteration_heads.runs.run_lock import remove_temporaries

CONTEXT = multiprocessing.get_context("fork")
BIG = ModelConfig(d_model=768, n_layers=2, max_len=4)  # 14 M parameters: a write of 57 MB


def save_big(model: torch.nn.Module, folder: str) -> None:
    save(model, folder)
    os._exit(0)


def test_a_save_killed_inside_safetensors_leaves_the_old_model_and_only_our_folder(
    tmp_path,
) -> None:
    old = build_model(dataclasses.replace(BIG, seed=1))
    save(old, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    process = CONTEXT.Process(target=save_big, args=(build_model(BIG), str(tmp_path)))
    process.start()
    deadline, staged = time.perf_counter() + 120, []
    while not staged and time.perf_counter() < deadline and process.is_alive():
        staged = list(tmp_path.rglob(".tmp*"))  # safetensors' own, wherever it is
    if not staged:
        process.join(60)
        pytest.skip("the save ended before safetensors' own temporary file was seen")
    os.kill(process.pid, signal.SIGKILL)
    process.join(60)
    assert all(p.parent != tmp_path for p in staged), staged  # inside our folder, not beside
    left = sorted(p.name for p in tmp_path.iterdir() if p.name not in before)
    assert 1 <= len(left) <= 2, left  # our folder, and the file it is moved out to
    assert all(n.startswith(".model.safetensors.") and n.endswith(".tmp") for n in left), left
    reloaded = load(tmp_path)  # the old model, whole
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in old.state_dict().items())
    remove_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before and temporaries(tmp_path) == []


def test_a_writer_that_fails_leaves_the_old_files_and_no_temporary(tmp_path, monkeypatch) -> None:
    model = build_model(ModelConfig(d_model=32, max_len=4))
    save(model, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full(tensors, path, metadata=None) -> None:
        (Path(path).parent / ".tmpAbC123").write_bytes(b"half")  # staged as safetensors does
        raise SafetensorError("Error while serializing: No space left on device (os error 28)")

    monkeypatch.setattr("iteration_heads._io.save_file", full)
    with pytest.raises(IterationHeadsError, match="No space left on device"):
        save(build_model(ModelConfig(d_model=32, max_len=4, seed=1)), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def save_and_die_once_written(model: torch.nn.Module, folder: str) -> None:
    """Save ``model``, killed (SIGKILL) the instant its weights file is renamed into place."""
    rename = os.replace

    def replace_then_die(source, destination, *args, **kwargs):
        rename(source, destination, *args, **kwargs)
        if Path(destination).name == "model.safetensors":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace_then_die
    save(model, folder)
    os._exit(0)


def test_a_kill_once_the_file_is_in_place_leaves_no_temporary(tmp_path) -> None:
    """What marks a run finished (its final model, a sweep cell's ``wall.json``) is renamed
    into place last: no temporary is left then, for no cleanup runs on a finished run."""
    model = build_model(ModelConfig(d_model=32, max_len=4, seed=1))  # here: no torch after fork
    process = CONTEXT.Process(target=save_and_die_once_written, args=(model, str(tmp_path)))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL
    assert (tmp_path / "model.safetensors").is_file() and temporaries(tmp_path) == []
