"""Probing of ontological relations (Dutta et al., §2.5): per layer boundary, can a probe on the
concatenation ``[h_a ; h_b]`` of two words' residual streams tell how the prompt relates them?

1. :func:`~iteration_heads.pathways.probing_pairs.relation_pairs` labels ordered word pairs of
   each prompt from its stated facts: related, (reversed,) (negated,) unrelated;
   :func:`~iteration_heads.pathways.probing_pairs.ontology_pairs` does it for ontology problems,
   :func:`~iteration_heads.pathways.probing_pairs.prontoqa_pairs` for natural-language PrOntoQA
   through any tokenizer (words by name, read at their last token).
2. :func:`fit_relation_probes` splits the vocabulary (test pairs use only held-out words, a
   validation split is carved from the training words for early stopping), balances the
   classes by truncation within each pair of positions (so position alone tells nothing), and
   trains, per boundary and seeded, a multinomial logistic regression and an MLP, and both
   again on shuffled labels (the control task, Hewitt & Liang 2019: selectivity = probe
   accuracy - control accuracy).
3. :func:`relation_probes` reads the boundaries (``resid_pre`` of every block and the final
   ``resid_post``) of any TransformerLens model, native or HuggingFace bridge, and fits them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from iteration_heads._results import Result, plain
from iteration_heads._torch import (
    cached_run,
    device_of,
    evaluating,
    resid_pre_hook,
    without_gradients,
)
from iteration_heads.errors import IterationHeadsError
from iteration_heads.pathways.probing_pairs import RelationPairs, ontology_pairs
from iteration_heads.tasks.ontology import OntologyProblems
from iteration_heads.tasks.task import check_int, check_number

SPLITS = ("fit", "validation", "test")
"""The splits of :attr:`RelationProbes.split` (by vocabulary)."""


@dataclass(frozen=True, repr=False)
class RelationProbes(Result):
    """Probe accuracies per layer boundary on held-out-vocabulary test pairs.

    Attributes:
        boundaries: Names (``"0_pre"``, ..., ``"final_post"``); ``classes``: the labels.
        linear_accuracy, linear_f1, mlp_accuracy, mlp_f1: ``[boundary]``, macro-F1.
        control_linear, control_mlp: Test accuracy of the same probes on shuffled labels.
        mlp_fit_accuracy, control_mlp_fit: Training accuracy (memorisation capacity).
        chance: Majority class share of the balanced test pairs.
        counts: Split -> class -> pairs; ``split`` per pair: index in :data:`SPLITS`, -1 unused.
        words: ``[pair, 2]`` the word ids; ``seed``: seeds every draw and initialisation.
    """

    boundaries: tuple[str, ...]
    classes: tuple[str, ...]
    linear_accuracy: Float[Tensor, " boundary"]
    linear_f1: Float[Tensor, " boundary"]
    mlp_accuracy: Float[Tensor, " boundary"]
    mlp_f1: Float[Tensor, " boundary"]
    control_linear: Float[Tensor, " boundary"]
    control_mlp: Float[Tensor, " boundary"]
    mlp_fit_accuracy: Float[Tensor, " boundary"]
    control_mlp_fit: Float[Tensor, " boundary"]
    chance: float
    counts: dict[str, dict[str, int]]
    split: Int[Tensor, " pair"]
    words: Int[Tensor, "pair 2"]
    seed: int

    def selectivity(self, probe: str = "mlp") -> Float[Tensor, " boundary"]:
        """Probe accuracy minus control accuracy (``probe``: ``"linear"`` or ``"mlp"``)."""
        if probe not in ("linear", "mlp"):
            raise IterationHeadsError(f"probe={probe!r}, expected 'linear' or 'mlp'")
        return getattr(self, f"{probe}_accuracy") - getattr(self, f"control_{probe}")

    def words_of(self, split: str) -> set[int]:
        """The word ids of the pairs of one split (``"fit"``, ``"validation"``, ``"test"``)."""
        if split not in SPLITS:
            raise IterationHeadsError(f"split={split!r}, expected one of {SPLITS}")
        return set(self.words[self.split == SPLITS.index(split)].flatten().tolist())

    def to_frame(self) -> pd.DataFrame:
        """One row per boundary: accuracy and F1 of both probes, the controls, chance."""
        names = ["linear_accuracy", "linear_f1", "mlp_accuracy", "mlp_f1", "control_linear"]
        names += ["control_mlp", "mlp_fit_accuracy", "control_mlp_fit"]
        frame = {"boundary": self.boundaries} | {n: getattr(self, n) for n in names}
        return pd.DataFrame(plain(frame | {"chance": [self.chance] * len(self.boundaries)}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (per-pair split left out)."""
        frame = self.to_frame().drop(columns="chance")
        return plain(
            {"classes": self.classes, "chance": self.chance, "counts": self.counts}
            | {"seed": self.seed, "selectivity": self.selectivity()}
            | {column: frame[column].tolist() for column in frame.columns}
        )

    def format(self) -> str:
        """Counts and chance, then the table per boundary."""
        counts = "; ".join(f"{split} {sum(c.values())}" for split, c in self.counts.items() if c)
        return (
            f"relation probes ({'/'.join(self.classes)}; {counts} pairs; chance "
            f"{self.chance:.3f}; test words held out of training)\n"
            + self.to_frame().to_string(index=False, float_format="{:.3f}".format)
        )


