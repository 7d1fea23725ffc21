"""PrOntoQA text prompts through HF tokenizers, and the zoo's ontology problems as text."""

from __future__ import annotations

import re
import string

import pytest
import torch

from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import (
    ontology_prompts,
    ontology_records,
    ontology_text,
    ontology_tokenizer,
    prompts_from_records,
    prontoqa_prompts,
    prontoqa_records,
)
from iteration_heads.tasks import OntologyConfig, ProntoQAConfig, make_ontology_problems
from iteration_heads.tasks.prontoqa import ENTITIES, PROPERTIES, make_prontoqa, plural

ONE = ("wumpus", "yumpus", "zumpus", "dumpus")  # one token in every form
TWO = {"sterpus": "ster", "lorpus": "lor", "gorpus": "gor", "tarpus": "tar"}  # prefix + "pus"


def wordpiece(extra: tuple[str, ...] = ()):
    """A fast tokenizer whose names have known lengths: ONE names and entities and properties
    are one token, TWO names two (``ster`` ``##pus``, ``Ster`` ``##puses``), any other word
    one token per letter."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "<s>", "</s>", *string.punctuation, *string.ascii_letters]
    words += ["##" + c for c in string.ascii_letters] + ["##pus", "##puses"]
    words += [
        "Input",
        "Response",
        "True",
        "False",
        "or",
        "false",
        "Let",
        "us",
        "think",
        "step",
        "by",
        "is",
        "are",
    ]
    for name in ONE:
        words += [name, plural(name), name.capitalize(), plural(name).capitalize()]
    words += [f for p in TWO.values() for f in (p, p.capitalize())]
    words += [*ENTITIES, *PROPERTIES, *extra]
    backend = Tokenizer(models.WordPiece({w: i for i, w in enumerate(dict.fromkeys(words))}))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")


CONFIG = ProntoQAConfig(hops=(2,), concepts=(*ONE, *TWO), distractors=1, shots=1)


@pytest.fixture(scope="module")
def tokenizer():
    return wordpiece()


def test_each_step_is_studied_at_the_first_token_of_its_word(tokenizer) -> None:
    problems = make_prontoqa(CONFIG, 6, seed=1)
    records = prontoqa_records(
        problems, tokenizer, subtasks=("decision", "copy", "induction", "answer")
    )
    prompts = prompts_from_records(records, tokenizer)
    assert len(records) == 6 * 11 and prompts.labels[:3] == ("decision", "copy", "decision")
    lengths = set()
    for i, record in enumerate(records):
        problem = problems[record["example"]]
        step = problem.steps[record["info"]["step"]]
        assert record["step"]["char"] == step.word.span[0] and record["label"] == step.subtask
        first = tokenizer.tokenize(step.word.surface)
        n = 2 if step.word.name in TWO else 1
        assert len(first) == record["info"]["tokens_in_word"] == n
        lengths.add(n)
        # the studied position predicts the word's first token (BOS prepended)
        position = int(prompts.position[i])
        assert int(prompts.answer[i]) == int(prompts.clean[i, position + 1])
        assert tokenizer.convert_ids_to_tokens([int(prompts.answer[i])]) == first[:1]
        assert record["info"]["dutta_subtask"] == step.index == i % 11
        assert record["info"]["shots"] == 1 and record["info"]["hop"] == step.hop
    assert lengths == {1, 2}  # both kinds of names were studied


def test_corruptions_keep_the_length_and_change_only_the_source(tokenizer) -> None:
    problems = make_prontoqa(CONFIG, 8, seed=2)
    records = prontoqa_records(
        problems, tokenizer, subtasks=("decision", "copy", "induction", "answer")
    )
    prompts = prompts_from_records(records, tokenizer)
    assert prompts.corrupted is not None
    for i, record in enumerate(records):
        problem = problems[record["example"]]
        step = problem.steps[record["info"]["step"]]
        s, e = record["corrupted"]["span"]
        assert step.source is not None and (s, e) == step.source.span
        new = record["corrupted"]["with"]
        assert new != problem.text[s:e] and new.lower().rstrip("es") not in problem.used("concept")
        changed = (prompts.corrupted[i] != prompts.clean[i]).nonzero().flatten().tolist()
        # the changed tokens lie within the source word (BOS first: offsets shift by one)
        offsets = tokenizer(problem.text, add_special_tokens=False, return_offsets_mapping=True)
        inside = [k + 1 for k, (a, b) in enumerate(offsets["offset_mapping"]) if a < e and b > s]
        assert changed and set(changed) <= set(inside)
    again = prontoqa_records(make_prontoqa(CONFIG, 8, seed=2), tokenizer, subtasks=("answer",))
    assert [r["corrupted"] for r in again] == [
        r["corrupted"] for r in records if r["label"] == "answer"
    ]


def test_foils_are_other_first_tokens_of_the_same_place(tokenizer) -> None:
    problems = make_prontoqa(CONFIG, 4, seed=3)
    records = prontoqa_records(problems, tokenizer, subtasks=("copy", "answer"))
    prompts = prompts_from_records(records, tokenizer)
    assert prompts.foils is not None
    names = tokenizer.convert_ids_to_tokens
    for i, record in enumerate(records):
        foils = [f for f in prompts.foils[i].tolist() if f >= 0]
        assert foils and int(prompts.answer[i]) not in foils
        if record["label"] == "answer":
            assert names(foils) == ["True" if names([record["answer"]]) == ["False"] else "False"]


def test_no_name_of_the_same_length_is_a_one_line_error() -> None:
    config = ProntoQAConfig(hops=(1,), concepts=("wumpus", "sterpus"))
    problems = make_prontoqa(config, 1, seed=0)
    message = (
        "no other concept name of 1 token(s) like 'wumpus'"
        if "wumpus" in problems[0].chain
        else ("no other concept name of 2 token(s) like 'sterpus'")
    )
    with pytest.raises(IterationHeadsError, match=re.escape(message)) as error:
        prontoqa_records(problems, wordpiece(), subtasks=("copy",))
    assert "\n" not in str(error.value) and "vocabulary of names" in str(error.value)
    every = prontoqa_records(problems, wordpiece(), subtasks=("copy", "decision"),
                             skip_uncorruptible=True)  # fmt: skip
    kept = {r["info"]["step"] for r in every}
    studied = {s.index for s in problems[0].steps if s.subtask in ("copy", "decision")}
    assert every and kept < studied  # the steps that cannot be corrupted are left out
    with pytest.raises(IterationHeadsError, match="skip_uncorruptible=1, expected True or False"):
        prontoqa_records(problems, wordpiece(), skip_uncorruptible=1)


def test_zero_to_six_shots_and_a_byte_level_bpe() -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1500,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    texts = [p.text for p in make_prontoqa(ProntoQAConfig(hops=(1, 2, 3), shots=2), 300)]
    backend.train_from_iterator(texts, trainer)
    gpt2_like = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>")
    for shots in range(7):
        problems = make_prontoqa(ProntoQAConfig(shots=shots), 2, seed=shots)
        prompts = prontoqa_prompts(problems, gpt2_like, subtasks=("induction",))
        rows = torch.arange(len(prompts))
        assert torch.equal(prompts.answer, prompts.clean[rows, prompts.position + 1])
        assert prompts.clean[0, 0] == gpt2_like.bos_token_id
        assert len(prompts.segment_names) == 3 + (shots > 0)
        assert gpt2_like.decode(prompts.answer[:1]).strip() == problems[0].steps[5].word.surface


def test_the_zoo_ontology_problems_as_text_give_the_same_prompts() -> None:
    config = OntologyConfig(hops=(1, 2, 3), distractors=2)
    problems = make_ontology_problems(config, 12, seed=4)
    tokenizer = ontology_tokenizer(problems.vocab)
    texts = ontology_text(problems)
    for text, row in zip(texts, problems.tokens, strict=True):
        ids = tokenizer(text)["input_ids"]
        assert ids == [t for t in row.tolist() if t != 0][1:]  # no <s>, no padding
    for subtasks in (("decision", "copy", "induction"), ("copy",)):
        expected = ontology_prompts(problems, subtasks)
        got = prompts_from_records(ontology_records(problems, subtasks), tokenizer)
        width = got.clean.shape[1]
        assert torch.equal(got.clean, expected.clean[:, :width])
        assert not bool(expected.clean[:, width:].any())  # what got lacks is padding
        assert got.corrupted is not None and expected.corrupted is not None
        assert torch.equal(got.corrupted, expected.corrupted[:, :width])
        for field in ("position", "answer"):
            assert torch.equal(getattr(got, field), getattr(expected, field))
        assert torch.equal(got.segments, expected.segments[:, :width])
        assert got.segment_names == expected.segment_names and got.labels == expected.labels


def test_the_word_tokenizer_writes_every_name_in_one_token() -> None:
    from iteration_heads.pathways.text_ontology import word_tokenizer

    problems = make_prontoqa(ProntoQAConfig(surface="every", format="qa", shots=2), 3)
    tokenizer = word_tokenizer(problems)
    records = prontoqa_records(problems, tokenizer, subtasks=("decision", "copy", "induction"))
    assert {r["info"]["tokens_in_word"] for r in records} == {1}
    assert tokenizer.unk_token_id not in tokenizer(problems[0].text)["input_ids"]
    assert tokenizer.tokenize("Q: Every impus is a sterpus.") == [
        "Q",
        ":",
        "Every",
        "impus",
        "is",
        "a",
        "sterpus",
        ".",
    ]
