"""The two claims of the multi-hop study that read the residual stream and the generation:
relation probing (Dutta et al. §2.5) and the horizon experiment (§2.9), in the form of
:func:`~iteration_heads.experiments.ontology_results.ontology_claims`.
"""

from __future__ import annotations

import torch

from iteration_heads.experiments.ontology_study import HORIZON_HOPS, OntologyStudy


def claim(text: str, paper: str, ours: str, holds: str, why: str = "") -> dict[str, str]:
    """One claim row: what it says, what Dutta et al. report, what we measured, whether it
    holds (``yes``, ``partly``, ``no``) and why not."""
    return {"claim": text, "paper": paper, "ours": ours, "holds": holds, "why": why}


def probing_claim(study: OntologyStudy) -> dict[str, str]:
    """Relation probes: a linear probe fails where an MLP succeeds? (the model's probes against
    the same probes on random weights and on shuffled labels)."""
    probes, random = study.probes["model"], study.probes.get("random weights")
    linear, mlp = probes.linear_accuracy.tolist(), probes.mlp_accuracy.tolist()
    control = torch.cat([probes.control_linear, probes.control_mlp])
    peak = max(range(len(mlp)), key=mlp.__getitem__)
    both = None if random is None else torch.cat([random.linear_accuracy, random.mlp_accuracy])
    floor = probes.chance if both is None else float(both.max())
    readable, nonlinear = mlp[peak] - floor >= 0.05, mlp[peak] - linear[peak] >= 0.05
    onset = next(b for b, m in zip(probes.boundaries, mlp, strict=True) if m >= mlp[peak] - 0.03)
    per = ", ".join(f"{b} {a:.2f}/{m:.2f}" for b, a, m in zip(probes.boundaries, linear, mlp,
                                                                strict=True))  # fmt: skip
    why = (f"readable from {onset} on (MLP {mlp[peak]:.2f} at best), but the linear probe reads "
           f"it about as well ({linear[peak]:.2f}): 'linear probes fail' is not reproduced"
           if readable else "no probe reads it better than on random weights")  # fmt: skip
    why += ("; separability falls after its peak" if mlp[-1] <= mlp[peak] - 0.03 else
            "; separability stays up to the last boundary, it does not fall")  # fmt: skip
    return claim(
        "the relation between two words of the context (related / unrelated) is readable from "
        "the residual stream only non-linearly: a linear probe fails, an MLP probe succeeds, "
        "best in the middle layers",
        "linear probes fail; the MLP probe peaks at layers 10-15 of 32 and falls after about "
        "layer 16 (the same curve zero- and few-shot)",
        f"test accuracy on held-out words, linear/MLP per boundary (chance {probes.chance:.2f}, "
        f"{sum(probes.counts['test'].values())} test pairs): {per}; shuffled-label controls "
        f"{float(control.min()):.2f}-{float(control.max()):.2f}"
        + ("" if both is None else f"; random weights {float(both.min()):.2f}-{floor:.2f}"),
        "yes" if readable and nonlinear else "no",
        "" if readable and nonlinear else why,
    )  # fmt: skip


def horizon_claim(study: OntologyStudy) -> dict[str, str]:
    """The horizon: some layer reads the fact from the context until the chain of thought holds
    it (per corruption, matched counts at prefix 0 and once the fact is copied)."""
    result, parts, failed, readers = study.horizon, [], [], set()
    by_fact: dict[str, list[torch.Tensor]] = {}
    assert result is not None
    n, rows, layers = result.n_problems, result.rows, result.layers
    copied = {"first": 1, "last": 2 * HORIZON_HOPS}  # the first prefix holding the fact's copy
    for i, corruption in enumerate(result.corruptions):
        fact, start = corruption.split("@")[0], result.matched[i, : len(layers), 0]
        after = [q for q, k in enumerate(result.prefixes) if k >= copied[fact]]
        late = float(result.matched[i, : len(layers)][:, after].min()) if after else 1.0
        counts = ", ".join(f"L{la} {round(v * n)}" for la, v in zip(layers, start.tolist(),
                                                                     strict=True))  # fmt: skip
        own = round(float(result.matched[i, rows.index("corrupted"), 0]) * n)
        parts.append(f"{corruption!r}: with no prefix {counts} (the corrupted prompt alone "
                     f"{own}); from prefix {copied[fact]}, the fact copied into the chain of "
                     f"thought, at least {round(late * n)} with any one layer patched")  # fmt: skip
        if float(start.min()) > 0.5 or late < 0.8:  # Dutta et al.: 41-49 of 50 once copied
            failed.append(corruption)
        readers.add(layers[int(start.argmin())])
        by_fact.setdefault(fact, []).append(result.matched[i])
    spread = max(float((m - ms[0]).abs().max()) for ms in by_fact.values() for m in ms)
    control = (float(result.matched[:, rows.index("none")].min()),
               float(result.followed[:, rows.index("all")].min()))  # fmt: skip
    late_readers = min(readers) >= study.n_layers / 2
    return claim(
        "horizon: the model reads an ontology fact from the question context, in the early "
        "layers, until the chain of thought has copied it, then relies on the copy (one fact "
        "corrupted; one layer's heads fed the corrupted run while the rest is regenerated)",
        "50 two-hop questions, suffix equal to the gold one: with no prefix only 22-36 of 50 "
        "match when layers 0-6 are patched, 34-44 from layer 7 on; with prefixes 3-4, layers "
        ">= 1 give 41-49 of 50",
        f"regenerated suffixes equal to the clean one, of {n} two-hop questions: "
        + "; ".join(parts) + f". Controls: nothing patched {control[0]:.2f}, every layer "
        f"patched = the corrupted prompt's own generation {control[1]:.2f}; substitutes of one "
        f"fact within {spread:.2f} of each other",
        "no" if failed else "partly" if late_readers else "yes",
        f"for {', '.join(map(repr, failed))} no layer changes half the suffixes, or one still "
        "does once the fact is copied" if failed else
        f"the horizon holds for every corruption; but in {study.n_layers} layers one layer "
        f"reads each fact (L{', L'.join(map(str, sorted(readers)))}, which one depends on the "
        "fact), in the second half, not a band of early layers" if late_readers else "",
    )  # fmt: skip
