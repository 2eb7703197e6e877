"""Source transfer: does a model's accuracy survive photos of the same class from another source?

A model that learned the label (how celebrity faces look) keeps calling celebrities from
elsewhere `celebrity`; one that learned the source (how the celebrity photos were made) falls to
chance, or below, on them. `transfer_acc_<class>` is the share of one class's transfer photos
called that class, with an identity-bootstrap interval. The post-step `with_source` adds `source`
to the verdict's named families when in-source accuracy is high and transfer accuracy is not,
by the thresholds in explain.verdict.Thresholds (transfer_*).

A fall alone does not say why: photos from another source may simply be harder to see (blurrier,
noisier, more compressed), and a model that learned the label can fail on them too. The control
(`transfer_control_acc_<class>`) is the model's own in-source test photos of the class made as
hard to see as the transfer photos, scored the same way. It moves only where the transfer photos
are harder to see than the study's train photos of *every* class (softer than the softest,
blockier than the blockiest, noisier than the noisiest: data.families' measures), to the transfer
photos' measured level: a quality inside the range the model was trained on is not difficulty,
and moving a class's photos there would only strip its own pipeline's trace (the source itself).
With no such move the control is the class's test photos as they are. When the control falls as
well, the transfer fall is explained by image difficulty: `source` is not named and the transfer
test is recorded as untestable in the verdict's reasons.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from beauty_pipeline.data.families import (
    ClassProfile,
    blur,
    class_profile,
    sharpness,
    to_compression,
    to_noise,
    to_sharpness,
)
from beauty_pipeline.explain.audit import Predictor, split_rows
from beauty_pipeline.explain.stats import Estimate, IdentityBootstrap
from beauty_pipeline.explain.verdict import THRESHOLDS, Thresholds, Verdict
from beauty_pipeline.training.cache import decoded_images
from beauty_pipeline.training.loop import resolve_device

CLASS_LABELS = {"ordinary": 0, "celebrity": 1}
SOURCE = "source"
# how close the control is brought to the transfer photos' quality: a tighter band than the
# family probes' (factor 2 in sharpness, 2 grey levels of noise), so the control is about as hard
# to see as the transfer set and never clearly easier
CONTROL_SHARPNESS_BAND = 1.25
CONTROL_NOISE_BAND = 0.5
CONTROL_BLOCKINESS_MARGIN = 0.05  # JPEG blocking ratio (1 = none): a visible step of blocking
CONTROL_BLUR_SIGMAS = tuple(np.round(np.arange(0.4, 4.01, 0.1), 2))  # at a 96 px side


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


def quality_profile(images: np.ndarray) -> ClassProfile:
    """The transfer photos' image quality (median sharpness, noise, JPEG blocking and chroma
    subsampling at model size), by the measures the family probes use."""
    images = np.asarray(images)
    return class_profile(images, np.full(len(images), np.nan))


def softened_to(image: np.ndarray, target: float) -> np.ndarray:
    """A sharper image blurred to the sharpness closest to `target` (a fine search of Gaussian
    blurs, in pixels of a 96 px side, as the noise move scales); a softer one sharpened by the
    profile move; within CONTROL_SHARPNESS_BAND of the target: as is."""
    current = sharpness(image)
    if target / CONTROL_SHARPNESS_BAND <= current <= target * CONTROL_SHARPNESS_BAND:
        return image
    if current < target:
        return to_sharpness(image, target, CONTROL_SHARPNESS_BAND)
    scale = image.shape[0] / 96
    candidates = [blur(image, sigma * scale) for sigma in CONTROL_BLUR_SIGMAS]
    return min(candidates, key=lambda c: abs(math.log((sharpness(c) + 1e-6) / target)))


CONTROL_MOVES = ("quality", "compression", "noise")


def harder_than_study(transfer: ClassProfile, study: Sequence[ClassProfile]) -> tuple[str, ...]:
    """Where the transfer photos are harder to see than the study's photos of every class (the
    range the model was trained on): softer than the softest class (beyond the sharpness band),
    blockier than the blockiest, noisier than the noisiest (beyond the noise band). A quality
    inside that range is one the model has seen; a fall there cannot be put down to it."""
    moves = []
    if transfer.sharpness < min(p.sharpness for p in study) / CONTROL_SHARPNESS_BAND:
        moves.append("quality")
    if transfer.blockiness > max(p.blockiness for p in study) + CONTROL_BLOCKINESS_MARGIN:
        moves.append("compression")
    if transfer.noise > max(p.noise for p in study) + CONTROL_NOISE_BAND:
        moves.append("noise")
    return tuple(moves)


def as_hard_to_see(images: np.ndarray, profile: ClassProfile, seed: int = 0,
                   moves: Sequence[str] = CONTROL_MOVES) -> np.ndarray:
    """Each image moved to the profile's sharpness, then its JPEG blocking, then its noise (the
    noise last: it is measured on the transfer photos as they are, after their own encoding),
    along `moves` only: the same photo, as hard to see as the profile's."""
    out = []
    for i, image in enumerate(np.asarray(images)):
        if "quality" in moves:
            image = softened_to(image, profile.sharpness)
        if "compression" in moves:
            image = to_compression(image, profile.blockiness, profile.subsampled)
        if "noise" in moves:
            image = to_noise(image, profile.noise, seed * 100_003 + i, CONTROL_NOISE_BAND)
        out.append(image)
    return np.stack(out) if out else np.asarray(images)


