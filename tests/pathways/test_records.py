"""Prompts from records: text through a tokenizer (a BPE trained here, the fixture's word-level
one) or token ids; studied positions, answers, corruptions, segments, foils, padding, and a
one-line error naming the record and the field for every fault."""

from __future__ import annotations

import pytest
import torch
from helpers import BPE_STORY, fixture_tokenizer, tiny_bpe

from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import prompts_from_records, records_from_prompts

TEXT = "Every wumpus is a cat. Rex is a wumpus. Rex is a"
FACTS = TEXT.index(" Rex")  # the facts are TEXT[:FACTS]


@pytest.fixture(scope="module")
def bpe():
    return tiny_bpe()


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def record(**changes):
    return {"text": TEXT, "step": {"char": len(TEXT)}, "answer": " cat", **changes}


def test_text_record_studies_the_token_before_the_answer(bpe):
    prompts = prompts_from_records(
        [
            record(
                foils=[" dog"],
                corrupted={"span": [FACTS + 1, FACTS + 4], "with": "Alex"},
                segments=[
                    {"name": "facts", "span": [0, FACTS]},
                    {"name": "question", "span": [FACTS, len(TEXT)]},
                ],
                label="decision",
                example=3,
                info={"hop": 2},
            )
        ],
        bpe,
    )
    body = ids(bpe, TEXT)
    n_facts = len(ids(bpe, TEXT[:FACTS]))
    assert prompts.clean[0].tolist() == [bpe.bos_token_id, *body]
    assert prompts.position.tolist() == [len(body)]  # the last token; BOS shifts by one
    assert prompts.answer.tolist() == ids(bpe, " cat")
    assert prompts.foils.tolist() == [ids(bpe, " dog")]
    assert prompts.segment_names == ("facts", "question")
    assert prompts.segments[0].tolist() == [-1] + [0] * n_facts + [1] * (len(body) - n_facts)
    changed = (prompts.corrupted != prompts.clean).nonzero()[:, 1].tolist()
    assert changed == [1 + n_facts] and prompts.corrupted[0, 1 + n_facts] == ids(bpe, " Alex")[0]
    assert prompts.labels == ("decision",) and prompts.example.tolist() == [3]
    assert prompts.info == ({"hop": 2},)


def test_step_inside_the_text_takes_the_token_there_as_answer(bpe):
    at = TEXT.index(" wumpus.")
    prompts = prompts_from_records([{"text": TEXT, "step": {"char": at}}], bpe, prepend_bos=False)
    n = len(ids(bpe, TEXT[:at]))
    assert prompts.position.tolist() == [n - 1]
    assert prompts.answer.tolist() == ids(bpe, " wumpus")
    same = prompts_from_records([{"text": TEXT, "step": {"token": n}}], bpe, prepend_bos=False)
    assert torch.equal(same.answer, prompts.answer) and torch.equal(same.clean, prompts.clean)
    with pytest.raises(IterationHeadsError, match=r"record 0, field 'answer': token \d+ while"):
        prompts_from_records([{"text": TEXT, "step": {"char": at}, "answer": " cat"}], bpe)


def test_multi_token_answer_and_foil_are_refused(bpe):
    assert len(ids(bpe, " impus")) > 1  # the BPE never saw it
    with pytest.raises(IterationHeadsError) as err:
        prompts_from_records([record(), record(answer=" impus")], bpe)
    assert "records record 1, field 'answer': ' impus' is 4 tokens ('Ġ', 'i', 'mp', 'us')" in str(
        err.value
    )
    with pytest.raises(IterationHeadsError, match=r"record 0, field 'foils': ' Max' is 4 tokens"):
        prompts_from_records([record(foils=[" Max"])], bpe)
    cut = {"text": "Every wump", "step": {"char": 10}, "answer": "us"}  # ' wumpus' is 1 token
    with pytest.raises(IterationHeadsError, match=r"field 'answer': 'us' merges with the text"):
        prompts_from_records([cut], bpe)


