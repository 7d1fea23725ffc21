"""HuggingFace checkpoint folders load strictly: a config.json that disagrees with the weights
(layers, a missing tensor, a shape), NaN weights, empty or truncated safetensors, architectures
without attention hooks, and arbitrary JSON in config.json are one-line errors, never a model
with random or truncated layers, and never another exception. Tiny random models, no network."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers as hf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from iteration_heads import IterationHeadsError
from iteration_heads.model import load_hf_folder
from iteration_heads.model.hf import SUPPORTED_MODEL_TYPES, weight_shapes

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
SMALL |= {"intermediate_size": 64, "max_position_embeddings": 24, "vocab_size": 20}


def tiny(architecture: str) -> hf.PreTrainedModel:
    torch.manual_seed(0)
    if architecture == "gpt2":
        config = hf.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=24, vocab_size=20)
        return hf.GPT2LMHeadModel(config)
    if architecture == "llama":
        return hf.LlamaForCausalLM(hf.LlamaConfig(num_key_value_heads=2, **SMALL))
    return hf.Qwen2ForCausalLM(hf.Qwen2Config(num_key_value_heads=2, **SMALL))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    folders = {}
    for architecture in ("gpt2", "llama", "qwen2"):
        folders[architecture] = root / architecture
        tiny(architecture).save_pretrained(folders[architecture])
    return folders


def variant(saved: dict[str, Path], tmp_path: Path, architecture: str = "gpt2") -> Path:
    folder = tmp_path / f"{architecture}_variant"
    shutil.copytree(saved[architecture], folder)
    return folder


def edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def edit_weights(folder: Path, edit) -> None:
    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def refused(folder: Path, pattern: str) -> str:
    with pytest.raises(IterationHeadsError, match=pattern) as caught:
        load_hf_folder(folder)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("architecture", ["gpt2", "llama", "qwen2"])
def test_a_matching_folder_loads_with_its_own_weights(saved, architecture) -> None:
    bridge, tokenizer = load_hf_folder(saved[architecture])
    assert tokenizer is None and bridge.cfg.n_layers == 2 and bridge.cfg.n_heads == 2
    reference = tiny(architecture).eval()
    tokens = torch.tensor([[1, 5, 7, 3]])
    with torch.no_grad():
        assert torch.allclose(bridge(tokens), reference(tokens).logits, atol=1e-4)


def test_more_layers_in_the_config_than_in_the_weights(saved, tmp_path) -> None:
    folder = variant(saved, tmp_path)
    edit_config(folder, n_layer=5)  # transformers would initialise layers 2-4 at random
    refused(folder, r"lack tensor 'transformer\.h\.2\.")


def test_fewer_layers_in_the_config_than_in_the_weights(saved, tmp_path) -> None:
    folder = variant(saved, tmp_path, "llama")
    edit_config(folder, num_hidden_layers=1)  # transformers would drop layer 1
    refused(folder, r"hold tensor 'model\.layers\.1\.")


def test_a_tensor_missing_from_the_weights(saved, tmp_path) -> None:
    folder = variant(saved, tmp_path, "qwen2")
    edit_weights(folder, lambda w: w.pop("model.layers.1.self_attn.q_proj.bias"))
    refused(folder, r"lack tensor 'model\.layers\.1\.self_attn\.q_proj\.bias' \(1 missing")


def test_a_tensor_of_the_wrong_shape(saved, tmp_path) -> None:
    folder = variant(saved, tmp_path)
    edit_config(folder, n_positions=30)
    refused(folder, r"'transformer\.wpe\.weight' has shape \[24, 32\] .* makes it \[30, 32\]")


def test_nan_weights(saved, tmp_path) -> None:
    folder = variant(saved, tmp_path, "llama")
    edit_weights(folder, lambda w: w["model.norm.weight"].__setitem__(3, float("nan")))
    refused(folder, r"'model\.norm\.weight' holds 1 NaN or infinite")


@pytest.mark.parametrize("cut", ["empty", "half", "header only", "garbage"])
def test_unreadable_weights(saved, tmp_path, cut) -> None:
    folder = variant(saved, tmp_path)
    file = folder / "model.safetensors"
    data = file.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    new = {"empty": b"", "half": data[: len(data) // 2], "header only": data[:header]}
    file.write_bytes(new.get(cut, b"\x07" * 64))
    refused(folder, r"model\.safetensors' is not a readable safetensors file")


def test_no_weights_and_a_broken_index(saved, tmp_path) -> None:
    folder = variant(saved, tmp_path)
    (folder / "model.safetensors").unlink()
    refused(folder, "holds no model.safetensors")
    (folder / "model.safetensors.index.json").write_text('{"weight_map": 3}')
    refused(folder, "is not a safetensors index")


def test_sharded_weights_load(saved, tmp_path) -> None:
    folder = tmp_path / "sharded"
    tiny("gpt2").save_pretrained(folder, max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").is_file()
    assert weight_shapes(folder) == weight_shapes(saved["gpt2"])
    assert load_hf_folder(folder)[0].cfg.n_layers == 2


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('{"model_type": "bert"}', r"model_type 'bert' is not supported: expected one of gemma"),
        ("{}", "model_type None is not supported"),
        ("[1, 2]", "holds a JSON list: expected an object"),
        ("{not json", "is not readable JSON"),
    ],
)
def test_unsupported_or_unreadable_config(saved, tmp_path, text, pattern) -> None:
    folder = variant(saved, tmp_path)
    (folder / "config.json").write_text(text)
    refused(folder, pattern)


def test_an_encoder_is_refused_by_name(tmp_path) -> None:
    config = hf.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=20
    )
    hf.BertForMaskedLM(config).save_pretrained(tmp_path)
    message = refused(tmp_path, "model_type 'bert' is not supported")
    assert all(kind in message for kind in SUPPORTED_MODEL_TYPES)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = st.sampled_from(
    ["n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "n_inner", "model_type",
     "activation_function", "layer_norm_epsilon", "architectures", "tie_word_embeddings",
     "scale_attn_weights", "rope_scaling", "dtype", "bos_token_id", "n_ctx", "new_field"]
)  # fmt: skip


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=st.dictionaries(FIELDS, JSON, min_size=1, max_size=2))
def test_arbitrary_json_in_config_is_a_model_or_a_clear_error(saved, tmp_path, changes) -> None:
    folder = tmp_path / "fuzzed"
    if not folder.exists():
        shutil.copytree(saved["gpt2"], folder)
    base = json.loads((saved["gpt2"] / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**base, **changes}))
    try:
        bridge, _ = load_hf_folder(folder)
    except IterationHeadsError as err:
        assert "\n" not in str(err)
    else:
        assert bridge.cfg.n_layers == 2
        assert all(bool(torch.isfinite(p).all()) for p in bridge.parameters())
