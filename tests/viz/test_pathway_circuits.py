"""Figures of the pathway circuits carry the numbers of their results, and refuse anything else."""

from __future__ import annotations

import dataclasses
import math

import plotly.graph_objects as go
import pytest

from iteration_heads import DataConfig, make_dataset, zoo
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways import iteration_prompts
from iteration_heads.pathways.pruning import pruning_curve
from iteration_heads.pathways.restoration import ALL_LABELS, head_patching
from iteration_heads.viz.pathway_circuits import head_patching_heatmap, pruning_chart


@pytest.fixture(scope="module")
def data():
    return make_dataset(DataConfig(task="polynomial", max_len=8, n_train=8, n_test=4))


@pytest.fixture(scope="module")
def prompts(data):
    return iteration_prompts(data.test, data.layout)


@pytest.fixture(scope="module")
def patching(prompts):
    return head_patching(zoo.load("polynomial_3x2"), prompts)


@pytest.fixture(scope="module")
def curve(patching, prompts, data):
    model = zoo.load("polynomial_3x2")
    return pruning_curve(model, prompts, patching.ranking(), data.train.tokens, n_random=3)


@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_heatmap_carries_every_label_score_and_stderr(patching, metric):
    fig = head_patching_heatmap(patching, metric=metric)
    assert isinstance(fig, go.Figure)
    scores, stderr = patching.scores(metric), patching.stderr(metric)  # ratio of means
    means = patching.scores(metric, "mean")
    assert [trace.name for trace in fig.data] == patching.groups
    assert patching.groups[-1] == ALL_LABELS and len(fig.data) == 9  # 8 steps + all
    for trace in fig.data:
        assert trace.coloraxis == "coloraxis"  # one shared colour scale
        for layer in range(3):
            for head in range(2):
                assert trace.z[layer][head] == pytest.approx(float(scores[trace.name][layer, head]))
                custom = trace.customdata[layer][head]
                assert custom[0] == pytest.approx(float(means[trace.name][layer, head]))
                assert custom[1] == pytest.approx(float(stderr[trace.name][layer, head]))
                median = patching.spread(trace.name, metric)["median"][layer, head]
                assert custom[2] == pytest.approx(float(median), nan_ok=True)
                assert custom[4] == patching.n_prompts[trace.name]
        assert "±" in trace.hovertemplate and "n=" in trace.hovertemplate
    finite = [float(v) for t in scores.values() for v in t.flatten() if math.isfinite(v)]
    axis = fig.layout.coloraxis
    assert axis.cmin == pytest.approx(min(0.0, *finite))  # the plotted values' range
    assert axis.cmax == pytest.approx(max(1.0, *finite))
    titles = [a.text for a in fig.layout.annotations]
    assert f"all (n={patching.n_prompts['all']}, {patching.n_excluded['all']} excluded)" in titles


def test_pruning_chart_carries_the_curve_the_band_and_the_circuit(curve):
    fig = pruning_chart(curve, threshold=0.5)
    traces = {trace.name: trace for trace in fig.data}
    model = traces["ranked heads"]
    assert list(model.x) == list(curve.ks)
    assert list(model.y) == pytest.approx(curve.agreement.tolist())
    mean, std = curve.random_mean.tolist(), curve.random_std.tolist()
    assert list(traces["random heads (mean)"].y) == pytest.approx(mean)
    upper, lower = traces["random + std"], traces["random - std"]
    assert list(upper.y) == pytest.approx([m + s for m, s in zip(mean, std, strict=True)])
    assert list(lower.y) == pytest.approx([m - s for m, s in zip(mean, std, strict=True)])
    assert lower.fill == "tonexty"
    k, heads = curve.smallest_circuit(0.5)
    marker = traces[f"smallest circuit: {k} heads"]
    assert list(marker.x) == [k]
    assert marker.y[0] == pytest.approx(float(curve.agreement[list(curve.ks).index(k)]))
    assert "+".join(f"L{layer}H{head}" for layer, head in heads) in marker.hovertemplate
    (line,) = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    assert line.y0 == line.y1 == 0.5
    # a curve that never reaches the threshold: no marker
    low = dataclasses.replace(curve, agreement=curve.agreement * 0.5)
    assert [t.name for t in pruning_chart(low).data if "smallest" in t.name] == []


def test_a_bisected_curve_draws_its_random_sets_as_one_marker_with_error_bars(
    patching, prompts, data
):
    from iteration_heads.pathways.pruning_bisection import bisected_pruning_curve

    model = zoo.load("polynomial_3x2")
    curve = bisected_pruning_curve(
        model, prompts, patching.ranking(), data.train.tokens, threshold=0.75, n_random=3
    )
    traces = {trace.name: trace for trace in pruning_chart(curve).data}
    k, _ = curve.smallest_circuit()
    assert f"smallest circuit: {k} heads" in traces  # the curve's own threshold by default
    random = traces["random heads (mean)"]
    assert random.mode == "markers" and random.error_y.visible
    at = list(curve.ks).index(k)
    drawn = [(x, y) for x, y in zip(random.x, random.y, strict=True) if not math.isnan(y)]
    assert drawn == [(k, pytest.approx(float(curve.random_agreement[at].mean())))]
    assert list(traces["ranked heads"].x) == list(curve.ks)


def test_figures_refuse_other_inputs(patching, curve):
    with pytest.raises(IterationHeadsError, match="must be a HeadPatching.*got PruningCurve"):
        head_patching_heatmap(curve)
    with pytest.raises(IterationHeadsError, match="must be a PruningCurve.*got HeadPatching"):
        pruning_chart(patching)
    with pytest.raises(IterationHeadsError, match="metric 'wasserstein'"):
        head_patching_heatmap(patching, metric="wasserstein")
    with pytest.raises(IterationHeadsError, match="threshold=1.5"):
        pruning_chart(curve, threshold=1.5)


def test_the_attribution_chart_tells_the_estimate_from_the_exact_check(patching):
    from iteration_heads.pathways import linear_pruning_curve
    from iteration_heads.viz.pathway_circuits import linear_pruning_chart

    data = make_dataset(DataConfig(max_len=8, n_train=8, n_test=8))
    prompts = iteration_prompts(data.test, data.layout)
    curve = linear_pruning_curve(
        zoo.load("polynomial_paper"), prompts, [(1, 0), (0, 0)], data.train.tokens, n_random=2
    )
    fig = linear_pruning_chart(curve)
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["ranked heads (estimated)"].y) == curve.estimated_agreement.tolist()
    star = by_name[f"circuit of {curve.circuit_k} heads, run exactly"]
    assert (list(star.x), list(star.y)) == ([curve.circuit_k], [curve.exact_agreement])
    crosses = by_name["random heads, run exactly"]
    assert list(crosses.y) == curve.exact_random_agreement.tolist()
    assert "ESTIMATED" in fig.layout.title.text
    with pytest.raises(IterationHeadsError, match="must be a LinearPruningCurve.*got HeadPatching"):
        linear_pruning_chart(patching)
