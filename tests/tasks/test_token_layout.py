import pytest
import torch

from iteration_heads import IterationHeadsError, TokenLayout


def test_default_layout_ids():
    layout = TokenLayout.default()
    assert layout.n_symbols == 11
    assert (layout.eoi, layout.eos) == (11, 12)
    assert [layout.task_token(t) for t in ("copy", "parity", "polynomial")] == [13, 14, 15]
    assert layout.d_vocab == 16
    assert layout.token_names()[11:] == ["<EoI>", "<EoS>", "<copy>", "<parity>", "<polynomial>"]


@pytest.mark.parametrize("length", [1, 4, 16, 32])
def test_positions(length):
    assert TokenLayout.eoi_position(length) == length + 1
    assert TokenLayout.input_position(1) == 1
    assert TokenLayout.seq_len(length) == 2 * length + 3
    assert TokenLayout.seq_len(length, cot=False) == length + 4


def test_errors_name_the_value():
    layout = TokenLayout.default()
    with pytest.raises(IterationHeadsError, match="token id 99 outside the vocabulary"):
        layout.check_tokens(torch.tensor([[1, 99]]))
    with pytest.raises(IterationHeadsError, match=r"token ids \[-1\]"):
        layout.decode([-1])
    with pytest.raises(IterationHeadsError, match="has no token in this layout"):
        TokenLayout.for_tasks(["parity"]).task_token("polynomial")
    with pytest.raises(IterationHeadsError, match="needs 'tasks'"):
        TokenLayout.from_dict({"n_symbols": 3})
