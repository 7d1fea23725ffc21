import json

from iteration_heads.cli import main


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
    assert [(h["layer"], h["head"]) for h in result["heads"]] == [(0, 0), (1, 0)]
    assert set(result["heads"][0]["iteration"]) == {"mean", "peakiness", "invariance"}
    assert main(["eval", str(out)]) == 0
    table = capsys.readouterr().out
    assert "L0H0 eoi/iter" in table and "seq acc" in table
    # resume with more epochs
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--quiet"]) == 0


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["train", "--task", "addition", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "unknown task 'addition'" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--max-len", "0", "--out", str(tmp_path / "y"), "--quiet"]) == 2
    assert "min_len=1, max_len=0" in capsys.readouterr().err
