"""Head patching's robust aggregate: with one prompt whose corruption barely changes the output,
the per-prompt ratios explode while the ratio of means stays stable; the ratio of means is the
default of values, rankings and the heatmap (its colour scale from the plotted values), and the
spread of the per-prompt scores is reported."""

from __future__ import annotations

import pytest
import torch

from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.patching_stats import patching_aggregates
from iteration_heads.pathways.restoration import ALL_LABELS, HeadPatching
from iteration_heads.viz.pathway_circuits import head_patching_heatmap

D = torch.float64
KL_C = torch.tensor([1.0, 0.8, 1.2, 0.0011], dtype=D)  # the last: corruption barely matters
KL_P = torch.tensor([[[0.1, 0.1, 0.1, 0.012], [0.5, 0.4, 0.6, 0.0005]]], dtype=D)  # [1, 2, 4]
LD_CLEAN = torch.tensor([2.0, 2.0, 2.0, 0.01], dtype=D)
LD_CORR = torch.zeros(4, dtype=D)
LD_P = torch.tensor([[[1.8, 1.8, 1.8, -0.5], [1.0, 1.0, 1.0, 0.006]]], dtype=D)
LABELS = ("a", "a", "b", "b")


def exploding() -> HeadPatching:
    included = torch.ones(4, dtype=torch.bool)
    maps, per, n, excluded = patching_aggregates(
        KL_C, KL_P, LD_CLEAN, LD_CORR, LD_P, LABELS, included
    )
    return HeadPatching(
        **maps, n_prompts=n, n_excluded=excluded, per_prompt_kl=per["kl"],
        per_prompt_logit_diff=per["logit_diff"], kl_corrupted=KL_C, logit_diff_clean=LD_CLEAN,
        logit_diff_corrupted=LD_CORR, foil=torch.zeros(4, dtype=torch.long), labels=LABELS,
        min_kl=1e-3, n_forward=1,
    )  # fmt: skip


def test_ratio_of_means_is_stable_where_per_prompt_ratios_explode():
    result = exploding()
    # by hand: (mean KL_c - mean KL_p) / mean KL_c and (mean LD_p - mean LD_corr) / mean gap
    kl = [(KL_C.mean() - KL_P[0, h].mean()) / KL_C.mean() for h in (0, 1)]
    ld = [(LD_P[0, h].mean() - LD_CORR.mean()) / (LD_CLEAN - LD_CORR).mean() for h in (0, 1)]
    assert torch.allclose(result.kl_ratio[ALL_LABELS][0].double(), torch.stack(kl), atol=1e-6)
    assert torch.allclose(
        result.logit_diff_ratio[ALL_LABELS][0].double(), torch.stack(ld), atol=1e-6
    )
    b = [2, 3]  # label "b" holds the exploding prompt
    kl_b = (KL_C[b].mean() - KL_P[0, 0, b].mean()) / KL_C[b].mean()
    assert float(result.kl_ratio["b"][0, 0]) == pytest.approx(float(kl_b), abs=1e-6)
    # the per-prompt score of head 0 on the last prompt is -9.9: its mean goes negative
    per = (KL_C - KL_P[0, 0]) / KL_C
    assert float(result.kl_score[ALL_LABELS][0, 0]) == pytest.approx(float(per.mean()), abs=1e-6)
    assert float(result.kl_score[ALL_LABELS][0, 0]) < -1 < 0.85 < float(result.values[0, 0])
    # ranking: head 0 restores most of the KL; the mean of per-prompt ratios ranks it last
    assert result.ranking() == [(0, 0), (0, 1)] and result.top(1) == [(0, 0)]
    assert result.ranking(metric="logit_diff") == [(0, 0), (0, 1)]
    assert result.ranking(aggregate="mean") == [(0, 1), (0, 0)]  # the old default
    assert torch.equal(result.values, result.kl_ratio[ALL_LABELS])


def test_spread_is_reported_per_head():
    result = exploding()
    s = result.spread()
    per = ((KL_C - KL_P[0, 0]) / KL_C).tolist()
    middle = sorted(per)[1:3]  # four scores: the median is the mean of the middle two
    assert float(s["median"][0, 0]) == pytest.approx(sum(middle) / 2, abs=1e-9)
    assert float(s["frac_below_-1"][0, 0]) == 0.25 and float(s["frac_above_2"][0, 0]) == 0.0
    assert float(result.spread(metric="logit_diff")["frac_below_-1"][0, 0]) == 0.25
    q = torch.tensor(per, dtype=D).quantile(torch.tensor([0.25, 0.75], dtype=D))
    assert float(s["iqr"][0, 0]) == pytest.approx(float(q[1] - q[0]), abs=1e-9)
    frame = result.to_frame()
    row = frame[(frame.label == ALL_LABELS) & (frame["head"] == 0)].iloc[0]
    assert row["kl_frac_below_-1"] == 0.25 and row["kl_ratio"] == pytest.approx(0.896, abs=1e-3)
    data = result.to_dict()
    assert data["spread"]["kl"]["frac_below_-1"]["b"] == [[0.5, 0.0]]
    text = result.format()
    assert "L0H0 KL ratio 0.896" in text and "25% outside [-1, 2]" in text
    with pytest.raises(IterationHeadsError, match="aggregate 'median'"):
        result.ranking(aggregate="median")  # type: ignore[arg-type]
    with pytest.raises(IterationHeadsError, match="label 'c'"):
        result.spread("c")


def test_heatmap_plots_the_ratio_on_a_scale_of_the_plotted_values():
    result = exploding()
    fig = head_patching_heatmap(result)
    ratios = [float(v) for t in result.kl_ratio.values() for v in t.flatten()]
    assert fig.data[-1].z[0][0] == pytest.approx(float(result.values[0, 0]))
    assert fig.layout.coloraxis.cmin == pytest.approx(min(0.0, *ratios))  # not the -2.4 mean
    assert fig.layout.coloraxis.cmax == pytest.approx(max(1.0, *ratios))
    assert "ratio of means" in fig.layout.title.text
    means = head_patching_heatmap(result, aggregate="mean")
    lowest = min(float(v) for t in result.kl_score.values() for v in t.flatten())
    assert means.layout.coloraxis.cmin == pytest.approx(lowest) and lowest < -1
    with pytest.raises(IterationHeadsError, match="aggregate 'robust'"):
        head_patching_heatmap(result, aggregate="robust")
