import json

import pytest
import torch
from helpers import tiny_config, tiny_model

from iteration_heads import IterationHeadsError, build_model
from iteration_heads.model import load, model_config, model_metadata, save


def test_round_trip_is_exact(tmp_path):
    model = tiny_model(n_heads=2, positional="frozen")
    with torch.no_grad():
        model.blocks[1].mlp.out.weight.add_(0.123)
    save(model, tmp_path, metadata={"task": "polynomial"})
    again = load(tmp_path)
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert model_config(again) == model_config(model)
    assert not again.pos_embed.weight.requires_grad
    meta = model_metadata(again)
    assert meta["task"] == "polynomial" and meta["format_version"] == 1
    assert set(meta["versions"]) == {"iteration_heads", "transformer_lens", "torch", "python"}
    tokens = torch.randint(0, 16, (2, 9))
    assert torch.equal(model(tokens), again(tokens))


def test_files_are_safetensors_and_json(tmp_path):
    save(tiny_model(), tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes()[8:9] == b"{"  # safetensors header
    json.loads((tmp_path / "config.json").read_text())


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda p: (p / "model.safetensors").write_bytes(b"not a safetensors file"),
            "corrupt weights",
        ),
        (lambda p: (p / "model.safetensors").unlink(), "missing file"),
        (lambda p: (p / "config.json").write_text("{ truncated"), "corrupt JSON"),
        (lambda p: (p / "metadata.json").unlink(), "missing file"),
        (
            lambda p: (p / "config.json").write_text(
                json.dumps({**tiny_config().to_dict(), "d_model": 48})
            ),
            "do not match config.json",
        ),
        (
            lambda p: (p / "config.json").write_text(
                json.dumps({**tiny_config().to_dict(), "n_layers": 3})
            ),
            r"missing \['blocks.2",
        ),
        (
            lambda p: (p / "config.json").write_text(json.dumps({"d_modle": 3})),
            "unknown ModelConfig fields",
        ),
    ],
)
def test_damaged_checkpoints_raise(tmp_path, damage, message):
    save(build_model(tiny_config()), tmp_path)
    damage(tmp_path)
    with pytest.raises(IterationHeadsError, match=message):
        load(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(IterationHeadsError, match="does not exist"):
        load(tmp_path / "nowhere")