@dataclass(frozen=True)
class TransferControl:
    """One class's control: its accuracy and the moves that made it (none: the transfer photos
    are no harder to see than the study's, and the control is the class's own test photos)."""

    estimate: Estimate
    moves: tuple[str, ...]


def score_transfer_controls(trained, manifest: pd.DataFrame, faces: pd.DataFrame, keys: list[str],
                            store, cache_dir: Path, batch_size: int = 64, device: str = "auto",
                            seed: int = 0) -> dict[str, TransferControl]:
    """Per class with transfer photos: the model's own test photos of that class (the manifest's
    test split) made as hard to see as the transfer photos where those are harder than the
    study's train photos of every class, the share called the class, with an interval over the
    test identities (NaN when the test split has none of the class)."""
    controls: dict[str, TransferControl] = {}
    if faces.empty:
        return controls
    predict = Predictor(trained, batch_size, resolve_device(device))
    test, train = split_rows(manifest, "test"), split_rows(manifest, "train")
    side = trained.image_size
    study = [quality_profile(decoded_images(
        train.loc[train["looks"].astype(int) == label, "variant_image_key"].tolist(), store, side,
        cache_dir)) for label in CLASS_LABELS.values() if (train["looks"] == label).any()]
    looks, test_looks = faces["looks"].astype(int).to_numpy(), test["looks"].astype(int).to_numpy()
    for name, label in CLASS_LABELS.items():
        rows, own = np.flatnonzero(looks == label), np.flatnonzero(test_looks == label)
        if not len(rows):
            continue
        if not len(own) or not study:
            controls[name] = TransferControl(Estimate(math.nan, math.nan, math.nan), ())
            continue
        profile = quality_profile(decoded_images([keys[i] for i in rows], store, side, cache_dir))
        moves = harder_than_study(profile, study)
        images = decoded_images(test["variant_image_key"].to_numpy()[own].tolist(), store, side,
                                cache_dir)
        persons = test["person"].astype(str).to_numpy()[own]
        hard = as_hard_to_see(images, profile, seed, moves)
        controls[name] = TransferControl(transfer_accuracy(predict(hard), label, persons, seed),
                                         moves)
    return controls


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


def transfer_control_metrics(controls: dict[str, TransferControl]) -> dict[str, float]:
    """transfer_control_acc_<class> (+ _ci_low/_ci_high): the control beside each transfer set;
    transfer_control_moves_<class>: how many quality moves it took (0: none was harder)."""
    metrics: dict[str, float] = {}
    for name, control in controls.items():
        metrics.update(control.estimate.as_metrics(f"transfer_control_acc_{name}"))
        metrics[f"transfer_control_moves_{name}"] = len(control.moves)
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


