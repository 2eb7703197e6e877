"""One verdict per training seed, combined into the partition's verdict: a single seed's model can
look at the face by luck, so `face` must hold in every seed, and a family counts when a majority of
seeds name it.

Rule (combine_verdicts):
1. `inconclusive` when a class has fewer test identities than MIN_IDENTITIES (verdict.py);
2. every family named by more than half of the seeds is named (`background+quality`, ...);
3. `chance` when more than half of the seeds say `chance`;
4. `face` only when every seed says `face`;
5. `inconclusive` otherwise (the seeds disagree, or some are inconclusive).
The intervals and effects reported beside it stay those of the pooled audit (correctness averaged
over the seeds' models); the pooled audit's own verdict is kept as `verdict_pooled`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from beauty_pipeline.data.families import FAMILIES
from beauty_pipeline.explain.audit import CLASS_NAMES, TrainedModel, shortcut_audit
from beauty_pipeline.explain.verdict import MIN_IDENTITIES, Verdict, too_few_identities


def one_seed(trained: TrainedModel, index: int) -> TrainedModel:
    """The partition's model restricted to one training seed's weights."""
    return replace(trained, weights=(trained.weights[index],))


def identities_per_class(manifest: pd.DataFrame) -> dict[str, int]:
    """Distinct test identities of each class, by class name."""
    test = manifest[manifest["split"] == "test"]
    return {name: int(test.loc[test["looks"] == label, "person"].nunique())
            for label, name in enumerate(CLASS_NAMES)}


def combine_verdicts(per_seed: Sequence[Verdict], identities: dict[str, int] | None = None,
                     minimum: int = MIN_IDENTITIES) -> Verdict:
    """The partition's verdict from its seeds' verdicts (see the module docstring)."""
    if not per_seed:
        raise ValueError("combine_verdicts needs at least one seed's verdict")
    few = too_few_identities(identities, minimum) if identities is not None else None
    if few is not None:
        return few
    labels = ",".join(v.label for v in per_seed)
    majority = len(per_seed) / 2
    votes: dict[str, int] = {}
    for verdict in per_seed:
        for family in verdict.named:
            votes[family] = votes.get(family, 0) + 1
    named = [f for f, n in votes.items() if n > majority]
    if named:
        ordered = tuple([f for f in FAMILIES if f in named] + [f for f in named if f not in FAMILIES])
        return Verdict("+".join(ordered), ordered, tuple(
            f"{f} named in {votes[f]} of {len(per_seed)} seeds ({labels})" for f in ordered))
    if sum(v.label == "chance" for v in per_seed) > majority:
        return Verdict("chance", (), (f"chance in most seeds ({labels})",))
    if all(v.label == "face" for v in per_seed):
        return Verdict("face", (), (f"face in every seed ({labels})",))
    return Verdict("inconclusive", (), (f"the seeds do not all say face and name no family in a "
                                        f"majority ({labels})",))


def audit_per_seed(trained: TrainedModel, manifest: pd.DataFrame, *args, **kwargs) -> dict:
    """shortcut_audit once per training seed and once pooled; the pooled result carries the
    combined verdict, `verdict_per_seed` ('face,face,inconclusive') and each seed's reasons."""
    pooled = shortcut_audit(trained, manifest, *args, **kwargs)
    if len(trained.weights) == 1:
        runs = [pooled]
    else:
        runs = [shortcut_audit(one_seed(trained, i), manifest, *args, **kwargs)
                for i in range(len(trained.weights))]
    per_seed = [Verdict(r["verdict"], tuple(r["named_families"]), tuple(r["verdict_reasons"]))
                for r in runs]
    identities = identities_per_class(manifest)
    combined = combine_verdicts(per_seed, identities)
    return {**pooled, "verdict": combined.label, "named_families": list(combined.named),
            "verdict_reasons": combined_reasons(combined, per_seed),
            "verdict_pooled": pooled["verdict"],
            "verdict_per_seed": ",".join(v.label for v in per_seed),
            "per_seed": [{"seed_index": i, "verdict": v.label, "named_families": list(v.named),
                          "reasons": list(v.reasons), "acc_original": r["acc_original"]}
                         for i, (v, r) in enumerate(zip(per_seed, runs, strict=True))],
            "test_identities_per_class": identities, "min_identities": MIN_IDENTITIES}


def combined_reasons(combined: Verdict, per_seed: Sequence[Verdict]) -> list[str]:
    """The combination's reasons, then each seed's; a lone seed whose verdict stands speaks alone
    (no "the seeds do not all say face" above its real reason)."""
    if len(per_seed) == 1:
        own = list(per_seed[0].reasons)
        return own if combined.label == per_seed[0].label else [*combined.reasons, *own]
    return [*combined.reasons, *(f"seed {i + 1}: {v.label}: " + "; ".join(v.reasons)
                                 for i, v in enumerate(per_seed))]
