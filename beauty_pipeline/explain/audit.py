"""The per-partition audit: contrastive Grad-CAM with FaceMass, and every shortcut family's probes
evaluated with identity-bootstrap intervals, ending in one verdict."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from beauty_pipeline.data.counterfactual import COUNTERFACTUALS
from beauty_pipeline.data.demographics import attribute_mix, strata_accuracy
from beauty_pipeline.data.families import (
    PROFILE_FAMILIES,
    ClassProfile,
    apply,
    class_profile,
    matched_probes,
    profile_sets,
)
from beauty_pipeline.explain.facemass import area_ratio, face_mass, face_regions, source_counts
from beauty_pipeline.explain.gradcam import explain_predicted_and_true
from beauty_pipeline.explain.plots import figure_name, plot_class_averages, plot_overlays, save_heatmap_grid
from beauty_pipeline.explain.stats import Estimate, IdentityBootstrap
from beauty_pipeline.explain.verdict import (
    THRESHOLDS,
    FaceEvidence,
    ProbeEffect,
    Thresholds,
    decide,
)
from beauty_pipeline.storage import ImageStore, atomic_write_bytes, file_lock, frame_digest
from beauty_pipeline.training.cache import decoded_images
from beauty_pipeline.training.checkpoints import load_state
from beauty_pipeline.training.loop import predict_logits, resolve_device, to_input
from beauty_pipeline.training.models import build_model, gradcam_layer_for_size
from beauty_pipeline.vision.crop import ALIGNED_PRIOR_BOX

CLASS_NAMES = ("ordinary", "celebrity")
ACCURACY_SETS = ("original", *COUNTERFACTUALS)


@dataclass(frozen=True)
class TrainedModel:
    """A classifier partition's weights (one file per training seed) and its input size."""

    name: str
    weights: tuple[str, ...]
    image_size: int

    def load(self, device: torch.device, index: int = 0) -> torch.nn.Module:
        model = build_model(self.name)
        model.load_state_dict(load_state(Path(self.weights[index])))
        return model.to(device).eval()