def explained_by_difficulty(in_source: Estimate, transfer: Estimate, control: Estimate,
                            thresholds: Thresholds = THRESHOLDS) -> bool:
    """The control (in-source photos as hard to see as the transfer photos) falls to chance as
    well, or the transfer set is not clearly below it: image difficulty accounts for the fall.
    An unmeasured (NaN) control explains nothing away but proves nothing either: True."""
    if not all(math.isfinite(v) for v in (control.value, control.low)):
        return True
    return (fell_to_chance(in_source, control, thresholds)
            or transfer.value > control.value - thresholds.transfer_drop)


def _fmt(estimate: Estimate) -> str:
    return f"{estimate.value:.2f} [{estimate.low:.2f}, {estimate.high:.2f}]"


def with_source(verdict: Verdict, in_source: Estimate, transfers: dict[str, Estimate],
                thresholds: Thresholds = THRESHOLDS,
                controls: dict[str, TransferControl] | None = None) -> Verdict:
    """The verdict with `source` among its named families when any class's transfer accuracy
    fell to chance and (when controls are given) its control did not; a fall the control shares
    is recorded as an untestable transfer test; unchanged otherwise (and always for `chance`)."""
    if verdict.label == "chance":
        return verdict
    fallen = {name: t for name, t in transfers.items() if fell_to_chance(in_source, t, thresholds)}
    controls = controls or {}
    untestable = {name: t for name, t in fallen.items() if name in controls and
                  explained_by_difficulty(in_source, t, controls[name].estimate, thresholds)}
    reasons = tuple(f"transfer untestable: {name} photos from another source called {name} "
                    f"{_fmt(t)}, but the model's own test photos of the class made as hard to see "
                    f"({_moves(controls[name])}) are called {name} only "
                    f"{_fmt(controls[name].estimate)} (in-source {in_source.value:.2f}): the fall "
                    f"is explained by image difficulty and does not show the source"
                    for name, t in untestable.items())
    named = verdict.named
    for name, t in fallen.items():
        if name in untestable:
            continue
        control = (f", control ({_moves(controls[name])}) {_fmt(controls[name].estimate)}"
                   if name in controls else "")
        reasons += (f"source: {name} photos from another source called {name} {_fmt(t)} vs "
                    f"in-source accuracy {in_source.value:.2f}{control} (>= "
                    f"{thresholds.transfer_in_source}; transfer low end <= "
                    f"{thresholds.transfer_chance}, drop >= {thresholds.transfer_drop})",)
        named = (*named, SOURCE) if SOURCE not in named else named
    if not reasons:
        return verdict
    label = "+".join(named) if named != verdict.named else verdict.label
    return replace(verdict, label=label, named=tuple(named), reasons=(*verdict.reasons, *reasons))


def _moves(control: TransferControl) -> str:
    """The control's moves in words, for a reason."""
    if not control.moves:
        return "no harder to see than the study's own photos: unchanged"
    words = {"quality": "sharpness", "compression": "JPEG blocking", "noise": "noise"}
    return "the transfer photos' " + ", ".join(words[m] for m in control.moves)


def apply_to_audit(result: dict, transfers: dict[str, Estimate],
                   thresholds: Thresholds = THRESHOLDS,
                   controls: dict[str, TransferControl] | None = None) -> dict:
    """An audit result (explain.audit.shortcut_audit's dict) with the verdict after the source
    post-step (controls: score_transfer_controls'); the rule's own verdict stays in
    `verdict_before_transfer`."""
    before = Verdict(result["verdict"], tuple(result["named_families"]),
                     tuple(result["verdict_reasons"]))
    in_source = Estimate(result["acc_original"], result["acc_original_ci_low"],
                         result["acc_original_ci_high"])
    after = with_source(before, in_source, transfers, thresholds, controls)
    return {**result, "verdict_before_transfer": before.label, "verdict": after.label,
            "named_families": list(after.named), "verdict_reasons": list(after.reasons)}