def test_a_span_or_step_inside_a_token_is_refused(bpe):
    inside = TEXT.index("wumpus") + 2
    start, end = TEXT.index(" wumpus"), TEXT.index(" wumpus") + len(" wumpus")
    with pytest.raises(IterationHeadsError) as err:
        prompts_from_records([{"text": TEXT, "step": {"char": inside}}], bpe)
    assert str(err.value) == (
        f"records record 0, field 'step': character {inside} is inside the token ' wumpus' "
        f"(characters {start}-{end}), expected a token boundary"
    )
    segment = {"name": "facts", "span": [0, inside]}
    with pytest.raises(IterationHeadsError, match="field 'segments': segment 'facts'.*inside"):
        prompts_from_records([record(segments=[segment])], bpe)


def test_corruption_of_another_token_length_is_refused(bpe):
    swap = {"span": [FACTS + 1, FACTS + 4], "with": "Max"}  # ' Rex' is 1 token, ' Max' is 4
    with pytest.raises(IterationHeadsError, match=r"field 'corrupted': the corrupted text .* is "):
        prompts_from_records([record(corrupted=swap)], bpe)
    whole = {"text": TEXT.replace("cat", "impus")}
    with pytest.raises(IterationHeadsError, match=r"tokens, expected \d+$"):
        prompts_from_records([record(corrupted=whole)], bpe)
    same = prompts_from_records([record(corrupted={"text": TEXT.replace("cat", "dog")})], bpe)
    assert int((same.corrupted != same.clean).sum()) == 1


def test_prompts_of_different_lengths_are_right_padded(bpe):
    short = BPE_STORY[: BPE_STORY.index(" Rex")]
    records = [record(), {"text": short, "step": {"char": len(short)}, "answer": " Rex"}]
    prompts = prompts_from_records(records, bpe)
    n = len(ids(bpe, short)) + 1
    assert prompts.clean.shape[1] == len(ids(bpe, TEXT)) + 1
    assert set(prompts.clean[1, n:].tolist()) == {bpe.eos_token_id}  # no pad token: EoS
    assert prompts.position.tolist() == [prompts.clean.shape[1] - 1, n - 1]


def test_segments_names_in_first_seen_order_and_overlaps_refused(bpe):
    one = record(segments=[{"name": "b", "span": [0, FACTS]}])
    two = record(segments=[{"name": "a", "tokens": [0, 2]}, {"name": "b", "tokens": [2, 3]}])
    prompts = prompts_from_records([one, two], bpe)
    assert prompts.segment_names == ("b", "a")
    assert prompts.segments[1, :4].tolist() == [1, 1, 0, -1]
    both = [{"name": "a", "span": [0, FACTS]}, {"name": "b", "tokens": [2, 3]}]
    with pytest.raises(
        IterationHeadsError, match="record 0, field 'segments': segment 'b'.*overlaps"
    ):
        prompts_from_records([record(segments=both)], bpe)


def test_word_level_tokenizer_allows_steps_and_spans_on_spaces():
    tokenizer = fixture_tokenizer()
    text = "1 2 = 3 4"
    on_space = prompts_from_records([{"text": text, "step": {"char": 5}}], tokenizer)
    on_token = prompts_from_records([{"text": text, "step": {"char": 6}}], tokenizer)
    assert on_space.position.tolist() == on_token.position.tolist() == [3]  # BOS 1 2 =
    assert on_token.answer.tolist() == [7]  # '3'
    assert prompts_from_records(
        [{"text": text, "step": {"char": 6}}], tokenizer, prepend_bos=False
    ).position.tolist() == [2]


def test_text_records_and_their_token_records_give_identical_prompts(bpe):
    records = [
        record(foils=[" dog", 7], example=0, segments=[{"name": "facts", "span": [0, FACTS]}]),
        {
            "text": TEXT,
            "step": {"char": 5},
            "label": "copy",
            "foils": [" cat"],
            "example": 1,
            "corrupted": {"text": TEXT.replace("Rex", "Alex")},
        },
    ]
    records[0]["corrupted"] = {"span": [0, 5], "with": "Every"}
    prompts = prompts_from_records(records, bpe)
    again = prompts_from_records(records_from_prompts(prompts))
    for field in ("clean", "corrupted", "position", "answer", "segments", "foils", "example"):
        assert torch.equal(getattr(again, field), getattr(prompts, field)), field
    assert (again.segment_names, again.labels, again.info) == (
        prompts.segment_names,
        prompts.labels,
        prompts.info,
    )


