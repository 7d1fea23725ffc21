"""The model: the paper's transformer as a TransformerLens bridge, a plain forward pass for
training, checkpoints, and HuggingFace models wrapped for analysis (docs/paper.md §3).

* :mod:`~iteration_heads.model.transformer`: :class:`ModelConfig` and :func:`build_model`;
* :mod:`~iteration_heads.model.authors`: the authors' block and initialisation on the bridge;
* :mod:`~iteration_heads.model.fast_forward`: the plain-PyTorch forward pass over the bridge's weights;
* :mod:`~iteration_heads.model.checkpoint`: save and load (config + safetensors + metadata);
* :mod:`~iteration_heads.model.hf`: the one door to TransformerLens internals for HuggingFace
  models.
"""

from iteration_heads._io import CONFIG_FILE, METADATA_FILE, WEIGHTS_FILE
from iteration_heads.model.checkpoint import (
    attach_metadata,
    data_config,
    load,
    model_directory,
    model_metadata,
    save,
    shipped_models,
)
from iteration_heads.model.fast_forward import Weights, forward
from iteration_heads.model.hf import load_hf_folder, wrap_hf_model
from iteration_heads.model.transformer import (
    ModelConfig,
    additive_residual,
    build_model,
    check_additive_residual,
    count_parameters,
    model_config,
    paper_parameter_count,
)

__all__ = [
    "CONFIG_FILE",
    "METADATA_FILE",
    "WEIGHTS_FILE",
    "ModelConfig",
    "Weights",
    "additive_residual",
    "attach_metadata",
    "build_model",
    "check_additive_residual",
    "count_parameters",
    "data_config",
    "forward",
    "load",
    "load_hf_folder",
    "model_config",
    "model_directory",
    "model_metadata",
    "paper_parameter_count",
    "save",
    "shipped_models",
    "wrap_hf_model",
]
