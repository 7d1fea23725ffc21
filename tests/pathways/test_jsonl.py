"""Prompts as JSON Lines: a written file reads back as the same prompts (any prompts, and prompts
from text), errors name the file and the line, and a failed write leaves nothing."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_bpe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import Prompts, read_prompts, write_prompts

TEXT = "Every wumpus is a cat. Rex is a wumpus. Rex is a"


def assert_same(a: Prompts, b: Prompts) -> None:
    for field in ("clean", "corrupted", "position", "answer", "segments", "foils", "example"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        assert x is None or (torch.equal(x, y) and x.dtype == y.dtype), field
    assert (a.segment_names, a.labels, a.info) == (b.segment_names, b.labels, b.info)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-99, 99)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def prompts(draw) -> Prompts:
    n, width = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    token = st.integers(0, 40)
    clean = torch.tensor(
        draw(st.lists(st.lists(token, min_size=width, max_size=width), min_size=n, max_size=n))
    )
    position = torch.tensor([draw(st.integers(0, width - 1)) for _ in range(n)])
    answer = torch.tensor(
        [
            int(clean[i, p + 1]) if p + 1 < width and draw(st.booleans()) else draw(token)
            for i, p in enumerate(position.tolist())
        ]
    )
    names = tuple(draw(st.lists(st.text(min_size=1, max_size=5), unique=True, max_size=3)))
    segments = torch.tensor(
        draw(
            st.lists(
                st.lists(st.integers(-1, len(names) - 1), min_size=width, max_size=width),
                min_size=n,
                max_size=n,
            )
        )
    )
    corrupted = None
    if draw(st.booleans()):
        corrupted = torch.tensor(
            draw(st.lists(st.lists(token, min_size=width, max_size=width), min_size=n, max_size=n))
        )
    foils = None
    if draw(st.booleans()):
        k = draw(st.integers(1, 3))
        rows = []
        for i in range(n):
            choices = [t for t in range(41) if t != int(answer[i])]
            row = draw(st.lists(st.sampled_from(choices), min_size=1 if i else k, max_size=k))
            rows.append(row + [-1] * (k - len(row)))
        foils = torch.tensor(rows)
    example = (
        torch.tensor(draw(st.lists(st.integers(0, 9), min_size=n, max_size=n)))
        if draw(st.booleans())
        else None
    )
    info = None
    if draw(st.booleans()):
        info = tuple(draw(st.dictionaries(st.text(max_size=4), JSON, max_size=3)) for _ in range(n))
    labels = tuple(draw(st.lists(st.text(max_size=6), min_size=n, max_size=n)))
    return Prompts(
        clean, corrupted, position, answer, segments, names, labels, foils, example, info
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prompts())
def test_any_prompts_survive_a_round_trip(tmp_path, original):
    path = write_prompts(original, tmp_path / "p.jsonl")
    assert_same(read_prompts(path), original)


def test_text_file_to_prompts_to_jsonl_to_the_same_prompts(tmp_path):
    tokenizer = tiny_bpe()
    source = tmp_path / "text.jsonl"
    short = TEXT[: TEXT.index(" wumpus.")]
    records = [
        {
            "text": TEXT,
            "step": {"char": len(TEXT)},
            "answer": " cat",
            "foils": [" dog"],
            "corrupted": {"span": [23, 26], "with": "Alex"},
            "info": {"hop": 2},
            "segments": [
                {"name": "facts", "span": [0, 22]},
                {"name": "question", "span": [22, len(TEXT)]},
            ],
        },
        {
            "text": short,
            "step": {"char": len(short)},
            "answer": " cat",
            "foils": [" dog", " Rex"],
            "corrupted": {"text": short.replace("Rex", "Alex")},
            "label": "copy",
        },
    ]
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    prompts = read_prompts(source, tokenizer)
    assert prompts.clean.shape[0] == 2 and prompts.info == ({"hop": 2}, {})
    written = write_prompts(prompts, tmp_path / "tokens.jsonl")
    assert_same(read_prompts(written), prompts)
    assert_same(read_prompts(written, tokenizer), prompts)  # token records ignore the BOS


def test_errors_name_the_file_and_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"tokens": [1, 2], "step": {"token": 1}}\n\n{"tokens": [1], "step": {"token": 1}}\n'
    )
    with pytest.raises(IterationHeadsError) as err:
        read_prompts(path)
    assert str(err.value) == (
        f"{str(path)!r} line 3, field 'answer': missing while the prompt ends at the step, "
        "expected the answer"
    )
    path.write_text('{"tokens": [1, 2], "step": {"token": 1}}\n{"tokens": [1, 2\n{}\n')
    with pytest.raises(IterationHeadsError, match=r"corrupt JSON in .*bad.jsonl', line 2: "):
        read_prompts(path)
    path.write_text("\n\n")
    with pytest.raises(IterationHeadsError, match="no record in"):
        read_prompts(path)
    with pytest.raises(IterationHeadsError, match="missing file"):
        read_prompts(tmp_path / "none.jsonl")


def test_write_replaces_atomically_and_writes_nothing_on_error(tmp_path):
    good = Prompts(
        torch.tensor([[1, 2]]),
        None,
        torch.tensor([0]),
        torch.tensor([2]),
        torch.full((1, 2), -1),
        (),
        ("all",),
    )
    path = tmp_path / "p.jsonl"
    path.write_text("old\n")
    assert write_prompts(good, path) == path
    assert json.loads(path.read_text()) == {
        "tokens": [1, 2],
        "step": {"token": 1},
        "answer": 2,
        "label": "all",
    }
    bad = Prompts(
        good.clean,
        None,
        good.position,
        good.answer,
        good.segments,
        (),
        ("all",),
        info=({"x": float("nan")},),
    )
    with pytest.raises(IterationHeadsError, match="info of prompt 0 is not JSON"):
        write_prompts(bad, tmp_path / "new.jsonl")
    tupled = Prompts(
        good.clean,
        None,
        good.position,
        good.answer,
        good.segments,
        (),
        ("all",),
        info=({"x": (1, 2)},),
    )
    with pytest.raises(IterationHeadsError, match="does not survive JSON"):
        write_prompts(tupled, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]
    assert read_prompts(path).answer.tolist() == [2]
    with pytest.raises(IterationHeadsError, match="is a directory"):
        write_prompts(good, tmp_path)
