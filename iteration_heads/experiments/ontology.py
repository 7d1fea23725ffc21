"""The multi-hop reasoning experiment: a 4-layer model trained on the ontology task (fictional
ontologies, 1-3 hops, distractors, a world it must memorise and a few problems that contradict
it), the model the pathway analyses study (docs/guide/pathways.md).

:func:`train_ontology` trains it into a run directory (resumable, like every run); the zoo's
``ontology`` model is that run.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from iteration_heads.model.transformer import ModelConfig, build_model
from iteration_heads.tasks.ontology import OntologyConfig
from iteration_heads.tasks.ontology_data import (
    OntologyDataConfig,
    OntologyDataset,
    make_ontology_dataset,
)
from iteration_heads.training.loop import TrainConfig, train

ONTOLOGY_EXPERIMENT = "ontology"
"""Its name for ``iteration-heads reproduce`` and its files in ``docs/results/``."""

ONTOLOGY_DATA = OntologyDataConfig(
    OntologyConfig(
        hops=(1, 2, 3),
        distractors=2,
        n_concepts=16,
        n_entities=6,
        n_properties=8,
        world_concepts=6,  # two world chains of three concepts
        world_fraction=0.4,
        p_stated=0.5,
        p_contradict=0.15,
    ),
    n_train=20_000,
    n_test=500,
)
"""The experiment's data: 40 tokens, problems of up to 61 positions."""

ONTOLOGY_TRAIN = TrainConfig(
    epochs=40, lr=1e-3, batch_size=64, eval_every=2, checkpoint_every=2, stop_at_target=True
)
"""Adam 1e-3, batch 64, at most 40 epochs (stops at 99 % held-out exact match)."""


def ontology_model_config(data: OntologyDataset, *, seed: int = 0) -> ModelConfig:
    """The experiment's model for ``data``: 4 layers x 4 heads, d_model 64.

    Example:
        >>> data = make_ontology_dataset(OntologyDataConfig(n_train=32, n_test=8))
        >>> ontology_model_config(data).n_layers
        4
    """
    return ModelConfig(
        d_model=64, n_layers=4, n_heads=4, d_vocab_=data.d_vocab, n_ctx_=data.width, seed=seed
    )


def train_ontology(
    out_dir: str | os.PathLike[str],
    *,
    data_config: OntologyDataConfig = ONTOLOGY_DATA,
    train_config: TrainConfig = ONTOLOGY_TRAIN,
    resume: bool = False,
    progress: bool = True,
) -> torch.nn.Module:
    """Train the experiment's model into the run directory ``out_dir`` and return it.

    Example:
        >>> import tempfile
        >>> small = OntologyDataConfig(OntologyConfig(hops=(1,)), n_train=32, n_test=8)
        >>> model = train_ontology(tempfile.mkdtemp(), data_config=small,
        ...                        train_config=TrainConfig(epochs=1), progress=False)
        >>> model.cfg.n_layers
        4
    """
    data = make_ontology_dataset(data_config)
    model = build_model(ontology_model_config(data, seed=train_config.seed))
    train(model, data, train_config, out_dir=Path(out_dir), resume=resume, progress=progress)
    return model
