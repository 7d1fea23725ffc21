import json

from helpers import tiny_spec

from iteration_heads.runs import (
    RunResult,
    copy_spec,
    finished,
    paper_spec,
    polynomial_spec,
    run,
    run_all,
    transfer_spec,
)
from iteration_heads.runs.results import format_list


def test_spec_names_and_keys_follow_the_configuration():
    a, b = polynomial_spec(0), polynomial_spec(0, positional="frozen")
    assert a.key() == polynomial_spec(0).key() and a.key() != b.key()
    assert a.name() == "polynomial-cot-d64-L8-2x2-s0-e200"
    assert b.name() == "polynomial-cot-d64-L8-2x2-frozen-s0-e200"
    child = transfer_spec(a, epochs=10, trainable=None)
    assert child.name() == "parity-cot-d64-L8-2x2-s0-e10-from-" + a.name()
    assert child.key() != transfer_spec(b, epochs=10, trainable=None).key()


def test_the_paper_spec_is_the_shipped_paper_model_and_the_old_default():
    # the paper's settings hash to the key of the runs made before the recipe was the default
    spec = paper_spec(0)
    assert (spec.model.n_heads, spec.train.lr, spec.train.warmup_steps) == (1, 3e-4, 0)
    assert "warmup_steps" not in spec.to_dict()["train"]
    assert "residual" not in spec.to_dict()["model"]
    assert spec.name() == "polynomial-cot-d64-L8-2x1-s0-e200"
    assert spec.key() != polynomial_spec(0).key()


def test_run_reads_back_a_finished_run_without_training(tmp_path):
    first = run(copy_spec(), tmp_path)
    assert finished(copy_spec(), tmp_path)
    weights = copy_spec().directory(tmp_path) / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = run(copy_spec(), tmp_path)
    assert weights.stat().st_mtime_ns == stamp and again.summary == first.summary
    assert isinstance(again, RunResult) and again.to_dict() == first.to_dict()
    assert copy_spec().result(tmp_path).curve[-1]["epoch"] == 12
    assert first.epochs == 12 and first.accuracy == 1.0 and not first.has_circuit
    assert format_list(first.test["iteration_peakiness"]) == "[0.08, 1.00]"
    assert repr(first).startswith("copy-cot-d32-L6-2x1-s0-e12: accuracy 1.000")


def test_transfer_spec_fine_tunes_the_second_mlp_on_parity():
    spec = transfer_spec(polynomial_spec(2), epochs=20, trainable=("blocks.1.mlp",))
    assert spec.data.task == "parity" and spec.data.seed == 2
    assert spec.train.trainable == ("blocks.1.mlp",) and spec.train.eval_every == 1
    assert spec.model == spec.source.model
    assert "only-blocks.1.mlp" in spec.name()


def test_run_all_trains_sources_first_and_caches(tmp_path):
    source = tiny_spec()
    child = transfer_spec(source, epochs=1, trainable=("blocks.1.mlp",))
    lines = []
    run_all([child], tmp_path, jobs=2, log=lines.append)
    assert lines[0].startswith("2 runs to train")
    assert len(lines) == 3 and source.name() in lines[1] and child.name() in lines[2]
    directory = child.directory(tmp_path)
    meta = json.loads((directory / "metadata.json").read_text())
    assert meta["source"] == source.name() and meta["task"] == "parity"
    assert meta["train"]["trainable"] == ["blocks.1.mlp"]
    assert json.loads((directory / "detect.json").read_text())["verdict"]
    again = []
    run_all([child], tmp_path, jobs=2, log=again.append)
    assert again == []  # cached


def test_only_the_second_mlp_changes_when_fine_tuning_it(tmp_path):
    from safetensors.torch import load_file

    source = tiny_spec()
    child = transfer_spec(source, epochs=1, trainable=("blocks.1.mlp",))
    run_all([child], tmp_path)
    before = load_file(str(source.directory(tmp_path) / "model.safetensors"))
    after = load_file(str(child.directory(tmp_path) / "model.safetensors"))
    changed = sorted(k for k in before if not (before[k] == after[k]).all())
    assert changed and all(k.startswith("blocks.1.mlp.") for k in changed), changed


def test_a_resumed_run_counts_the_time_of_the_processes_before_it(tmp_path):
    """A run killed part-way and resumed: ``wall.json`` (the sweep tables' ``seconds``) holds
    the time its history recorded before the resume plus the resuming process's, not the last
    process's alone. Simulated exactly: a finished run is made unfinished again (``wall.json``
    removed) with 1000 s more in its history, as if an earlier process had spent them."""
    from iteration_heads.runs.results import WALL_FILE
    from iteration_heads.runs.specs import recorded_seconds, train_run

    spec = tiny_spec()
    train_run(spec, tmp_path)
    folder = spec.directory(tmp_path)
    history = folder / "history.jsonl"
    records = [json.loads(line) for line in history.read_text().splitlines()]
    first = json.loads((folder / WALL_FILE).read_text())["seconds"]
    assert first >= recorded_seconds(folder) > 0  # one process: its own time covers the history
    for record in records:
        record["train_seconds"] += 1000.0
    history.write_text("".join(json.dumps(record) + "\n" for record in records))
    (folder / WALL_FILE).unlink()
    assert not finished(spec, tmp_path)
    earlier = recorded_seconds(folder)
    assert earlier > 1000.0
    train_run(spec, tmp_path)  # resumes at its last checkpoint: nothing left to train
    assert finished(spec, tmp_path)
    wall = json.loads((folder / WALL_FILE).read_text())["seconds"]
    assert earlier < wall < earlier + first + 60  # the earlier time once, plus this process's


def test_recorded_seconds_of_a_folder_without_history_is_zero(tmp_path):
    from iteration_heads.runs.specs import recorded_seconds

    assert recorded_seconds(tmp_path) == 0.0
    assert recorded_seconds(tmp_path / "missing") == 0.0
