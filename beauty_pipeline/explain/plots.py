"""Audit figures (class-average heatmaps, overlays, accuracy curves) and size-capped thumbnails.

Figures are drawn on matplotlib's Agg canvas without pyplot (no global state, safe in threads) and
written atomically under deterministic names, so reruns overwrite rather than accumulate.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from beauty_pipeline.storage import atomic_write_bytes

CLASS_NAMES = ("ordinary", "celebrity")  # label 0 / 1, as settings.CLASS_NAMES
CMAP = "jet"  # the study's and pytorch-grad-cam's colour map, so figures compare at a glance
EPOCH_COLUMNS = ("epoch", "train_accuracy", "val_accuracy", "test_accuracy", "train_loss",
                 "val_loss", "test_loss")


def figure_name(model: str, background: str, kind: str) -> str:
    """Deterministic, filesystem-safe file name of one partition's figure."""
    parts = [re.sub(r"[^A-Za-z0-9_.-]+", "-", p).strip("-") or "x"
             for p in (model, background, kind)]
    return "__".join(parts) + ".png"


def _save(fig: Figure, path: Path, dpi: int = 100) -> Path:
    """PNG without timestamp or software tag (same figure, same bytes), written atomically."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return atomic_write_bytes(Path(path), buffer.getvalue())


def normalise(heatmap: np.ndarray) -> np.ndarray:
    """Scale a heatmap to [0, 1] by its maximum (an all-zero map stays zero)."""
    heatmap = np.maximum(np.asarray(heatmap, dtype=np.float32), 0.0)
    peak = float(heatmap.max()) if heatmap.size else 0.0
    return heatmap / peak if peak > 0 else np.zeros_like(heatmap)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with its max-normalised heatmap blended on top in jet colours (uint8 RGB)."""
    colours = matplotlib.colormaps[CMAP](normalise(heatmap))[..., :3]
    base = np.asarray(image, dtype=np.float32) / 255.0
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=2)
    blended = (1 - alpha) * base + alpha * colours
    return np.clip(blended * 255 + 0.5, 0, 255).astype(np.uint8)


def class_averages(
    heatmaps: np.ndarray, labels: Sequence[int], class_names: Sequence[str] = CLASS_NAMES
) -> dict[str, np.ndarray]:
    """Mean heatmap per class (each image max-normalised first, so no image dominates)."""
    labels = np.asarray(labels)
    out = {}
    for index, name in enumerate(class_names):
        chosen = [normalise(h) for h in np.asarray(heatmaps)[labels == index]]
        if chosen:
            out[name] = np.mean(chosen, axis=0)
    return out


