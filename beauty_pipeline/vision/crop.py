"""Square face crops with a margin, padded past the image border, resized to a fixed size."""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[float, float, float, float]

# Face box of an aligned crop without a detection (FairFace style: dlib alignment with padding
# 0.25, so the face spans the central 1 / (1 + 2 * 0.25) = 2/3 of each side), as fractions.
ALIGNED_PRIOR_BOX = (1 / 6, 1 / 6, 5 / 6, 5 / 6)


def square_region(box: Box, margin: float) -> Box:
    """The square around a face box: its larger side plus `margin` of it on every side."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0


def padded_fraction(image_shape: tuple[int, ...], box: Box, margin: float) -> float:
    """Share of the crop's square that lies past the photo's border (and so is padding)."""
    height, width = image_shape[:2]
    x0, y0, x1, y1 = square_region(box, margin)
    inside_w = max(0.0, min(x1, width) - max(x0, 0.0))
    inside_h = max(0.0, min(y1, height) - max(y0, 0.0))
    return float(1.0 - inside_w * inside_h / ((x1 - x0) * (y1 - y0)))


def square_crop(image: np.ndarray, box: Box, margin: float = 0.25, size: int = 300,
                pad: str = "edge", pad_value: int = 0) -> tuple[np.ndarray, Box]:
    """Crop a face-centred square, pad what lies outside the image, resize; box in crop pixels."""
    if margin < 0 or size < 1:
        raise ValueError(f"need margin >= 0 and size >= 1, got {margin}, {size}")
    if pad not in ("edge", "constant"):
        raise ValueError(f"pad must be 'edge' or 'constant', got {pad!r}")
    height, width = image.shape[:2]
    rx0, ry0, rx1, ry1 = square_region(box, margin)
    left, top = int(np.floor(rx0)), int(np.floor(ry0))
    side = max(1, int(round(rx1 - rx0)))
    right, bottom = left + side, top + side
    border = (max(0, -top), max(0, bottom - height), max(0, -left), max(0, right - width))
    patch = image[max(0, top):min(height, bottom), max(0, left):min(width, right)]
    if patch.size == 0:
        raise ValueError(f"face box {box} lies outside the {width}x{height} image")
    if any(border):
        kind = cv2.BORDER_REPLICATE if pad == "edge" else cv2.BORDER_CONSTANT
        fill = (pad_value,) * (image.shape[2] if image.ndim == 3 else 1)
        patch = cv2.copyMakeBorder(patch, *border, kind, value=fill)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = cv2.resize(patch, (size, size), interpolation=interpolation)
    scale = size / side
    x0, y0, x1, y1 = box
    inside = ((x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale, (y1 - top) * scale)
    return np.ascontiguousarray(crop), inside
