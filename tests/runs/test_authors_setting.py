"""authors_setting: the paper setting plus every ingredient of the authors' code; the sweep that
measures the ingredients one at a time; cache keys of earlier runs untouched by the new options."""

from pathlib import Path

from iteration_heads.model.authors import AUTHORS_VOCAB
from iteration_heads.runs.specs import (
    authors_setting,
    paper_setting,
    polynomial_spec,
    transfer_spec,
)
from iteration_heads.runs.sweep import SweepSpec
from iteration_heads.runs.sweep_fields import cell_spec

SWEEP = Path(__file__).resolve().parents[2] / "examples" / "sweeps" / "authors-ingredients.toml"


def test_the_authors_setting_is_the_paper_setting_with_their_ingredients():
    for seed in (0, 4):
        spec, paper = authors_setting(polynomial_spec(seed)), paper_setting(polynomial_spec(seed))
        m, d, t = spec.model, spec.data, spec.train
        assert (m.n_heads, m.residual, m.biases, m.weight_init, m.d_vocab) == (
            1, "authors", False, "authors", AUTHORS_VOCAB)  # fmt: skip
        assert (d.sampler, d.seed, d.n_train, d.n_test, d.score_padding) == (
            "authors", 0, 1024, 1024, True)  # fmt: skip
        assert (t.batch_order, t.lr, t.warmup_steps, t.stop_at_target, t.embedding_dropout) == (
            "sorted", 3e-4, 0, False, 0.1)  # fmt: skip
        assert m.seed == t.seed == seed  # the torch seed; the data keeps seed 0, as theirs
        assert spec.name() == paper.name() and spec.key() != paper.key()
        assert (m.d_model, d.max_len, t.epochs) == (paper.model.d_model, 8, 200)


def test_a_fine_tuning_run_fine_tunes_the_authors_source_on_their_data():
    spec = authors_setting(transfer_spec(polynomial_spec(1), epochs=4, trainable=None))
    assert spec.source == authors_setting(polynomial_spec(1))
    assert spec.model == spec.source.model
    assert (spec.data.task, spec.data.sampler, spec.data.seed) == ("parity", "authors", 0)
    assert spec.train.batch_order == "sorted" and spec.train.epochs == 4


def test_the_ingredient_sweep_starts_from_the_paper_arm_and_ends_at_authors_setting():
    spec = SweepSpec.from_toml(SWEEP)
    by_variant: dict[str, list] = {}
    for settings, cell in spec.cell_settings():
        by_variant.setdefault(settings["variant"], []).append(cell)
    assert all(len(cells) == 5 for cells in by_variant.values())
    paper = [paper_setting(polynomial_spec(s)) for s in range(5)]
    authors = [authors_setting(polynomial_spec(s)) for s in range(5)]
    assert [c.key() for c in by_variant["paper setting"]] == [s.key() for s in paper]
    assert [c.key() for c in by_variant["all (authors_setting)"]] == [s.key() for s in authors]
    data = by_variant["the authors' data"]
    assert {c.data.seed for c in data} == {0} and [c.train.seed for c in data] == list(range(5))


def test_an_explicit_seed_wins_over_the_sweep_seed_in_any_order():
    for settings in ({"data.seed": 0, "seed": 3}, {"seed": 3, "data.seed": 0}):
        spec = cell_spec(settings, recipe="paper")
        assert (spec.data.seed, spec.model.seed, spec.train.seed) == (0, 3, 3)


def test_cached_runs_keep_their_keys():
    """The new options are left out of a config's dictionary at their defaults, so the runs
    cached before them (runs/sweeps/polynomial-cot-d64-L8-2x1-s0-e200-44f1d3621b, the paper
    arm) are found again."""
    assert paper_setting(polynomial_spec(0)).key() == "44f1d3621b"
    assert polynomial_spec(0).key() == "71cbf77b2e"