def _balanced(labels: Tensor, keys: Tensor, chosen: Tensor, k: int, g: torch.Generator) -> Tensor:
    """Of the ``chosen`` pairs, as many of every class within each key (seeded truncation)."""
    order = chosen[torch.randperm(len(chosen), generator=g)]
    groups: dict[tuple[int, ...], list[list[int]]] = {}
    for i in order.tolist():
        groups.setdefault(tuple(keys[i].tolist()), [[] for _ in range(k)])[int(labels[i])].append(i)
    kept = [i for g_ in groups.values() for c in g_ for i in c[: min(map(len, g_))]]
    return torch.tensor(sorted(kept), dtype=torch.long)


def _train(x: Tensor, y: Tensor, xv: Tensor, yv: Tensor, hidden: int, k: int, opts: dict) -> Any:
    """A seeded probe (``hidden=0``: linear), full-batch Adam, the best validation loss kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts["seed"])
        layers: list[torch.nn.Module] = [torch.nn.Linear(x.shape[1], hidden or k)]
        if hidden:
            half = max(hidden // 2, k)
            layers += [torch.nn.ReLU(), torch.nn.Linear(hidden, half), torch.nn.ReLU()]
            layers += [torch.nn.Linear(half, k)]
        probe = torch.nn.Sequential(*layers)
    optimiser = torch.optim.Adam(probe.parameters(), lr=opts["lr"] * (10 if not hidden else 1))
    best, state, waited = float("inf"), None, 0
    for _ in range(opts["epochs"]):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(probe(x), y).backward()
        optimiser.step()
        with without_gradients():
            loss = float(torch.nn.functional.cross_entropy(probe(xv), yv))
        if loss < best - 1e-4:
            best, waited = loss, 0
            state = {n: v.clone() for n, v in probe.state_dict().items()}
        elif (waited := waited + 1) >= opts["patience"]:
            break
    if state is not None:
        probe.load_state_dict(state)
    return probe


def _scores(probe: Any, x: Tensor, y: Tensor, k: int) -> tuple[float, float]:
    """Accuracy and macro-F1 (over the classes present)."""
    with without_gradients():
        guess = probe(x).argmax(-1)
    f1s = []
    for c in range(k):
        tp = int(((guess == c) & (y == c)).sum())
        n = int((guess == c).sum()) + int((y == c).sum())
        if int((y == c).sum()):
            f1s.append(2 * tp / n)
    return float((guess == y).float().mean()), sum(f1s) / len(f1s)


def fit_relation_probes(
    features: Float[Tensor, "boundary pair feature"],
    labels: Int[Tensor, " pair"],
    words: Int[Tensor, "pair 2"],
    *,
    classes: Sequence[str] | None = None,
    boundaries: Sequence[str] | None = None,
    keys: Int[Tensor, "pair key"] | None = None,
    test_fraction: float = 0.4,
    validation_fraction: float = 0.25,
    hidden: int | None = None,
    epochs: int = 400,
    lr: float = 1e-3,
    patience: int = 40,
    min_per_class: int = 8,
    seed: int = 0,
) -> RelationProbes:
    """Linear and MLP probes of the labels from ``features`` (per boundary), with the test
    pairs over held-out words and the control task on shuffled labels.

    Args:
        features: ``[h_a ; h_b]`` of every pair at every boundary; ``labels`` their classes;
            ``words`` their two word ids.
        keys: Pairs are balanced by truncation within each distinct key row (e.g. the two
            positions: position alone then tells nothing); None: over all pairs.
        test_fraction: Share of the words held out for testing (test pairs: both words held
            out; pairs mixing test and other words are dropped).
        validation_fraction: Share of the remaining words held out of fitting for early
            stopping (validation pairs: at least one such word).
        hidden: Width of the MLP's first layer (then ``hidden // 2``, ReLU; None: half the
            feature size, i.e. ``d_model``, within 16..128); ``epochs``,
            ``lr`` (Adam, full batch; 10x for the linear probe), ``patience``: training.
        min_per_class: Fewest balanced pairs per class and split.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> labels, words = torch.arange(1000) % 2, torch.randint(0, 40, (1000, 2), generator=g)
        >>> features = torch.randn(1, 1000, 8, generator=g) + labels[None, :, None]
        >>> result = fit_relation_probes(features, labels, words)
        >>> result.linear_accuracy.item() > 0.6, result.words_of("test") & result.words_of("fit")
        (True, set())
    """
    check_number("test_fraction", test_fraction, minimum=0, maximum=1, open_min=True, open_max=True)
    check_number("validation_fraction", validation_fraction, minimum=0, maximum=1, open_min=True,
                 open_max=True)  # fmt: skip
    check_number("lr", lr, minimum=0, open_min=True)
    opts = {"lr": lr, "seed": check_int("seed", seed, minimum=0)}
    opts |= {"epochs": check_int("epochs", epochs, minimum=1)}
    opts |= {"patience": check_int("patience", patience, minimum=1)}
    need = check_int("min_per_class", min_per_class, minimum=1)
    hidden = check_int("hidden", hidden, minimum=1, none=True)
    if not isinstance(features, Tensor) or features.ndim != 3 or not features.is_floating_point():
        raise IterationHeadsError(
            f"features of shape {tuple(getattr(features, 'shape', ()))}, expected a float "
            "tensor [boundary, pair, feature]"
        )
    n = features.shape[1]
    hidden = hidden or min(128, max(16, features.shape[2] // 2))
    if labels.shape != (n,) or words.shape != (n, 2):
        raise IterationHeadsError(
            f"labels of shape {tuple(labels.shape)} and words {tuple(words.shape)}, expected "
            f"({n},) and ({n}, 2) for {n} pairs"
        )
    k = (int(labels.max()) + 1 if n else 0) if classes is None else len(classes)
    if n == 0 or int(labels.min()) < 0 or int(labels.max()) >= k:
        raise IterationHeadsError(
            f"labels in {labels.min().item() if n else None}..{labels.max().item() if n else None}"
            f", expected class indices in 0..{k - 1} (one per pair, at least one pair)"
        )
    if keys is not None and (keys.ndim != 2 or keys.shape[0] != n):
        raise IterationHeadsError(f"keys of shape {tuple(keys.shape)}, expected ({n}, key)")
    classes = tuple(classes or (str(c) for c in range(k)))
    boundaries = tuple(boundaries or (str(b) for b in range(features.shape[0])))
    g = torch.Generator().manual_seed(seed)
    vocab = words.unique()
    vocab = vocab[torch.randperm(len(vocab), generator=g)]
    n_test = max(1, round(test_fraction * len(vocab)))
    n_val = max(1, round(validation_fraction * (len(vocab) - n_test)))
    role = torch.full((int(vocab.max()) + 1,), -1, dtype=torch.long)
    role[vocab] = 0
    role[vocab[:n_test]], role[vocab[n_test : n_test + n_val]] = 2, 1
    a, b = role[words[:, 0]], role[words[:, 1]]
    keys = torch.zeros(n, 1, dtype=torch.long) if keys is None else keys
    split = torch.full((n,), -1, dtype=torch.long)
    index, control = [], labels.clone()
    members = [(a == 0) & (b == 0), (a >= 0) & (b >= 0) & (a < 2) & (b < 2) & (a + b > 0)]
    for s, name in enumerate(SPLITS):  # validation: training words, one held out of fitting
        chosen = (members[s] if s < 2 else (a == 2) & (b == 2)).nonzero().flatten()
        kept = _balanced(labels, keys, chosen, k, g)
        per_class = min(int((labels[kept] == c).sum()) for c in range(k))
        if per_class < need:
            raise IterationHeadsError(
                f"{per_class} balanced {name} pairs per class, expected at least "
                f"min_per_class={need}: give more prompts (or lower min_per_class)"
            )
        split[kept] = s
        control[kept] = labels[kept][torch.randperm(len(kept), generator=g)]
        index.append(kept)
    counts = {name: {c: int((labels[i] == j).sum()) for j, c in enumerate(classes)}
              for name, i in zip(SPLITS, index, strict=True)}  # fmt: skip
    test_labels = labels[index[2]]
    chance = float(torch.bincount(test_labels, minlength=k).max()) / len(test_labels)
    out: dict[str, list[float]] = {}
    for x in features.float():
        mean, std = x[index[0]].mean(0), x[index[0]].std(0) + 1e-6
        fit, val, test = ((x[i] - mean) / std for i in index)
        for name, y in (("", labels), ("control_", control)):
            for probe_name, width in (("linear", 0), ("mlp", hidden)):
                probe = _train(fit, y[index[0]], val, y[index[1]], width, k, opts)
                accuracy, f1 = _scores(probe, test, y[index[2]], k)
                suffix = "" if name else "_accuracy"  # control_linear, linear_accuracy, ...
                out.setdefault(f"{name}{probe_name}{suffix}", []).append(accuracy)
                if not name:
                    out.setdefault(f"{probe_name}_f1", []).append(f1)
                if probe_name == "mlp":
                    fitted = _scores(probe, fit, y[index[0]], k)[0]
                    out.setdefault(f"{name}mlp_fit{suffix}", []).append(fitted)
    return RelationProbes(
        boundaries, classes, **{key: torch.tensor(v) for key, v in out.items()}, chance=chance,
        counts=counts, split=split, words=words, seed=seed,
    )  # fmt: skip


def relation_probes(
    model: Any,
    pairs: RelationPairs | OntologyProblems,
    *,
    layers: Sequence[int] | None = None,
    match_positions: bool = True,
    batch_size: int = 64,
    seed: int = 0,
    **options: Any,
) -> RelationProbes:
    """Probes of the relation between two words at every layer boundary of ``model``.

    Args:
        model: A TransformerLens model (native or HuggingFace bridge).
        pairs: Labelled pairs
            (:func:`~iteration_heads.pathways.probing_pairs.relation_pairs`,
            :func:`~iteration_heads.pathways.probing_pairs.prontoqa_pairs`) or ontology
            problems (their pairs by
            :func:`~iteration_heads.pathways.probing_pairs.ontology_pairs`).
        layers: Boundary indices, ``0..n_layers`` (``i < n_layers``: ``resid_pre`` of block
            ``i``; ``n_layers``: the final ``resid_post``); None: every one.
        match_positions: Balance the classes within each pair of positions.
        batch_size: Prompts per forward pass; ``seed`` and ``options`` go to
            :func:`fit_relation_probes`.

    Example:
        >>> from iteration_heads import zoo
        >>> from iteration_heads.experiments.ontology_study import model_ontology
        >>> from iteration_heads.tasks import make_ontology_problems
        >>> model = zoo.load("ontology")
        >>> problems = make_ontology_problems(model_ontology(model), 500, seed=1, kind="fictional")
        >>> result = relation_probes(model, problems, layers=[0, 4], epochs=50)
        >>> result.boundaries, result.chance
        (('0_pre', 'final_post'), 0.5)
    """
    pairs = ontology_pairs(pairs) if isinstance(pairs, OntologyProblems) else pairs
    if not isinstance(pairs, RelationPairs):
        raise IterationHeadsError(
            f"pairs must be RelationPairs or OntologyProblems, got {type(pairs).__name__}"
        )
    n_layers = int(model.cfg.n_layers)
    layers = list(range(n_layers + 1)) if layers is None else list(layers)
    for layer in layers:
        check_int("layers", layer, minimum=0, maximum=n_layers)
    if not layers:
        raise IterationHeadsError(f"layers=[], expected boundary indices in 0..{n_layers}")
    size = check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=0)
    if pairs.tokens.shape[1] > int(model.cfg.n_ctx):
        raise IterationHeadsError(
            f"prompts of {pairs.tokens.shape[1]} positions, expected at most the model's "
            f"n_ctx={int(model.cfg.n_ctx)}"
        )
    names = [resid_pre_hook(i) if i < n_layers else f"blocks.{n_layers - 1}.hook_resid_post"
             for i in layers]  # fmt: skip
    features = torch.zeros(len(layers), len(pairs), 2 * int(model.cfg.d_model))
    device = device_of(model)
    with evaluating(model):
        for start in range(0, len(pairs.tokens), size):
            rows = (pairs.example >= start) & (pairs.example < start + size)
            batch = pairs.tokens[start : start + size].to(device)
            _, cache = cached_run(model, batch, names_filter=lambda n: n in names)
            ex, pos = pairs.example[rows] - start, pairs.positions[rows]
            for b, name in enumerate(names):
                h = cache[name].float().cpu()
                features[b, rows] = torch.cat([h[ex, pos[:, 0]], h[ex, pos[:, 1]]], -1)
    boundaries = [f"{i}_pre" if i < n_layers else "final_post" for i in layers]
    keys = pairs.positions if match_positions else None
    return fit_relation_probes(features, pairs.labels, pairs.words, classes=pairs.classes,
                               boundaries=boundaries, keys=keys, seed=seed, **options)  # fmt: skip
