"""train_seeds: K seeds stacked in one process equal K separate runs of train."""

import json
import math
from dataclasses import replace

import pytest
import torch

from iteration_heads import DataConfig, IterationHeadsError, ModelConfig, build_model, make_dataset
from iteration_heads.model import load, model_metadata
from iteration_heads.model.fast_forward import Weights, forward
from iteration_heads.training import TrainConfig, read_history, train
from iteration_heads.training import batched as batched_module
from iteration_heads.training import loop as loop_module
from iteration_heads.training.batched import train_seeds

MC = ModelConfig(d_model=16, max_len=4)
DC = DataConfig(task="copy", max_len=4, n_train=64, n_test=32)
TC = TrainConfig(epochs=3, eval_every=1, batch_size=32, lr=3e-3)  # dropout 0.1, shuffled
SEEDS = [0, 1, 2]
TOL = 1e-5


def separate(seed, config=TC, *, train_seed=None, **kwargs):
    """What one process per seed gives: train() on seed's model and data."""
    model = build_model(replace(MC, seed=seed))
    data = make_dataset(replace(DC, seed=seed), MC.layout)
    config = replace(config, seed=seed if train_seed is None else train_seed)
    return model, train(model, data, config, progress=False, **kwargs)


def close(a, b, path="record"):
    """Histories equal up to float tolerance (timings ignored); raises naming the first gap."""
    if isinstance(a, dict):
        keys = {k for k in a if not k.endswith("seconds")}
        assert keys == {k for k in b if not k.endswith("seconds")}, path
        for key in keys:
            close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, (bool, type(None))):
        assert math.isclose(a, b, rel_tol=TOL, abs_tol=TOL), (path, a, b)
    else:
        assert a == b, (path, a, b)


def weight_gaps(model_a, model_b):
    """Largest difference of any weight relative to its tensor's largest magnitude (key biases
    apart), and the largest absolute difference of the attention key biases."""
    a, b = model_a.state_dict(), model_b.state_dict()
    assert a.keys() == b.keys()
    rel = max(
        float((a[n] - b[n]).abs().max() / a[n].abs().max().clamp_min(1e-12))
        for n in a
        if not n.endswith("attn.k.bias")
    )
    key_bias = max(float((a[n] - b[n]).abs().max()) for n in a if n.endswith("attn.k.bias"))
    return rel, key_bias