def split_rows(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    return manifest[manifest["split"] == split].reset_index(drop=True)


FAMILY_SETS_VERSION = "3"  # bump when a profile move changes: cached own/other sets are rebuilt


def face_geometry(rows: pd.DataFrame, store: ImageStore, side: int) -> tuple[np.ndarray, list]:
    """Face-box width as a share of the image, and the box centre at model size, per row; each
    row's box is scaled by its own stored image's size (the aligned prior when there is none)."""
    widths, centres = [], []
    for row in rows.itertuples(index=False):
        height, width = store.size(row.variant_image_key)
        box = [getattr(row, k, np.nan) for k in ("face_x0", "face_y0", "face_x1", "face_y1")]
        box = np.asarray(box, dtype=np.float64)
        if not np.isfinite(box).all() or box[2] <= box[0]:
            box = np.asarray(ALIGNED_PRIOR_BOX) * [width, height, width, height]
        widths.append((box[2] - box[0]) / width)
        centres.append(((box[0] + box[2]) / 2 * side / width, (box[1] + box[3]) / 2 * side / height))
    return np.asarray(widths), centres


def person_masks(rows: pd.DataFrame, store: ImageStore, side: int) -> np.ndarray | None:
    """(N, side, side) person masks in [0, 1] from the variant's mask keys (None without them)."""
    if "mask_key" not in rows or (rows["mask_key"].fillna("") == "").any():
        return None
    return np.stack([cv2.resize(store.load(key, "L"), (side, side), interpolation=cv2.INTER_AREA)
                     for key in rows["mask_key"]]).astype(np.float32) / 255.0


def gradcam_audit(trained: TrainedModel, manifest: pd.DataFrame, store: ImageStore, cache_dir: Path,
                  figures_dir: Path, background: str, layer: str = "", overlays: int = 8,
                  batch_size: int = 32, device: str = "auto", seed: int = 0) -> dict:
    """Contrastive heatmaps for every test image (first seed's model); FaceMass per class with
    identity-bootstrap intervals and its lift over a uniform map; class-average and overlay figures."""
    rows = split_rows(manifest, "test")
    device_ = resolve_device(device)
    model = trained.load(device_)
    images = decoded_images(rows["variant_image_key"].tolist(), store, trained.image_size, cache_dir)
    inputs = to_input(np.asarray(images), device_)
    labels = rows["looks"].to_numpy()
    layer = layer or gradcam_layer_for_size(model, trained.name, trained.image_size)
    predicted, true_maps = explain_predicted_and_true(model, model.get_submodule(layer), inputs,
                                                      torch.as_tensor(labels), batch_size)
    shapes = [store.size(key) for key in rows["variant_image_key"]]
    masks, sources = face_regions(rows.to_dict("records"), (trained.image_size,) * 2, shapes,
                                  lambda key: store.load(key, "L"))
    masses, areas = face_mass(true_maps, masks), area_ratio(masks)
    boot = IdentityBootstrap(rows["person"].astype(str), labels, seed)
    result = {"test_images": len(rows), "layer": layer, "explained": "true class, contrastive",
              "face_region_sources": source_counts(sources),
              "face_mass_predicted": float(np.nanmean(face_mass(predicted.heatmaps, masks))),
              "zero_heatmaps": int(np.isnan(masses).sum())}
    for label, name in enumerate(CLASS_NAMES):
        select = labels == label
        estimate = boot.mean(masses, select)
        result.update(estimate.as_metrics(f"face_mass_{name}"))
        result[f"face_mass_lift_{name}"] = estimate.value / float(areas[select].mean())
    overall = boot.mean(masses)
    result.update(overall.as_metrics("face_mass"))
    result["face_area_ratio"] = float(areas.mean())
    result["face_mass_lift"] = overall.value / result["face_area_ratio"]
    figures_dir.mkdir(parents=True, exist_ok=True)
    title = f"{trained.name} / {background}"
    class_figure = plot_class_averages(true_maps, labels, figures_dir / figure_name(
        trained.name, background, "class_average"), title=title)
    pick = np.concatenate([np.flatnonzero(labels == c)[: overlays // 2] for c in (1, 0)])
    overlay_figure = plot_overlays([images[i] for i in pick], true_maps[pick],
                                   figures_dir / figure_name(trained.name, background, "overlays"),
                                   labels=labels[pick], predictions=predicted.predictions[pick])
    result["figures"] = {"class_average": str(class_figure), "overlays": str(overlay_figure)}
    result["figures"]["heatmap_grid"] = str(save_heatmap_grid(  # the UI's inline thumbnail
        images, true_maps, labels, figures_dir / figure_name(trained.name, background, "grid")))
    return result


class Predictor:
    """Predicted labels of every seed's model for any batch of uint8 images, shape (seeds, N)."""

    def __init__(self, trained: TrainedModel, batch_size: int, device: torch.device):
        self.models = [trained.load(device, i) for i in range(len(trained.weights))]
        self.batch_size, self.device = batch_size, device

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        return np.stack([predict_logits(m, images, self.batch_size, self.device).argmax(1)
                         for m in self.models])


def _correct(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-image correctness averaged over seeds."""
    return (predictions == labels[None, :]).mean(axis=0)


def _flip_rate(a: np.ndarray, b: np.ndarray) -> float:
    return float((a != b).mean())


def shortcut_audit(trained: TrainedModel, manifest: pd.DataFrame, store: ImageStore,
                   cache_dir: Path, face_mass_lift: float | Mapping[str, float] | None = None,
                   batch_size: int = 64,
                   device: str = "auto", seed: int = 0,
                   thresholds: Thresholds = THRESHOLDS) -> dict:
    """Accuracy on the test set and its counterfactual sets, the face-feature evidence, every
    family's probes against their controls (with each control's cost), intervals by identity
    bootstrap, and the verdict; face_mass_lift is gradcam_audit's per-class lifts
    ({"celebrity": .., "ordinary": ..}, see class_lifts) or one pooled lift."""
    rows = split_rows(manifest, "test")
    labels = rows["looks"].to_numpy()
    side = trained.image_size
    predict = Predictor(trained, batch_size, resolve_device(device))
    boot = IdentityBootstrap(rows["person"].astype(str), labels, seed)
    everything = decoded_images(manifest["variant_image_key"].tolist(), store, side, cache_dir)
    original = np.asarray(everything[np.flatnonzero((manifest["split"] == "test").to_numpy())])
    sets = {"original": original}
    for name in COUNTERFACTUALS:
        column = f"cf_{name}_key"
        if column in rows and (rows[column] != "").all():
            sets[name] = decoded_images(rows[column].tolist(), store, side, cache_dir)
    predictions = {name: predict(images) for name, images in sets.items()}
    correct = {name: _correct(p, labels) for name, p in predictions.items()}
    result: dict = {"test_images": len(rows), "test_identities": boot.n_groups,
                    "seeds": len(trained.weights)}
    for name, values in correct.items():
        result.update(boot.mean(values).as_metrics(f"acc_{name}"))
    seed_accuracy = (predictions["original"] == labels[None, :]).mean(axis=1)
    result["acc_original_seed_std"] = float(seed_accuracy.std())
    result.update(strata_accuracy(rows, correct["original"], boot))  # known attributes only
    result["attribute_mix"] = attribute_mix(rows)
    probes: list[ProbeEffect] = []
    if {"mixed_same", "mixed_other"} <= set(correct):
        gap = boot.difference(correct["mixed_same"], correct["mixed_other"])
        result.update(gap.as_metrics("bg_gap"))
        cost = boot.difference(correct["original"], correct["mixed_same"])
        result.update(cost.as_metrics("composite_cost"))
        probes.append(ProbeEffect("background", "mixed_other_vs_mixed_same", True, gap,
                                  _flip_rate(predictions["mixed_same"], predictions["mixed_other"]),
                                  cost))
    for probe in matched_probes(side):
        changed = predict(apply(original, probe.transform))
        effect = boot.difference(correct["original"], _correct(changed, labels))
        probes.append(ProbeEffect(probe.family, probe.name, False, effect,
                                  _flip_rate(predictions["original"], changed)))
    swaps = profile_swaps(manifest, store, side, seed, cache_dir, everything)
    result["class_profiles"] = swaps.profiles
    result["family_sets"] = "built" if swaps.built else "cached"
    for family in PROFILE_FAMILIES:
        own_images, other_images = swaps.sets[family]
        own, other = predict(own_images), predict(other_images)
        effect = boot.difference(_correct(own, labels), _correct(other, labels))
        cost = boot.difference(correct["original"], _correct(own, labels))
        probes.append(ProbeEffect(family, "profile_swap", True, effect, _flip_rate(own, other),
                                  cost))
    evidence = face_evidence(correct, labels, boot, result, swap_area_share(rows))
    result["probes"] = [{"family": p.family, "probe": p.probe, "controlled": p.controlled,
                         "effect": p.effect.value, "ci_low": p.effect.low, "ci_high": p.effect.high,
                         "threshold": p.threshold(thresholds), "flip_rate": p.flip_rate,
                         **({} if p.control_cost is None else {
                             "control_cost": p.control_cost.value,
                             "control_cost_ci_low": p.control_cost.low,
                             "control_cost_ci_high": p.control_cost.high})}
                        for p in probes]
    for probe in probes:
        if probe.controlled:
            result.update(probe.effect.as_metrics(f"family_{probe.family}_drop"))
            result[f"family_{probe.family}_flip"] = probe.flip_rate
            if probe.control_cost is not None:
                result.update(probe.control_cost.as_metrics(f"family_{probe.family}_control_cost"))
        else:
            result.update(probe.effect.as_metrics(f"matched_{probe.probe}_drop"))
            result[f"matched_{probe.probe}_flip"] = probe.flip_rate
    verdict = decide(_estimate(result, "acc_original"), _estimate(result, "acc_face_only"),
                     _estimate(result, "acc_background_only"), probes, face_mass_lift, thresholds,
                     evidence)
    result.update(verdict=verdict.label, named_families=list(verdict.named),
                  verdict_reasons=list(verdict.reasons))
    return result


def class_lifts(gradcam: Mapping) -> dict[str, float]:
    """gradcam_audit's per-class FaceMass lifts, the ones the verdict reads."""
    return {name: float(gradcam.get(f"face_mass_lift_{name}", float("nan"))) for name in CLASS_NAMES}


def _in_class(values: np.ndarray, select: np.ndarray) -> np.ndarray:
    """Values of one class, NaN elsewhere (the bootstrap skips NaN)."""
    return np.where(select, values, np.nan)


def _class_drop(boot: IdentityBootstrap, original: np.ndarray, changed: np.ndarray,
                select: np.ndarray | None) -> Estimate:
    """acc(original) - acc(changed), over one class's images (all with select None)."""
    if select is None:
        return boot.difference(original, changed)
    return boot.difference(_in_class(original, select), _in_class(changed, select))


FACE_TESTS = (  # (removed-or-swapped set, its control set, metric names)
    ("face_features_removed", "face_features_control", "face_features_drop",
     "face_features_control_drop"),
    ("face_swapped", "face_swap_control", "face_swap_drop", "face_swap_control_drop"),
)
FACE_METRIC_PREFIXES = ("face_features_", "face_swap")  # every metric the face tests write


def face_evidence(correct: dict, labels: np.ndarray, boot: IdentityBootstrap,
                  result: dict, area_share: float | None = None) -> dict[str, FaceEvidence] | None:
    """Accuracy lost when the facial features are removed (or the inner face is taken from an
    identity of the other class) and when the same area elsewhere on the person is (the controls),
    pooled and per class, into `result`. The verdict's evidence: removal pooled (a face model's
    decision collapses without features) and the swap in each class (removal cannot speak for the
    class a featureless face is read as). area_share: the swap control's pixels over the swap's
    (swap_area_share). None when the variant has no face sets."""
    if not {name for test in FACE_TESTS for name in test[:2]} <= set(correct):
        return None
    original = correct["original"]
    if area_share is not None:
        result["face_swap_control_area_share"] = area_share
    evidence = {}
    for changed, control, metric, control_metric in FACE_TESTS:
        for suffix, select in (("", None),
                               *((f"_{n}", labels == c) for c, n in enumerate(CLASS_NAMES))):
            pair = FaceEvidence(*(_class_drop(boot, original, correct[name], select)
                                  for name in (changed, control)),
                                _class_drop(boot, correct[control], correct[changed], select))
            result.update(pair.features.as_metrics(f"{metric}{suffix}"))
            result.update(pair.control.as_metrics(f"{control_metric}{suffix}"))
            result.update(pair.beyond_control.as_metrics(f"{metric}_beyond_control{suffix}"))
            if changed == "face_features_removed" and not suffix:
                evidence["all classes, features removed"] = pair
            elif changed == "face_swapped" and suffix:
                evidence[f"{suffix[1:]}, inner face from the other class"] = replace(
                    pair, control_area_share=area_share)
    return evidence


def swap_area_share(rows: pd.DataFrame) -> float | None:
    """Pixels the swap's control changed over the pixels the swap changed (None when unrecorded)."""
    if not {"cf_swap_area", "cf_swap_control_area"} <= set(rows):
        return None
    swapped = float(rows["cf_swap_area"].sum())
    return float(rows["cf_swap_control_area"].sum()) / swapped if swapped > 0 else 0.0


@dataclass(frozen=True)
class ProfileSwaps:
    """Every profile family's own- and other-class versions of the test set, the class profiles
    they were moved to, and whether this call built them (False: read from the cache)."""

    sets: dict[str, tuple[np.ndarray, np.ndarray]]
    profiles: dict
    built: bool


def profile_swaps_key(manifest: pd.DataFrame, side: int, seed: int) -> str:
    """Content key of the swapped sets: the variant's data (every image, split and label), the
    image size, the seed and the families' code version; no model enters it."""
    digest = frame_digest(manifest, ["sample_id", "variant_image_key", "split", "looks"] +
                          [c for c in ("mask_key", "face_x0", "face_y0", "face_x1", "face_y1")
                           if c in manifest])
    text = json.dumps([digest, side, seed, FAMILY_SETS_VERSION, PROFILE_FAMILIES])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def profile_swaps(manifest: pd.DataFrame, store: ImageStore, side: int, seed: int,
                  cache_dir: Path, everything: np.ndarray | None = None) -> ProfileSwaps:
    """The profile families' own/other test sets, built once per (variant data, size, seed) and
    shared on disk by every model of the variant (atomic write, under a lock)."""
    path = Path(cache_dir) / "profile_swaps" / f"{profile_swaps_key(manifest, side, seed)}.npz"
    with file_lock(path):
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as stored:
                    sets = {f: (stored[f"{f}_own"], stored[f"{f}_other"]) for f in PROFILE_FAMILIES}
                    return ProfileSwaps(sets, json.loads(str(stored["profiles"])), False)
            except (OSError, KeyError, ValueError):
                path.unlink(missing_ok=True)  # a damaged cache is rebuilt, never read
        sets, profiles = _build_profile_swaps(manifest, store, side, seed, cache_dir, everything)
        buffer = io.BytesIO()
        np.savez(buffer, profiles=np.asarray(json.dumps(profiles)),
                 **{f"{f}_{k}": v for f, pair in sets.items() for k, v in zip(("own", "other"), pair,
                                                                               strict=True)})
        atomic_write_bytes(path, buffer.getvalue())
    return ProfileSwaps(sets, profiles, True)


def _build_profile_swaps(manifest: pd.DataFrame, store: ImageStore, side: int, seed: int,
                         cache_dir: Path, everything: np.ndarray | None
                         ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """Class profiles from the train images, then every test image moved to its own class's
    profile and to the other's, family by family."""
    if everything is None:
        everything = decoded_images(manifest["variant_image_key"].tolist(), store, side, cache_dir)
    rows, train = split_rows(manifest, "test"), split_rows(manifest, "train")
    pick = {s: np.flatnonzero((manifest["split"] == s).to_numpy()) for s in ("train", "test")}
    train_images, original = (np.asarray(everything[pick[s]]) for s in ("train", "test"))
    train_widths, train_centres = face_geometry(train, store, side)
    train_masks = person_masks(train, store, side)
    in_class = [train["looks"].to_numpy() == c for c in (0, 1)]
    profiles: list[ClassProfile] = [
        class_profile(train_images[s], train_widths[s],
                      None if train_masks is None else train_masks[s],
                      [c for c, keep in zip(train_centres, s, strict=True) if keep])
        for s in in_class]
    labels = rows["looks"].to_numpy()
    widths, centres = face_geometry(rows, store, side)
    sets = profile_sets(original, profiles, labels, widths, centres, seed)
    return sets, {CLASS_NAMES[c]: profiles[c].as_dict() for c in (0, 1)}


def _estimate(result: dict, name: str) -> Estimate | None:
    if name not in result:
        return None
    return Estimate(result[name], result[f"{name}_ci_low"], result[f"{name}_ci_high"])
