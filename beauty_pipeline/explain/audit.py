"""The per-partition audit: contrastive Grad-CAM with FaceMass, and every shortcut family's probes
evaluated with identity-bootstrap intervals, ending in one verdict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from beauty_pipeline.data.counterfactual import COUNTERFACTUALS
from beauty_pipeline.data.demographics import attribute_mix, strata_accuracy
from beauty_pipeline.data.families import (
    PROFILE_FAMILIES,
    apply,
    class_profile,
    matched_probes,
    to_profile,
)
from beauty_pipeline.explain.facemass import area_ratio, face_mass, face_regions, source_counts
from beauty_pipeline.explain.gradcam import explain_predicted_and_true
from beauty_pipeline.explain.plots import figure_name, plot_class_averages, plot_overlays, save_heatmap_grid
from beauty_pipeline.explain.stats import Estimate, IdentityBootstrap
from beauty_pipeline.explain.verdict import THRESHOLDS, ProbeEffect, Thresholds, decide
from beauty_pipeline.storage import ImageStore
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
                   cache_dir: Path, face_mass_lift: float | None = None, batch_size: int = 64,
                   device: str = "auto", seed: int = 0,
                   thresholds: Thresholds = THRESHOLDS) -> dict:
    """Accuracy on the test set and its counterfactual sets, every family's probes against their
    controls, intervals by identity bootstrap, and the verdict."""
    rows, train = split_rows(manifest, "test"), split_rows(manifest, "train")
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
        result.update(boot.difference(correct["original"], correct["mixed_same"])
                      .as_metrics("composite_cost"))
        probes.append(ProbeEffect("background", "mixed_other_vs_mixed_same", True, gap,
                                  _flip_rate(predictions["mixed_same"], predictions["mixed_other"])))
    for probe in matched_probes(side):
        changed = predict(apply(original, probe.transform))
        effect = boot.difference(correct["original"], _correct(changed, labels))
        probes.append(ProbeEffect(probe.family, probe.name, False, effect,
                                  _flip_rate(predictions["original"], changed)))
    train_images = np.asarray(everything[np.flatnonzero((manifest["split"] == "train").to_numpy())])
    train_widths, _ = face_geometry(train, store, side)
    train_masks = person_masks(train, store, side)
    in_class = [train["looks"].to_numpy() == c for c in (0, 1)]
    profiles = [class_profile(train_images[s], train_widths[s],
                              None if train_masks is None else train_masks[s]) for s in in_class]
    result["class_profiles"] = {CLASS_NAMES[c]: profiles[c].as_dict() for c in (0, 1)}
    widths, centres = face_geometry(rows, store, side)
    for family in PROFILE_FAMILIES:
        own = predict(to_profile(family, original, profiles, labels, widths, centres))
        other = predict(to_profile(family, original, profiles, 1 - labels, widths, centres))
        effect = boot.difference(_correct(own, labels), _correct(other, labels))
        probes.append(ProbeEffect(family, "profile_swap", True, effect, _flip_rate(own, other)))
    result["probes"] = [{"family": p.family, "probe": p.probe, "controlled": p.controlled,
                         "effect": p.effect.value, "ci_low": p.effect.low, "ci_high": p.effect.high,
                         "threshold": p.threshold(thresholds), "flip_rate": p.flip_rate}
                        for p in probes]
    for probe in probes:
        if probe.controlled:
            result.update(probe.effect.as_metrics(f"family_{probe.family}_drop"))
            result[f"family_{probe.family}_flip"] = probe.flip_rate
        else:
            result.update(probe.effect.as_metrics(f"matched_{probe.probe}_drop"))
            result[f"matched_{probe.probe}_flip"] = probe.flip_rate
    verdict = decide(_estimate(result, "acc_original"), _estimate(result, "acc_face_only"),
                     _estimate(result, "acc_background_only"), probes, face_mass_lift, thresholds)
    result.update(verdict=verdict.label, named_families=list(verdict.named),
                  verdict_reasons=list(verdict.reasons))
    return result


def _estimate(result: dict, name: str) -> Estimate | None:
    if name not in result:
        return None
    return Estimate(result[name], result[f"{name}_ci_low"], result[f"{name}_ci_high"])
