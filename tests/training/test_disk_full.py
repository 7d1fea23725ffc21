"""A full disk, on every write path of a run, is one line naming the file and the free space it
needs; nothing written before is lost, no temporary file stays, and the run resumes once space
is freed. On a real small file system (a tmpfs, mounted where the tests run as root, as in CI),
and with the operating system's error simulated (any user)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import crash_run_parts, temporaries
from safetensors import SafetensorError
from safetensors.torch import load_file

from iteration_heads import IterationHeadsError, ModelConfig, build_model, save
from iteration_heads.cli import main
from iteration_heads.training.resume import save_checkpoint
from iteration_heads.training.run_dir import append_history
from iteration_heads.viz.page import write_shared_plotly

CLI = ["--max-len", "4", "--d-model", "16", "--n-train", "48", "--n-test", "16", "--epochs",
       "6", "--eval-every", "1", "--checkpoint-every", "1", "--batch-size", "32", "--lr", "1e-3",
       "--quiet"]  # fmt: skip
"""The crash tests' run, through the command line."""


def comparable(run: Path) -> tuple[list[dict], dict[str, torch.Tensor]]:
    lines = (run / "history.jsonl").read_text().splitlines()
    history = [
        {k: v for k, v in json.loads(line).items() if not k.endswith("seconds")} for line in lines
    ]
    return history, load_file(str(run / "model.safetensors"))


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A 2 MB tmpfs mounted at a folder of tmp_path (root only), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_run_that_fills_a_real_disk_ends_in_one_line_and_resumes(tmpfs, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "reference"), *CLI]) == 0
    checkpoint = sum(
        p.stat().st_size for p in (tmp_path / "reference" / "checkpoint" / "epoch-000006").iterdir()
    )
    free = shutil.disk_usage(tmpfs).free
    ballast = tmpfs / "ballast"
    ballast.write_bytes(b"\0" * (free - int(2.5 * checkpoint)))  # room for two checkpoints
    capsys.readouterr()
    run = tmpfs / "run"
    assert main(["train", "--out", str(run), *CLI]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "No space left on device (it needs " in err and "are free; free some space" in err
    assert ".safetensors'" in err and "Traceback" not in err
    assert temporaries(run) == []
    ballast.unlink()  # space freed
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    (history, weights), (expected, reference) = comparable(run), comparable(tmp_path / "reference")
    assert history == expected
    assert all(torch.equal(weights[k], v) for k, v in reference.items())


def test_every_writer_reports_a_full_disk_in_one_line(tmpfs) -> None:
    big = build_model(ModelConfig(d_model=256, max_len=8))  # 6 MB: more than the disk holds
    huge = "y" * 3_000_000
    writers = [
        (lambda path: save(big, path), "model.safetensors", "it needs 6."),
        (lambda path: save(crash_run_parts()[0], path, metadata={"x": huge}), "metadata.json",
         "it needs 3.0 MB"),
        (lambda path: append_history(path, {"epoch": 0, "x": huge}), "history.jsonl",
         "it needs 3.0 MB"),
        (lambda path: save_checkpoint(path, big, torch.optim.Adam(big.parameters()), 3),
         "checkpoint/epoch-000003/model.safetensors", "it needs 6."),
        (write_shared_plotly, "plotly.min.js", "MB of free space"),
    ]  # fmt: skip
    ballast = tmpfs / "ballast"
    ballast.write_bytes(b"\0" * (shutil.disk_usage(tmpfs).free - 200_000))
    for number, (write, name, needed) in enumerate(writers):
        folder = tmpfs / f"w{number}"
        folder.mkdir()
        with pytest.raises(IterationHeadsError, match="No space left on device") as err:
            write(folder)
        message = str(err.value)
        assert "\n" not in message and f"{name}'" in message and needed in message, message
        assert temporaries(tmpfs) == []


def test_a_full_disk_in_safetensors_is_one_line_without_root(tmp_path, monkeypatch) -> None:
    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr("iteration_heads._io.save_file", full)
    monkeypatch.setattr("iteration_heads._io.free_space", lambda path: 1234)
    with pytest.raises(IterationHeadsError) as err:
        save(crash_run_parts()[0], tmp_path / "model")
    assert str(err.value).startswith(
        f"cannot write {str(tmp_path / 'model' / 'model.safetensors')!r}: No space left on device "
        "(it needs "
    )
    assert "of free space, 1 kB are free; free some space and run again" in str(err.value)
    assert os.listdir(tmp_path / "model") == []


def test_a_failed_write_of_a_json_file_names_the_space_it_needs(tmp_path, monkeypatch) -> None:
    fsync = os.fsync

    def no_space(handle):
        if os.fstat(handle).st_size > 1_000_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(handle)

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(IterationHeadsError, match=r"metadata.json'.*it needs 1\.1 MB of free"):
        save(crash_run_parts()[0], tmp_path, metadata={"x": "x" * 1_100_000})
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
