"""The per-partition audit: Grad-CAM heatmaps with FaceMass, and counterfactual accuracies (BG-gap)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from beauty_pipeline.explain.counterfactual import accuracy, bg_gap
from beauty_pipeline.explain.facemass import area_ratio, face_mass, face_regions, source_counts, summarise
from beauty_pipeline.explain.gradcam import explain_predicted_and_true
from beauty_pipeline.explain.plots import figure_name, plot_class_averages, plot_overlays
from beauty_pipeline.storage import ImageStore
from beauty_pipeline.training.cache import decoded_images
from beauty_pipeline.training.checkpoints import load_state
from beauty_pipeline.training.loop import predict_logits, resolve_device, to_input
from beauty_pipeline.training.models import build_model, gradcam_layer_for_size

COUNTERFACTUAL_COLUMNS = {"face_only": "cf_face_only_key", "background_only": "cf_background_only_key",
                          "swapped": "cf_swapped_key"}


@dataclass(frozen=True)
class TrainedModel:
    """A classifier partition's weights and how its inputs were sized."""

    name: str
    weights: str
    image_size: int

    def load(self, device: torch.device) -> torch.nn.Module:
        model = build_model(self.name)
        model.load_state_dict(load_state(Path(self.weights)))
        return model.to(device).eval()


def test_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    return manifest[manifest["split"] == "test"].reset_index(drop=True)


def gradcam_audit(trained: TrainedModel, manifest: pd.DataFrame, store: ImageStore, cache_dir: Path,
                  figures_dir: Path, background: str, layer: str = "", overlays: int = 8,
                  batch_size: int = 32, device: str = "auto") -> dict:
    """Heatmaps for every test image; FaceMass per class; class-average and overlay figures."""
    rows = test_rows(manifest)
    device_ = resolve_device(device)
    model = trained.load(device_)
    images = decoded_images(rows["variant_image_key"].tolist(), store, trained.image_size, cache_dir)
    inputs = to_input(np.asarray(images), device_)
    labels = torch.as_tensor(rows["looks"].to_numpy(), dtype=torch.long)
    layer = layer or gradcam_layer_for_size(model, trained.name, trained.image_size)
    target_layer = model.get_submodule(layer)
    predicted, true_maps = explain_predicted_and_true(model, target_layer, inputs, labels, batch_size)
    stored_shape = store.load(rows["variant_image_key"].iloc[0]).shape[:2]
    masks, sources = face_regions(rows.to_dict("records"), (trained.image_size,) * 2, stored_shape,
                                  lambda key: store.load(key, "L"))
    masses = face_mass(predicted.heatmaps, masks)
    summary = summarise(masses, area_ratio(masks), rows["looks"].to_numpy())
    true_summary = summarise(face_mass(true_maps, masks), area_ratio(masks), rows["looks"].to_numpy())
    figures_dir.mkdir(parents=True, exist_ok=True)
    title = f"{trained.name} / {background}"
    class_figure = plot_class_averages(predicted.heatmaps, rows["looks"].to_numpy(),
                                       figures_dir / figure_name(trained.name, background, "class_average"),
                                       title=title)
    pick = np.concatenate([np.flatnonzero(rows["looks"].to_numpy() == c)[: overlays // 2] for c in (1, 0)])
    overlay_figure = plot_overlays([images[i] for i in pick], predicted.heatmaps[pick],
                                   figures_dir / figure_name(trained.name, background, "overlays"),
                                   labels=rows["looks"].to_numpy()[pick],
                                   predictions=predicted.predictions[pick])
    return {
        "face_mass": summary["all"].face_mass,
        "face_mass_celebrity": summary["celebrity"].face_mass,
        "face_mass_ordinary": summary["ordinary"].face_mass,
        "face_mass_lift_celebrity": summary["celebrity"].lift,
        "face_mass_lift_ordinary": summary["ordinary"].lift,
        "face_area_ratio": summary["all"].area_ratio,
        "face_mass_true_class": true_summary["all"].face_mass,
        "zero_heatmaps": summary["all"].n_zero_heatmap,
        "test_images": len(rows),
        "accuracy": accuracy(predicted.predictions, rows["looks"].to_numpy()),
        "face_region_sources": source_counts(sources),
        "layer": layer,
        "figures": {"class_average": str(class_figure), "overlays": str(overlay_figure)},
    }


def counterfactual_accuracies(trained: TrainedModel, manifest: pd.DataFrame, store: ImageStore,
                              cache_dir: Path,
                   batch_size: int = 64, device: str = "auto") -> dict:
    """Accuracy on the original test set and its face-only, background-only and swapped twins."""
    rows = test_rows(manifest)
    device_ = resolve_device(device)
    model = trained.load(device_)
    labels = rows["looks"].to_numpy()
    columns = {"original": "variant_image_key", **COUNTERFACTUAL_COLUMNS}
    scores = {}
    for name, column in columns.items():
        images = decoded_images(rows[column].tolist(), store, trained.image_size, cache_dir)
        logits = predict_logits(model, np.asarray(images), batch_size, device_)
        scores[f"acc_{name}"] = accuracy(logits.argmax(1), labels)
    scores["bg_gap"] = bg_gap(scores["acc_original"], scores["acc_swapped"])
    scores["test_images"] = len(rows)
    return scores
