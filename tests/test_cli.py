import argparse
import importlib
import json

import torch

from iteration_heads.cli import COMMANDS, main
from iteration_heads.cli import inspect as inspect_command
from iteration_heads.cli.common import DEFAULT_THREADS
from iteration_heads.experiments import EXPERIMENTS


def test_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--task",
        "parity",
        "--max-len",
        "5",
        "--d-model",
        "16",
        "--epochs",
        "2",
        "--n-train",
        "32",
        "--n-test",
        "16",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    assert "saved to" in capsys.readouterr().out
    assert main(["eval", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "parity" and result["lengths"] == [1, 2, 3, 4, 5]
    assert len(result["sequence_accuracy"]) == 5
    # the library's recipe: two heads per layer, Adam 1e-3 with a 200-step warm-up
    assert [(h["layer"], h["head"]) for h in result["heads"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    record = json.loads((out / "run.json").read_text())
    assert record["model"]["n_heads"] == 2
    assert (record["train"]["lr"], record["train"]["warmup_steps"]) == (1e-3, 200)
    assert set(result["heads"][0]["iteration"]) == {"mean", "peakiness", "invariance"}
    assert main(["eval", str(out)]) == 0
    table = capsys.readouterr().out
    assert "L0H0 eoi/iter" in table and "seq acc" in table
    # resume with more epochs
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--quiet"]) == 0


def test_fine_tuning_defaults_to_the_papers_optimiser(tmp_path):
    out = tmp_path / "ft"
    args = [
        "train",
        "--task",
        "parity",
        "--max-len",
        "8",
        "--init-from",
        "polynomial",
        "--epochs",
        "1",
    ]
    assert main([*args, "--n-train", "16", "--n-test", "8", "--out", str(out), "--quiet"]) == 0
    train = json.loads((out / "run.json").read_text())["train"]
    assert train["lr"] == 3e-4 and "warmup_steps" not in train  # Adam 3e-4, no warm-up
    again = tmp_path / "ft2"
    options = ["--lr", "1e-3", "--warmup-steps", "5", "--out", str(again), "--quiet"]
    assert main([*args, "--n-train", "16", "--n-test", "8", *options]) == 0
    train = json.loads((again / "run.json").read_text())["train"]
    assert (train["lr"], train["warmup_steps"]) == (1e-3, 5)


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["train", "--task", "addition", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "unknown task 'addition'" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--max-len", "0", "--out", str(tmp_path / "y"), "--quiet"]) == 2
    assert "min_len=1, max_len=0" in capsys.readouterr().err


def help_of(command: list[str], capsys) -> str:
    try:
        main([*command, "--help"])
    except SystemExit as stop:
        assert stop.code == 0
    return capsys.readouterr().out


def test_help_is_plain_text_and_every_command_takes_threads(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    top = help_of([], capsys)
    assert "examples:" in top
    for command in COMMANDS:
        text = help_of([command], capsys)
        assert "``" not in text and "::" not in text, command
        assert max(map(len, text.splitlines())) <= 100, f"{command}: a line is not wrapped"
        assert "--threads N" in text, f"{command} has no --threads"
        assert f"(default {DEFAULT_THREADS}" in " ".join(text.split()), command
    assert "``" not in top and "::" not in top
    assert set(COMMANDS) <= set(top.split())
    reproduce = help_of(["reproduce"], capsys)
    assert ".;" not in reproduce
    assert all(f"\n  {name} " in reproduce for name in EXPERIMENTS)  # one line each


def test_the_command_list_matches_each_modules_help():
    for name, (module, text) in COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"iteration_heads.cli.{module}").add_parser(sub)
        given = {action.dest: action.help for action in sub._choices_actions}
        assert given[name] == text or given[name].startswith(text), name


def test_threads_are_set_for_the_command_and_restored(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(inspect_command, "run_tasks", lambda args: seen.append(args.threads))
    before = torch.get_num_threads()
    assert main(["tasks", "--threads", "3"]) == 0
    assert seen == [3] and torch.get_num_threads() == before
    assert main(["detect", "polynomial", "--threads", "0"]) == 2
    assert capsys.readouterr().err == (
        "iteration-heads: error: --threads 0, expected an integer >= 1\n"
    )


def test_a_ctrl_c_after_the_command_finished_leaves_its_output_and_status() -> None:
    """A SIGINT that lands while the interpreter shuts down (here: sent by an atexit hook, the
    last thing that runs) neither kills the process by signal nor prints anything."""
    import subprocess
    import sys

    code = (
        "import atexit, os, signal, sys\n"
        "atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))\n"
        "sys.argv = ['iteration-heads', 'tasks']\n"
        "from iteration_heads.cli import entry\n"
        "entry()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done
    assert "polynomial" in done.stdout and done.stderr == ""