def plot_class_averages(
    heatmaps: np.ndarray,
    labels: Sequence[int],
    path: Path,
    class_names: Sequence[str] = CLASS_NAMES,
    title: str = "",
) -> Path:
    """The study's figures 5-8: mean heatmap per class (celebrity first), one shared colour bar."""
    averages = class_averages(heatmaps, labels, class_names)
    if not averages:
        raise ValueError("no heatmaps to average")
    names = sorted(averages, key=lambda n: -list(class_names).index(n))  # celebrity, ordinary
    peak = max(float(a.max()) for a in averages.values()) or 1.0
    fig = Figure(figsize=(3.2 * len(names) + 0.8, 3.4))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    counts = {n: int((np.asarray(labels) == list(class_names).index(n)).sum()) for n in names}
    image = None
    for ax, name in zip(axes, names, strict=True):
        image = ax.imshow(averages[name], cmap=CMAP, vmin=0.0, vmax=peak)
        ax.set_title(f"{name} (n={counts[name]})")
        ax.axis("off")
    fig.colorbar(image, ax=list(axes), fraction=0.046, pad=0.04, label="mean relative Grad-CAM")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_overlays(
    images: Sequence[np.ndarray],
    heatmaps: np.ndarray,
    path: Path,
    labels: Sequence[int] | None = None,
    predictions: Sequence[int] | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
    ncols: int = 4,
    max_images: int = 16,
) -> Path:
    """A grid of per-image overlays titled true / predicted class."""
    count = min(len(images), max_images)
    if count == 0:
        raise ValueError("no images to overlay")
    nrows = -(-count // ncols)
    cols = min(ncols, count)
    fig = Figure(figsize=(2.2 * cols, 2.4 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= count:
            continue
        ax.imshow(overlay(images[i], heatmaps[i]))
        parts = []
        if labels is not None:
            parts.append(f"true {class_names[int(labels[i])]}")
        if predictions is not None:
            parts.append(f"pred {class_names[int(predictions[i])]}")
        ax.set_title("\n".join(parts), fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _epoch_columns(table: Iterable[Mapping] | object) -> dict[str, list[float]]:
    """Column lists from a list of per-epoch dicts or a DataFrame."""
    rows = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
    return {c: [float(r[c]) for r in rows if c in r] for c in EPOCH_COLUMNS}


def plot_accuracy_curves(table: Iterable[Mapping] | object, path: Path, title: str = "") -> Path:
    """Train/val/test accuracy and loss per epoch, from the training loop's per-epoch table."""
    cols = _epoch_columns(table)
    if not cols["epoch"]:
        raise ValueError("empty per-epoch table")
    fig = Figure(figsize=(8, 3.2))
    acc_ax, loss_ax = fig.subplots(1, 2)
    for ax, kind in ((acc_ax, "accuracy"), (loss_ax, "loss")):
        for split in ("train", "val", "test"):
            values = [v for v in cols[f"{split}_{kind}"] if np.isfinite(v)]
            if values:
                ax.plot(cols["epoch"][:len(values)], values, marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(kind)
        ax.grid(alpha=0.3)
        ax.legend()
    acc_ax.set_ylim(0, 1.02)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _as_rgb_image(source: np.ndarray | bytes | str | Path) -> Image.Image:
    """A PIL image from an array (uint8, or a float heatmap, colour-mapped) or PNG bytes/path."""
    if isinstance(source, (str, Path)):
        source = Path(source).read_bytes()
    if isinstance(source, bytes):
        with Image.open(io.BytesIO(source)) as opened:
            return opened.convert("RGB")
    array = np.asarray(source)
    if array.dtype != np.uint8:
        array = (matplotlib.colormaps[CMAP](normalise(array))[..., :3] * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def thumbnail_png(
    source: np.ndarray | bytes | str | Path, max_side: int = 320, max_bytes: int = 40_000
) -> bytes:
    """Small PNG bytes for inline metadata: fit max_side, then shrink until under max_bytes."""
    image = _as_rgb_image(source)
    side = max_side
    while True:
        thumb = image.copy()
        thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        thumb.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
        if len(data) <= max_bytes or side <= 16:
            if len(data) > max_bytes:
                raise ValueError(f"cannot fit a thumbnail in {max_bytes} bytes")
            return data
        side = max(16, int(side * 0.75))


def heatmap_grid(images: np.ndarray, heatmaps: np.ndarray, labels: Sequence[int],
                 class_names: Sequence[str] = CLASS_NAMES, tile: int = 96) -> np.ndarray:
    """Per class (celebrity first) a column: the class-average heatmap on one colour scale over
    the class's mean picture, above the heatmap alone. Small enough to stay legible as a
    thumbnail, unlike the captioned figure."""
    import cv2

    averages = class_averages(heatmaps, labels, class_names)
    if not averages:
        raise ValueError("no heatmaps to average")
    labels = np.asarray(labels)
    peak = max(float(a.max()) for a in averages.values()) or 1.0
    columns = []
    for name in sorted(averages, key=lambda n: -list(class_names).index(n)):
        chosen = np.asarray(images)[labels == list(class_names).index(name)]
        mean_image = np.clip(chosen.astype(np.float32).mean(axis=0) + 0.5, 0, 255).astype(np.uint8)
        scaled = np.clip(averages[name] / peak, 0.0, 1.0)
        coloured = (matplotlib.colormaps[CMAP](scaled)[..., :3] * 255 + 0.5).astype(np.uint8)
        size = (tile, tile)
        top = overlay(cv2.resize(mean_image, size, interpolation=cv2.INTER_AREA),
                      cv2.resize(scaled, size, interpolation=cv2.INTER_LINEAR))
        bottom = cv2.resize(coloured, size, interpolation=cv2.INTER_NEAREST)
        columns.append(np.concatenate([top, bottom], axis=0))
    return np.concatenate(columns, axis=1)


def save_heatmap_grid(images: np.ndarray, heatmaps: np.ndarray, labels: Sequence[int],
                      path: Path, tile: int = 96) -> Path:
    """The heatmap grid as a PNG (the full-size twin of the inline thumbnail)."""
    from beauty_pipeline.storage import encode_png

    return atomic_write_bytes(Path(path), encode_png(heatmap_grid(images, heatmaps, labels,
                                                                  tile=tile)))


def thumbnail_webp(source: np.ndarray | bytes | str | Path, max_side: int = 128,
                   max_bytes: int = 700) -> bytes:
    """A lossy WebP small enough to inline where only a few hundred bytes fit (Dagster renders
    Markdown metadata in place only under 1,000 characters): lower quality, then size."""
    image = _as_rgb_image(source)
    side = max_side
    while side >= 16:
        thumb = image.copy()
        thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
        for quality in (60, 45, 30, 20, 10):
            buffer = io.BytesIO()
            thumb.save(buffer, format="WEBP", quality=quality, method=6)
            if len(buffer.getvalue()) <= max_bytes:
                return buffer.getvalue()
        side = int(side * 0.8)
    raise ValueError(f"cannot fit a thumbnail in {max_bytes} bytes")