class SlowTokenizer:
    bos_token_id = None

    def __call__(self, text, **kwargs):
        raise NotImplementedError(
            "return_offset_mapping is not available when using Python tokenizers"
        )

    def convert_ids_to_tokens(self, ids):
        return []

    def __len__(self):
        return 10


@pytest.mark.parametrize(
    ("records", "tokenizer", "message"),
    [
        ([record()], None, "record 0, field 'text': a text record without a tokenizer"),
        ([record()], SlowTokenizer(), "gives no character offsets"),
        ([record(anwser=1)], "bpe", "record 0, field 'anwser': unknown field"),
        ([{"text": TEXT}], "bpe", "record 0, field 'step': missing"),
        ([record(step={"char": True})], "bpe", "field 'step': character True, expected an integer"),
        (
            [record(step={"char": -1})],
            "bpe",
            "field 'step': character -1, expected an integer >= 0",
        ),
        ([record(step={"char": 999})], "bpe", "character 999 is past the text"),
        ([record(step={"token": 99})], "bpe", "token 99 is past the end"),
        ([record(step={"line": 1})], "bpe", "field 'step': {'line': 1}"),
        ([record(answer=10**6)], "bpe", "token 1000000 is outside the vocabulary, expected < 284"),
        ([record(text=3)], "bpe", "field 'text': a int, expected a string"),
        ([record(tokens=[1])], "bpe", "both 'text' and 'tokens'"),
        ([{"tokens": [1, 2], "step": {"char": 1}}], None, "a character in a token record"),
        ([{"tokens": [1, 2], "step": {"token": 2}}], None, "field 'answer': missing while"),
        ([{"tokens": [1, 2.0], "step": {"token": 1}}], None, "field 'tokens': token 2.0"),
        ([{"tokens": [1, 2], "step": {"token": 0}}], None, "no token before the step"),
        ([record(foils=[" cat"])], "bpe", "the answer .* is a foil"),
        ([record(foils=[" dog"]), record()], "bpe", "record 1, field 'foils': missing while"),
        ([record(label=1)], "bpe", "field 'label': 1, expected a string"),
        ([record(info=[1])], "bpe", "field 'info': a list, expected a JSON object"),
        ([record(example=-2)], "bpe", "field 'example': example -2"),
        ([["text"]], "bpe", "records record 0: a list, expected an object"),
        ([], "bpe", "no record in records"),
    ],
)
def test_every_fault_is_one_line_naming_record_and_field(bpe, records, tokenizer, message):
    with pytest.raises(IterationHeadsError, match=message) as err:
        prompts_from_records(records, bpe if tokenizer == "bpe" else tokenizer)
    assert "\n" not in str(err.value)


def test_a_text_that_starts_with_the_bos_gets_no_second_one() -> None:
    tokenizer = fixture_tokenizer()  # BOS '<s>'
    bos = tokenizer.bos_token_id
    own = prompts_from_records([{"text": "<s> 3 2 = 3 7", "step": {"char": 10}}], tokenizer)
    added = prompts_from_records([{"text": "3 2 = 3 7", "step": {"char": 6}}], tokenizer)
    assert own.clean.tolist() == added.clean.tolist()  # one BOS each, the same tokens
    assert own.clean[0, :2].tolist() == [bos, tokenizer.convert_tokens_to_ids("3")]
    assert int(own.position[0]) == int(added.position[0]) == 3
    forced = prompts_from_records(
        [{"text": "<s> 3 2 = 3 7", "step": {"char": 10}}], tokenizer, prepend_bos=True
    )
    assert forced.clean[0, :2].tolist() == [bos, bos]  # asked for: given