def names(folder):
    """The files of a run directory, relative to it (the lock files apart)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "lock" not in p.name)


def steps(config):
    n = len(make_dataset(DC, MC.layout).train)
    return config.epochs * math.ceil(n / config.batch_size)


@pytest.fixture(scope="module")
def batched():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield train_seeds(MC, DC, TC, SEEDS)
    finally:
        torch.set_num_threads(threads)  # the other tests run at the suite's thread count


def test_each_seed_equals_its_separate_run_with_dropout(batched):
    for seed, (model, history) in zip(SEEDS, batched, strict=True):
        ref_model, ref_history = separate(seed)
        assert [r["epoch"] for r in history] == [0, 1, 2, 3]
        close(history, ref_history)
        rel, key_bias = weight_gaps(ref_model, model)
        assert rel < TOL, (seed, rel)
        # key biases: zero gradient in exact arithmetic, Adam steps on rounding noise (<= lr)
        assert key_bias <= TC.lr * steps(TC), (seed, key_bias)
        tokens = make_dataset(replace(DC, seed=seed), MC.layout).test.tokens
        with torch.no_grad():
            logits = forward(Weights.of(model, MC), tokens)[0]
            ref_logits = forward(Weights.of(ref_model, MC), tokens)[0]
        assert torch.allclose(logits, ref_logits, rtol=TOL, atol=TOL)
        assert model_metadata(model)["seed"] == seed
    losses = [history[1]["train_loss"] for _, history in batched]
    assert len(set(losses)) == len(SEEDS)  # the seeds are distinct runs


def test_another_seeds_masks_or_batch_order_would_not_match(batched):
    # seed 1's model and data with seed 0's dropout masks and batch order
    _, swapped = separate(1, train_seed=0)
    # seed 1's batch order without dropout masks
    _, no_dropout = separate(1, replace(TC, embedding_dropout=0.0))
    mine = batched[1][1][1]["train_loss"]
    for other in (swapped, no_dropout):
        assert abs(other[1]["train_loss"] - mine) > 100 * TOL * mine


def test_sgd_trainable_subset_step_budget_warmup_without_dropout_equals_separate_runs():
    config = replace(
        TC,
        optimizer="sgd",
        momentum=0.9,
        embedding_dropout=0.0,
        trainable=("blocks.1.mlp",),
        epochs=4,
        max_steps=12,  # 8 batches per epoch: ends after epoch 2
        warmup_steps=10,  # the learning rate rises over the first 10 steps
    )
    runs = train_seeds(MC, DC, config, [3, 4], progress=True)
    for seed, (model, history) in zip([3, 4], runs, strict=True):
        ref_model, ref_history = separate(seed, config)
        assert [(r["epoch"], r["step"]) for r in history] == [(0, 0), (1, 8), (2, 16)]
        close(history, ref_history)
        assert weight_gaps(ref_model, model)[0] < TOL
        untouched = build_model(replace(MC, seed=seed)).state_dict()
        assert torch.equal(
            model.state_dict()["blocks.0.mlp.in.weight"], untouched["blocks.0.mlp.in.weight"]
        )
    # seed 3's model and data, seed 4's batch order: another loss
    _, swapped = separate(3, config, train_seed=4)
    assert abs(swapped[1]["train_loss"] - runs[0][1][1]["train_loss"]) > 100 * TOL


def test_stop_at_target_stops_each_seed_where_its_run_would(monkeypatch):
    reached = lambda summary: summary["accuracy"] >= 0.2  # noqa: E731
    monkeypatch.setattr(batched_module, "at_target", reached)
    monkeypatch.setattr(loop_module, "at_target", reached)
    config = replace(TC, epochs=4, stop_at_target=True)
    runs = train_seeds(MC, DC, config, SEEDS)
    ends = []
    for seed, (model, history) in zip(SEEDS, runs, strict=True):
        ref_model, ref_history = separate(seed, config)
        close(history, ref_history)
        assert weight_gaps(ref_model, model)[0] < TOL
        ends.append(history[-1]["epoch"])
    assert len(set(ends)) > 1 and min(ends) < 4, ends  # seeds stopped at different epochs


def test_run_directories_load_equal_and_resume_like_separate_runs(tmp_path):
    config = replace(TC, checkpoint_every=2)
    folders = [tmp_path / "a", tmp_path / "b"]
    runs = train_seeds(MC, DC, config, [0, 1], out_dirs=folders)
    for seed, folder, (model, history) in zip([0, 1], folders, runs, strict=True):
        ref_folder = tmp_path / f"separate-{seed}"
        separate(seed, config, out_dir=ref_folder)
        assert names(folder) == names(ref_folder)  # checkpoints of epochs 2 and 3, final model
        assert read_history(folder) == json.loads(json.dumps(history))
        close(read_history(folder), read_history(ref_folder))
        run = json.loads((folder / "run.json").read_text())
        assert run == json.loads((ref_folder / "run.json").read_text())
        loaded = load(folder)
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
        assert model_metadata(loaded)["seed"] == seed
        # the final checkpoint holds the seed's optimiser: resuming continues its run
        longer = replace(config, epochs=5, seed=seed)
        data = make_dataset(replace(DC, seed=seed), MC.layout)
        resumed = train(
            build_model(replace(MC, seed=seed)),
            data,
            longer,
            out_dir=folder,
            resume=True,
            progress=False,
        )
        _, straight = separate(seed, replace(config, epochs=5))
        close(resumed, straight)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"seeds": []}, r"seeds=\[\], expected a non-empty list"),
        ({"seeds": [1, 1]}, "repeat a seed"),
        ({"seeds": [0, -1]}, r"seeds\[1\]=-1"),
        ({"seeds": 3}, "seeds=3"),
        (
            {"data_config": make_dataset(DC, MC.layout)},
            "data_config must be a DataConfig, not Dataset",
        ),
        ({"model_config": {"d_model": 16}}, "model_config must be a ModelConfig, not dict"),
        ({"data_config": replace(DC, max_len=6)}, "needs 15 positions"),
        ({"out_dirs": ["x"]}, "out_dirs has 1 folders for 2 seeds"),
        ({"out_dirs": "x"}, "expected a list of folders"),
        ({"progress": 1}, "progress=1"),
    ],
)
def test_bad_arguments_are_one_line_errors(arguments, message):
    kwargs = {"model_config": MC, "data_config": DC, "train_config": TC, "seeds": [0, 1]}
    kwargs.update(arguments)
    with pytest.raises(IterationHeadsError, match=message) as err:
        train_seeds(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_run_folders_write_nothing(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    fresh = tmp_path / "fresh"
    for folders, message in (
        ([fresh, busy], "not a run's"),
        ([fresh, fresh], "name a folder twice"),
    ):
        with pytest.raises(IterationHeadsError, match=message):
            train_seeds(MC, DC, TC, [0, 1], out_dirs=folders)
        assert not fresh.exists()
        assert [p.name for p in busy.iterdir()] == ["notes.txt"]


def test_adamw_with_weight_decay_equals_separate_runs():
    config = replace(TC, optimizer="adamw", weight_decay=0.1, epochs=2)
    runs = train_seeds(MC, DC, config, [5, 6], progress=False)
    for seed, (model, history) in zip([5, 6], runs, strict=True):
        ref_model, ref_history = separate(seed, config)
        close(history, ref_history)
        assert weight_gaps(ref_model, model)[0] < TOL
