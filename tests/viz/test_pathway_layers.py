"""Figures of the answer writers and the logit lens: the traces carry the result's numbers,
the rift is marked where the result puts it, and anything but the right result raises."""

from __future__ import annotations

import pytest
import torch

from iteration_heads import DataConfig, make_dataset, zoo
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import iteration_prompts
from iteration_heads.pathways.rift import LogitLens, context_free_prior, logit_lens
from iteration_heads.pathways.writers import answer_writers
from iteration_heads.viz.pathway_layers import logit_lens_chart, writers_chart


@pytest.fixture(scope="module")
def results():
    model = zoo.load("polynomial_paper")
    data = make_dataset(DataConfig(max_len=8, n_train=4, n_test=2))
    prompts = iteration_prompts(data.test, data.layout)
    prior = context_free_prior(model, prompts)
    return answer_writers(model, prompts), logit_lens(model, prompts, prior=prior, n_boot=100)


@pytest.mark.parametrize("label", ["all", "step 1"])
def test_writers_chart_carries_the_dla_the_histogram_and_the_segments(results, label):
    writers = results[0]
    fig = writers_chart(writers, label=label)
    heatmap, bars, *segments = fig.data
    assert heatmap.type == "heatmap"
    assert [list(row) for row in heatmap.z] == writers.dla[label].tolist()
    assert [list(row) for row in heatmap.customdata] == writers.stderr[label].tolist()
    hist = writers.layer_histogram(label)
    assert list(bars.x) == hist["layer"].tolist() and list(bars.y) == hist["writers"].tolist()
    chosen = writers.writers(label)
    assert [s.name for s in segments] == [f"from {n}" for n in writers.segment_names]
    for s, trace in enumerate(segments):
        assert list(trace.x) == [f"L{lay}H{h}" for lay, h in chosen]
        expected = [float(writers.segment_dla[label][lay, h, s]) for lay, h in chosen]
        assert list(trace.y) == pytest.approx(expected)
    assert fig.layout.barmode == "relative" and label in fig.layout.title.text


def test_logit_lens_chart_carries_the_curves_bands_and_the_rift(results):
    lens = results[1]
    fig = logit_lens_chart(lens)
    assert [t.name for t in fig.data] == ["answer 95% CI", "answer", "prior 95% CI", "prior"]
    for i, token in ((0, "answer"), (2, "prior")):
        mean, low, high = lens.curve(f"{token}_prob")
        band, line = fig.data[i], fig.data[i + 1]
        assert list(line.y) == pytest.approx(mean.tolist())
        assert list(band.y) == pytest.approx(high.tolist() + low.tolist()[::-1])
        assert list(line.x) == [0, 1, 2]
    rift = lens.rift()
    assert rift.layer is not None
    [line] = [s for s in fig.layout.shapes if s.type == "line"]
    assert line.x0 == line.x1 == rift.layer
    assert list(fig.layout.xaxis.ticktext) == list(lens.boundaries)


def test_logit_lens_chart_without_prior_or_rift():
    ranks = torch.tensor([[0, 0], [3, 3]])  # the answer falls behind: no rift
    lens = LogitLens(("0_pre", "final_post"), -ranks.float(), ranks, -torch.ones(2, 2),
                     torch.ones(2, 2, dtype=torch.long), torch.tensor([1, 2]),
                     torch.tensor([3, 4]), ("a", "b"), n_boot=20)  # fmt: skip
    fig = logit_lens_chart(lens, label="b")
    assert not fig.layout.shapes and "never" in fig.layout.title.text
    bare = LogitLens(*[lens.boundaries, lens.answer_log_prob, lens.answer_rank, None, None,
                     lens.answer, None, lens.labels], n_boot=20)  # fmt: skip
    assert [t.name for t in logit_lens_chart(bare).data] == ["answer 95% CI", "answer"]


def test_wrong_input_raises(results):
    writers, lens = results
    with pytest.raises(IterationHeadsError, match="result must be AnswerWriters.*got LogitLens"):
        writers_chart(lens)
    with pytest.raises(IterationHeadsError, match="result must be a LogitLens.*got AnswerWriters"):
        logit_lens_chart(writers)
    with pytest.raises(IterationHeadsError, match="label 'step 9'"):
        writers_chart(writers, label="step 9")
    with pytest.raises(IterationHeadsError, match="label 'step 9'"):
        logit_lens_chart(lens, label="step 9")
    with pytest.raises(IterationHeadsError, match="share=0"):
        writers_chart(writers, share=0)
