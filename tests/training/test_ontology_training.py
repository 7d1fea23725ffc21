"""Training on the ontology task: the evaluation matches a plain forward pass token by token,
a run resumes exactly, and a model of the wrong size is refused before anything is written."""

from __future__ import annotations

import pytest
import torch

from iteration_heads import ModelConfig, TrainConfig, build_model, train
from iteration_heads.errors import IterationHeadsError
from iteration_heads.tasks.data import IGNORE
from iteration_heads.tasks.ontology import SUBTASKS, OntologyConfig
from iteration_heads.tasks.ontology_data import OntologyDataConfig, make_ontology_dataset
from iteration_heads.training.ontology_evaluation import evaluate_ontology
from iteration_heads.training.run_dir import read_history

CONFIG = OntologyDataConfig(
    OntologyConfig(hops=(1, 2), n_concepts=8, world_concepts=3, world_fraction=0.5),
    n_train=64,
    n_test=16,
)


@pytest.fixture(scope="module")
def data():
    return make_ontology_dataset(CONFIG)


def small_model(data, **changes):
    options = {"d_model": 16, "n_layers": 1, "d_vocab_": data.d_vocab, "n_ctx_": data.width}
    return build_model(ModelConfig(**{**options, **changes}))


def test_evaluation_matches_a_plain_forward_pass(data) -> None:
    model = small_model(data, n_layers=2, seed=3).eval()
    problems = data.tests["world"]
    result = evaluate_ontology(model, problems, batch_size=5)
    with torch.no_grad():
        predicted = model(problems.tokens).argmax(-1)
    scored = problems.targets != IGNORE
    right = (predicted == problems.targets) & scored
    assert torch.equal(result.exact, (right | ~scored).all(1))
    for code, name in enumerate(SUBTASKS):
        mask = problems.subtasks == code
        if mask.any():
            assert result.per_subtask()[name] == pytest.approx(float(right[mask].float().mean()))
    for hops, value in result.per_hop().items():
        assert value == pytest.approx(float(result.exact[problems.hops == hops].float().mean()))


def test_a_resumed_ontology_run_continues_exactly(data, tmp_path) -> None:
    config = TrainConfig(epochs=2, eval_every=1, checkpoint_every=1, batch_size=16)
    straight = small_model(data)
    train(straight, data, config, out_dir=tmp_path / "straight", progress=False)
    first = small_model(data)
    train(
        first,
        data,
        TrainConfig(**{**config.to_dict(), "epochs": 1}),
        out_dir=tmp_path / "r",
        progress=False,
    )
    resumed = small_model(data)
    train(resumed, data, config, out_dir=tmp_path / "r", resume=True, progress=False)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    a, b = read_history(tmp_path / "straight"), read_history(tmp_path / "r")
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k} for r in h]  # noqa: E731
    assert strip(a) == strip(b)
    assert set(a[-1]["test"]["splits"]) == {"world", "contradicting"}
    assert set(a[-1]["test"]["summary"]["per_hop"]) == {"1", "2"}


def test_a_model_of_the_wrong_size_is_refused_before_writing(data, tmp_path) -> None:
    model = small_model(data, d_vocab_=data.d_vocab + 1)
    with pytest.raises(IterationHeadsError, match=f"needs d_vocab={data.d_vocab} and n_ctx"):
        train(model, data, TrainConfig(epochs=1), out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(IterationHeadsError, match="exceed the model's n_ctx"):
        evaluate_ontology(small_model(data, n_ctx_=8), data.tests["fictional"])
