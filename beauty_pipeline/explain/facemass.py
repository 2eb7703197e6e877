"""FaceMass: the share of Grad-CAM energy on the face, and where the face region comes from.

FaceMass = sum(S * M) / sum(S), with S the ReLU'd heatmap at image size and M the face region in
[0, 1] (DESIGN.md §2). A heatmap that is uniform scores the area ratio |M| / N, so the lift
FaceMass / (|M| / N) says how much more than chance the model looks at the face.

Face region sources, in order of preference (the one used is returned and should be recorded):
- ``known_mask``: the exact face mask of synthetic data (manifest ``face_mask_key``).
- ``detection``: the ellipse inscribed in the detector's face box (``face_x0..face_y1``, pixels of
  the stored image) — a box's corners are hair/background, the inscribed ellipse is the face.
- ``aligned_prior``: for aligned crops without a box (FairFace style, dlib alignment with padding
  0.25, so the face box spans the central 1 / (1 + 2 * 0.25) = 2/3 of each side): the ellipse
  inscribed in the centred box [1/6, 5/6] x [1/6, 5/6] of the image.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from beauty_pipeline.vision.crop import ALIGNED_PRIOR_BOX

SOURCES = ("known_mask", "detection", "aligned_prior")


def ellipse_mask(shape: tuple[int, int], box: Sequence[float]) -> np.ndarray:
    """A {0, 1} float32 mask of the ellipse inscribed in box (x0, y0, x1, y1), pixel-centre test."""
    height, width = shape
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    if rx <= 0 or ry <= 0:
        raise ValueError(f"empty face box {tuple(box)}")
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
    return inside.astype(np.float32)


def _box(row: Mapping) -> tuple[float, float, float, float] | None:
    """The manifest's face box when it is present and non-empty."""
    try:
        box = tuple(float(row[k]) for k in ("face_x0", "face_y0", "face_x1", "face_y1"))
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box


def face_region_mask(
    row: Mapping,
    shape: tuple[int, int],
    image_shape: tuple[int, int] | None = None,
    load_mask: Callable[[str], np.ndarray] | None = None,
) -> tuple[np.ndarray, str]:
    """The face region M (float32 in [0, 1], at `shape`) for one manifest row, and its source.

    `shape` is the heatmap/model-input size; `image_shape` the stored image's (H, W) the box is in
    (default: `shape`), assuming the model input is the stored image resized. `load_mask` loads a
    uint8 mask by key (e.g. ``lambda k: store.load(k, "L")``) and is required for ``known_mask``.
    """
    key = row.get("face_mask_key") if hasattr(row, "get") else None
    if isinstance(key, str) and key:
        if load_mask is None:
            raise ValueError("row has face_mask_key but no load_mask was given")
        mask = np.asarray(load_mask(key), dtype=np.float32)
        if mask.ndim == 3:
            mask = mask[..., 0]
        if mask.max() > 1.0:
            mask = mask / 255.0
        if mask.shape != tuple(shape):
            mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        return np.clip(mask, 0.0, 1.0).astype(np.float32), "known_mask"
    box = _box(row)
    if box is not None:
        src_h, src_w = image_shape or shape
        sx, sy = shape[1] / src_w, shape[0] / src_h
        scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        return ellipse_mask(shape, scaled), "detection"
    fx0, fy0, fx1, fy1 = ALIGNED_PRIOR_BOX
    prior = (fx0 * shape[1], fy0 * shape[0], fx1 * shape[1], fy1 * shape[0])
    return ellipse_mask(shape, prior), "aligned_prior"


def face_regions(
    rows: Iterable[Mapping],
    shape: tuple[int, int],
    image_shapes: Sequence[tuple[int, int]] | tuple[int, int] | None = None,
    load_mask: Callable[[str], np.ndarray] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Stacked (N, H, W) face regions for manifest rows (e.g. ``frame.to_dict("records")``);
    `image_shapes` is one stored (H, W) per row, or one for all rows."""
    rows = list(rows)
    if image_shapes is None or (len(image_shapes) == 2 and isinstance(image_shapes[0], int)):
        image_shapes = [image_shapes] * len(rows)
    pairs = [face_region_mask(row, shape, image_shape, load_mask)
             for row, image_shape in zip(rows, image_shapes, strict=True)]
    if not pairs:
        return np.zeros((0, *shape), np.float32), []
    return np.stack([m for m, _ in pairs]), [s for _, s in pairs]


def source_counts(sources: Iterable[str]) -> dict[str, int]:
    """How many regions came from each source, for the asset's metadata and the report."""
    counts = Counter(sources)
    return {s: counts[s] for s in SOURCES if counts[s]}


def face_mass(heatmaps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per-image FaceMass for (N, H, W) heatmaps and masks; NaN where a heatmap has no mass."""
    s = np.maximum(np.asarray(heatmaps, dtype=np.float64), 0.0)
    m = np.asarray(masks, dtype=np.float64)
    if s.shape != m.shape:
        raise ValueError(f"heatmaps {s.shape} and masks {m.shape} differ")
    total = s.reshape(len(s), -1).sum(axis=1)
    inside = (s * m).reshape(len(s), -1).sum(axis=1)
    out = np.full(len(s), np.nan)
    ok = np.isfinite(total) & (total > 0)
    out[ok] = inside[ok] / total[ok]
    return out


def area_ratio(masks: np.ndarray) -> np.ndarray:
    """|M| / N per image: the FaceMass a uniform heatmap would get."""
    m = np.asarray(masks, dtype=np.float64)
    return m.reshape(len(m), -1).mean(axis=1)


@dataclass(frozen=True)
class ClassFaceMass:
    """FaceMass summary of one class; zero-heatmap images are counted and left out of the means."""

    name: str
    n: int
    n_zero_heatmap: int
    face_mass: float  # mean over images with a heatmap
    area_ratio: float  # mean |M| / N over the same images
    lift: float  # face_mass / area_ratio


def summarise(
    masses: np.ndarray,
    areas: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] = ("ordinary", "celebrity"),
) -> dict[str, ClassFaceMass]:
    """Per-class (and "all") FaceMass, area ratio and lift; label i is class_names[i]."""
    masses, areas, labels = np.asarray(masses), np.asarray(areas), np.asarray(labels)
    groups = {name: labels == i for i, name in enumerate(class_names)}
    groups["all"] = np.ones(len(labels), dtype=bool)
    out = {}
    for name, select in groups.items():
        valid = select & np.isfinite(masses)
        fm = float(masses[valid].mean()) if valid.any() else math.nan
        ar = float(areas[valid].mean()) if valid.any() else math.nan
        lift = fm / ar if valid.any() and ar > 0 else math.nan
        out[name] = ClassFaceMass(name, int(select.sum()), int((select & ~valid).sum()), fm, ar,
                                  lift)
    return out


def as_metrics(summary: Mapping[str, ClassFaceMass]) -> dict[str, float]:
    """Flat metric names for MLflow/Dagster: face_mass_<class>, face_mass_lift_<class>, ..."""
    metrics: dict[str, float] = {}
    for name, item in summary.items():
        metrics[f"face_mass_{name}"] = item.face_mass
        metrics[f"face_mass_lift_{name}"] = item.lift
        metrics[f"face_area_ratio_{name}"] = item.area_ratio
        metrics[f"zero_heatmaps_{name}"] = float(item.n_zero_heatmap)
    return metrics
