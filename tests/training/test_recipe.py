import pytest

from iteration_heads import ModelConfig, TrainConfig, recipe_model_config, recipe_train_config
from iteration_heads.errors import IterationHeadsError
from iteration_heads.experiments import EXPERIMENTS
from iteration_heads.training.recipe import RECIPE_HEADS_PER_LAYER, RECIPE_LR, RECIPE_WARMUP_STEPS


def test_the_recipe_sets_heads_learning_rate_and_warm_up_only():
    model, train = recipe_model_config(d_model=64, max_len=8), recipe_train_config(epochs=100)
    assert (model.n_heads, model.d_head) == (RECIPE_HEADS_PER_LAYER, 64 // RECIPE_HEADS_PER_LAYER)
    assert (train.lr, train.warmup_steps) == (RECIPE_LR, RECIPE_WARMUP_STEPS)
    # everything else is the dataclass default
    assert model == ModelConfig(d_model=64, max_len=8, n_heads=RECIPE_HEADS_PER_LAYER)
    assert train == TrainConfig(epochs=100, lr=RECIPE_LR, warmup_steps=RECIPE_WARMUP_STEPS)
    # the warm-up ramps linearly to the recipe's rate
    assert train.learning_rate(0) == pytest.approx(RECIPE_LR / RECIPE_WARMUP_STEPS)
    assert train.learning_rate(RECIPE_WARMUP_STEPS - 1) == train.learning_rate(10_000) == RECIPE_LR


def test_the_dataclass_defaults_stay_the_papers_so_old_configs_keep_their_meaning():
    assert (ModelConfig().n_heads, TrainConfig().lr, TrainConfig().warmup_steps) == (1, 3e-4, 0)
    old = TrainConfig(epochs=5).to_dict()
    assert "warmup_steps" not in old and TrainConfig.from_dict(old).warmup_steps == 0


def test_fields_override_the_recipe_and_are_checked():
    assert recipe_model_config(n_heads=1).n_heads == 1
    assert recipe_train_config(lr=3e-4, warmup_steps=0) == TrainConfig(lr=3e-4)
    with pytest.raises(IterationHeadsError, match="d_model=63 is not divisible by n_heads=2"):
        recipe_model_config(d_model=63)
    with pytest.raises(IterationHeadsError, match="warmup_steps"):
        recipe_train_config(warmup_steps=-1)


def test_every_trained_from_scratch_experiment_uses_the_recipe():
    for experiment in EXPERIMENTS.values():
        for specs in experiment.specs(seeds=(0,)).values():
            for spec in specs:
                if spec.source is None:  # trained from scratch
                    assert spec.train.lr == RECIPE_LR, spec.name()
                    assert spec.train.warmup_steps == RECIPE_WARMUP_STEPS, spec.name()
                    assert spec.model.n_heads == RECIPE_HEADS_PER_LAYER, spec.name()
                else:  # fine-tuned with the paper's optimiser
                    assert (spec.train.lr, spec.train.warmup_steps) == (3e-4, 0), spec.name()
