"""Atomic writes leave the old file or the new one, and nothing but their own temporary folder,
even when the writer stages files of its own (safetensors writes ``.tmpXXXXXX`` beside the path
it is given) and the process is killed inside it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from iteration_heads._io import atomic_write, is_temporary, write_tensors, write_text
from iteration_heads.errors import IterationHeadsError
from iteration_heads.runs.run_lock import remove_temporaries

CONTEXT = multiprocessing.get_context("fork")


def write_big(path: str) -> None:
    torch.set_num_threads(1)
    write_tensors(Path(path), {"w": torch.ones(64_000_000)})  # 256 MB: long enough to be caught
    os._exit(0)


def test_a_write_killed_inside_safetensors_leaves_only_its_own_folder(tmp_path) -> None:
    path = tmp_path / "model.safetensors"
    write_tensors(path, {"w": torch.zeros(2)})
    process = CONTEXT.Process(target=write_big, args=(str(path),))
    process.start()
    deadline, staged = time.perf_counter() + 60, []
    while not staged and time.perf_counter() < deadline and process.is_alive():
        staged = list(tmp_path.rglob(".tmp*"))  # safetensors' own, wherever it is
    if not staged:
        process.join(60)
        pytest.skip("the write ended before safetensors' own temporary file was seen")
    os.kill(process.pid, signal.SIGKILL)
    process.join(60)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and "model.safetensors" in left, left
    assert all(is_temporary(tmp_path / name) for name in left if name != "model.safetensors")
    assert load_file(str(path))["w"].tolist() == [0.0, 0.0]  # the old file, whole
    remove_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    path = tmp_path / "a.json"
    write_text(path, "old")

    def fail(tmp: Path) -> None:
        (tmp.parent / ".tmpAbC123").write_text("the writer's own")
        raise OSError(28, "No space left on device")

    with pytest.raises(IterationHeadsError, match="No space left on device"):
        atomic_write(path, fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert path.read_text() == "old"
