"""Source transfer: does a model's accuracy survive photos of the same class from another source?

A model that learned the label (how celebrity faces look) keeps calling celebrities from
elsewhere `celebrity`; one that learned the source (how the celebrity photos were made) falls to
chance, or below, on them. `transfer_acc_<class>` is the share of one class's transfer photos
called that class, with an identity-bootstrap interval. The post-step `with_source` adds `source`
to the verdict's named families when in-source accuracy is high and transfer accuracy is not,
by the thresholds in explain.verdict.Thresholds (transfer_*).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from beauty_pipeline.explain.audit import Predictor
from beauty_pipeline.explain.stats import Estimate, IdentityBootstrap
from beauty_pipeline.explain.verdict import THRESHOLDS, Thresholds, Verdict
from beauty_pipeline.training.cache import decoded_images
from beauty_pipeline.training.loop import resolve_device

CLASS_LABELS = {"ordinary": 0, "celebrity": 1}
SOURCE = "source"


def transfer_accuracy(predictions: np.ndarray, label: int, persons, seed: int = 0) -> Estimate:
    """Share of transfer images called `label` (predictions: (seeds, N), averaged over seeds),
    with a 95% interval that resamples the transfer set's identities."""
    predictions = np.atleast_2d(np.asarray(predictions))
    correct = (predictions == label).mean(axis=0)
    persons = np.asarray(persons).astype(str)
    boot = IdentityBootstrap(persons, np.full(len(persons), label), seed)
    return boot.mean(correct)


def score_transfer(trained, faces: pd.DataFrame, keys: list[str], store, cache_dir: Path,
                   batch_size: int = 64, device: str = "auto", seed: int = 0
                   ) -> tuple[dict[str, Estimate], dict[str, int], dict[str, int]]:
    """Every seed's model on the transfer images (keys: one per row of faces, on the model's
    background): per class present, the share called that class, images and identities."""
    estimates, images, identities = {}, {}, {}
    if faces.empty:
        return estimates, images, identities
    predict = Predictor(trained, batch_size, resolve_device(device))
    looks = faces["looks"].astype(int).to_numpy()
    for name, label in CLASS_LABELS.items():
        rows = np.flatnonzero(looks == label)
        if not len(rows):
            continue
        decoded = decoded_images([keys[i] for i in rows], store, trained.image_size, cache_dir)
        persons = faces["person"].astype(str).to_numpy()[rows]
        estimates[name] = transfer_accuracy(predict(np.asarray(decoded)), label, persons, seed)
        images[name], identities[name] = len(rows), len(set(persons))
    return estimates, images, identities


def transfer_metrics(estimates: dict[str, Estimate], images: dict[str, int],
                     identities: dict[str, int]) -> dict[str, float]:
    """transfer_acc_<class> (+ _ci_low/_ci_high), transfer_images_<class>,
    transfer_identities_<class>: the names MLflow and the report use."""
    metrics: dict[str, float] = {}
    for name, estimate in estimates.items():
        metrics.update(estimate.as_metrics(f"transfer_acc_{name}"))
        metrics[f"transfer_images_{name}"] = images[name]
        metrics[f"transfer_identities_{name}"] = identities[name]
    return metrics


def fell_to_chance(in_source: Estimate, transfer: Estimate,
                   thresholds: Thresholds = THRESHOLDS) -> bool:
    """In-source accuracy high, transfer accuracy at chance or below (interval reaches the chance
    limit) and clearly lower than in-source."""
    if not all(math.isfinite(v) for v in (in_source.value, transfer.value, transfer.low)):
        return False
    return (in_source.value >= thresholds.transfer_in_source
            and transfer.low <= thresholds.transfer_chance
            and transfer.value <= in_source.value - thresholds.transfer_drop)


def with_source(verdict: Verdict, in_source: Estimate, transfers: dict[str, Estimate],
                thresholds: Thresholds = THRESHOLDS) -> Verdict:
    """The verdict with `source` among its named families when any class's transfer accuracy
    fell to chance; unchanged otherwise (and always for `chance`)."""
    if verdict.label == "chance":
        return verdict
    fallen = {name: t for name, t in transfers.items() if fell_to_chance(in_source, t, thresholds)}
    if not fallen:
        return verdict
    reasons = tuple(f"source: {name} photos from another source called {name} "
                    f"{t.value:.2f} [{t.low:.2f}, {t.high:.2f}] vs in-source accuracy "
                    f"{in_source.value:.2f} (>= {thresholds.transfer_in_source}; transfer low "
                    f"end <= {thresholds.transfer_chance}, drop >= {thresholds.transfer_drop})"
                    for name, t in fallen.items())
    named = (*verdict.named, SOURCE) if SOURCE not in verdict.named else verdict.named
    return replace(verdict, label="+".join(named), named=tuple(named),
                   reasons=(*verdict.reasons, *reasons))


def apply_to_audit(result: dict, transfers: dict[str, Estimate],
                   thresholds: Thresholds = THRESHOLDS) -> dict:
    """An audit result (explain.audit.shortcut_audit's dict) with the transfer metrics and the
    verdict after the source post-step; the rule's own verdict stays in `verdict_before_transfer`."""
    before = Verdict(result["verdict"], tuple(result["named_families"]),
                     tuple(result["verdict_reasons"]))
    in_source = Estimate(result["acc_original"], result["acc_original_ci_low"],
                         result["acc_original_ci_high"])
    after = with_source(before, in_source, transfers, thresholds)
    return {**result, "verdict_before_transfer": before.label, "verdict": after.label,
            "named_families": list(after.named), "verdict_reasons": list(after.reasons)}
