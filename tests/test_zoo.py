import json
import shutil

import pytest

from iteration_heads import DataConfig, detect, make_dataset, zoo
from iteration_heads.cli import main
from iteration_heads.errors import IterationHeadsError
from iteration_heads.model import model_config, model_metadata
from iteration_heads.tasks import PROBLEM_KINDS, OntologyDataConfig, make_ontology_problems
from iteration_heads.tasks.ontology_data import held_out, prompts_of
from iteration_heads.training import evaluate, evaluate_ontology

SHIPPED = zoo.names()
ITERATIVE = [name for name in SHIPPED if name not in zoo.ONTOLOGY_MODELS]


def test_every_shipped_model_is_small_and_complete():
    assert SHIPPED == [
        "polynomial",
        "polynomial_paper",
        "parity_transfer",
        "copy",
        "polynomial_nocot",
        "polynomial_3x2",
        "ontology",
    ]
    total = 0
    for name in SHIPPED:
        folder = zoo.path(name)
        files = sorted(p.name for p in folder.iterdir())
        assert files == ["config.json", "history.jsonl", "metadata.json", "model.safetensors"]
        total += sum(p.stat().st_size for p in folder.iterdir())
    assert total < 4e6  # a few MB at most in all


@pytest.mark.parametrize("name", ITERATIVE)
def test_shipped_model_reaches_its_recorded_accuracy_on_fresh_data(name):
    model = zoo.load(name)
    meta = model_metadata(model)
    recorded = zoo.info(name)["test_accuracy"]
    config = DataConfig.from_dict({**meta["data"], "seed": 12345, "n_train": 1, "n_test": 512})
    fresh = make_dataset(config, model_config(model).layout).test
    accuracy = evaluate(model, fresh).summary()["accuracy"]
    assert accuracy == pytest.approx(recorded, abs=0.03), (name, accuracy, recorded)
    if zoo.ENTRIES[name].has_iteration_circuit:
        assert accuracy >= 0.98


def test_ontology_model_reaches_its_accuracy_on_fresh_held_out_problems():
    model = zoo.load("ontology")
    meta = model_metadata(model)
    recorded = zoo.info("ontology")["test_accuracy"]
    assert recorded >= 0.99 and meta["task"] == "ontology"
    config = OntologyDataConfig.from_dict(meta["data"])
    seen = prompts_of(
        make_ontology_problems(config.ontology, config.n_train, seed=config.seed).tokens
    )
    for kind in PROBLEM_KINDS:  # new problems, none of them seen in training
        drawn = make_ontology_problems(config.ontology, 400, seed=12345, kind=kind)
        fresh = held_out(drawn, seen)
        result = evaluate_ontology(model, fresh)
        assert result.summary()["accuracy"] >= 0.95, (kind, result.format())
        assert min(result.per_hop().values()) >= 0.9, (kind, result.format())


@pytest.mark.parametrize("name", ITERATIVE)
def test_shipped_model_detection_verdict(name):
    report = detect(zoo.load(name), n_probes=512)
    assert report.has_iteration_circuit == zoo.info(name)["has_iteration_circuit"], report.verdict
    if name == "polynomial_3x2":  # the pattern is spread over several heads
        assert len(report.found("eoi")) + len(report.found("iteration")) > 2, report.verdict


def test_the_recipe_and_the_papers_settings_ship_side_by_side():
    recipe, paper = (zoo.load(name) for name in ("polynomial", "polynomial_paper"))
    assert (model_config(recipe).n_heads, model_config(paper).n_heads) == (2, 1)
    train = {
        name: model_metadata(zoo.load(name))["train"] for name in ("polynomial", "polynomial_paper")
    }
    assert (train["polynomial"]["lr"], train["polynomial"]["warmup_steps"]) == (1e-3, 200)
    assert (
        train["polynomial_paper"]["lr"] == 3e-4 and "warmup_steps" not in train["polynomial_paper"]
    )
    # both form the circuit; the recipe's seed 0 does it three times sooner
    assert zoo.info("polynomial")["epochs"] * 3 <= zoo.info("polynomial_paper")["epochs"]
    report = detect(recipe, n_probes=512)
    assert report.found("eoi") and report.found("iteration"), report.verdict


def test_info_records_how_each_model_was_made():
    for name in SHIPPED:
        entry = zoo.info(name)
        assert entry["command"] == f"iteration-heads zoo --build {name}"
        assert entry["seed"] == 0 and entry["epochs"] >= 1
        history = (zoo.path(name) / "history.jsonl").read_text().splitlines()
        assert json.loads(history[-1])["epoch"] == entry["epochs"]
    assert zoo.info("parity_transfer")["source"] == "polynomial-cot-d64-L8-2x2-s0-e200"
    assert zoo.info("parity_transfer")["task"] == "parity"


def test_recipes_match_the_shipped_configs():
    for name, spec in zoo.recipes().items():
        meta = json.loads((zoo.path(name) / "metadata.json").read_text())
        assert meta["spec"] == spec.to_dict(), name


def test_unknown_or_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(IterationHeadsError, match="unknown zoo model 'gpt5'; shipped models"):
        zoo.load("gpt5")
    monkeypatch.setattr(zoo, "SHIPPED_MODELS_DIR", tmp_path)
    with pytest.raises(IterationHeadsError, match="zoo --build polynomial"):
        zoo.load("polynomial")


def test_install_refuses_a_corrupt_run_and_keeps_the_old_model(tmp_path, monkeypatch):
    for name in SHIPPED:
        shutil.copytree(zoo.path(name), tmp_path / "zoo" / name)
    monkeypatch.setattr(zoo, "SHIPPED_MODELS_DIR", tmp_path / "zoo")
    run = tmp_path / "run"
    shutil.copytree(tmp_path / "zoo" / "copy", run)
    (run / "model.safetensors").write_bytes(b"not a safetensors file")
    before = (tmp_path / "zoo" / "copy" / "model.safetensors").read_bytes()
    with pytest.raises(IterationHeadsError, match="corrupt weights"):
        zoo.install("copy", run)
    assert (tmp_path / "zoo" / "copy" / "model.safetensors").read_bytes() == before
    (run / "history.jsonl").unlink()
    with pytest.raises(IterationHeadsError, match="lacks"):
        zoo.install("copy", run)


def test_cli_lists_the_zoo_and_accepts_shipped_names(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SHIPPED)
    assert main(["detect", "polynomial", "--n-probes", "128"]) == 0
    assert "iteration circuit: EoI head L0H1" in capsys.readouterr().out


def test_cli_fine_tunes_a_shipped_model(tmp_path, capsys):
    out = tmp_path / "ft"
    argv = ["train", "--task", "parity", "--max-len", "8", "--n-train", "64", "--n-test", "64"]
    argv += ["--init-from", "polynomial", "--trainable", "blocks.1.mlp", "--epochs", "1"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["train"]["trainable"] == ["blocks.1.mlp"] and run["data"]["task"] == "parity"
    assert run["model"] == json.loads((zoo.path("polynomial") / "config.json").read_text())
