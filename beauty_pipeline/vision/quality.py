"""Image quality cues of one photo (JPEG quality, face sharpness, face size and share of the frame)
and the class-blind degradation that evens them out.

A class whose photos come from larger, sharper or less compressed sources can be told apart by
that alone; these measures let the dataset stage compare the classes and match them.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
from PIL import Image

# ITU-T T.81 Annex K.1 luminance quantisation table in natural (row-major) order, as Pillow
# returns it in Image.quantization[0]; libjpeg (IJG) scales it by the quality factor.
ANNEX_K_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
JPEG_FORMATS = ("JPEG", "MPO")
# Sharpness is measured with the face box scaled so its larger side is this many pixels: the
# Laplacian's variance depends on scale, so a fixed side makes faces of any size comparable.
# 64 px is below the face stage's smallest kept face (min_face_px 80), so detected faces are only
# ever averaged down (INTER_AREA), never interpolated up, before measuring.
SHARPNESS_SIDE = 64
CUES = ("face_px", "jpeg_quality", "sharpness", "face_share")


def ijg_luma_table(quality: int) -> np.ndarray:
    """The luma table libjpeg writes for a quality factor 1-100 (jcparam.c scaling, baseline)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((ANNEX_K_LUMA * scale + 50) // 100, 1, 255)


_IJG_TABLES = np.stack([ijg_luma_table(q) for q in range(1, 101)])


def jpeg_quality_estimate(data: bytes) -> float:
    """IJG quality factor whose luma table is closest to the file's (mean absolute difference);
    NaN for lossless formats (PNG, ...), which lose nothing to compression. Unreadable bytes
    raise PIL's UnidentifiedImageError, an OSError."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format not in JPEG_FORMATS:
            return math.nan
        tables = getattr(image, "quantization", None) or {}
    if 0 not in tables or len(tables[0]) != 64:
        return math.nan
    luma = np.asarray(tables[0], dtype=np.int64)
    errors = np.abs(_IJG_TABLES - luma).mean(axis=1)
    return float(np.argmin(errors) + 1)


def _clipped_box(box, shape) -> tuple[int, int, int, int] | None:
    """Integer box inside the image, or None when less than 2 px remain either way."""
    height, width = shape[:2]
    x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x1, y1 = min(width, math.ceil(box[2])), min(height, math.ceil(box[3]))
    return (x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None


def face_sharpness(image: np.ndarray, box) -> float:
    """Variance of the Laplacian of the grey face box scaled to SHARPNESS_SIDE px (larger side):
    detail per face width, so blur and upsampling read low whatever the photo's size."""
    clipped = _clipped_box(box, image.shape)
    if clipped is None or any(not math.isfinite(v) for v in box):
        return math.nan
    x0, y0, x1, y1 = clipped
    region = image[y0:y1, x0:x1]
    grey = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY) if region.ndim == 3 else region
    scale = SHARPNESS_SIDE / max(x1 - x0, y1 - y0)
    size = (max(2, round((x1 - x0) * scale)), max(2, round((y1 - y0) * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(grey.astype(np.float64), size, interpolation=interpolation)
    return float(cv2.Laplacian(small, cv2.CV_64F).var())


def face_side(box) -> float:
    """Pixels across the face: the box's larger side, as the face stage's size rule uses."""
    return float(max(box[2] - box[0], box[3] - box[1]))


def face_share(box, shape) -> float:
    """Share of the frame the face box covers (the part inside the image)."""
    clipped = _clipped_box(box, shape)
    if clipped is None:
        return 0.0
    x0, y0, x1, y1 = clipped
    return (x1 - x0) * (y1 - y0) / float(shape[0] * shape[1])


def image_cues(data: bytes | None, image: np.ndarray, box) -> dict[str, float]:
    """The four cues of one photo: its face box in source pixels, the file's bytes for JPEG."""
    jpeg = jpeg_quality_estimate(data) if data is not None else math.nan
    if box is None or any(not math.isfinite(float(v)) for v in box):
        return {"face_px": math.nan, "jpeg_quality": jpeg, "sharpness": math.nan,
                "face_share": math.nan}
    return {"face_px": face_side(box), "jpeg_quality": jpeg,
            "sharpness": face_sharpness(image, box), "face_share": face_share(box, image.shape)}


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after one baseline JPEG encode at `quality` (4:2:0, as most cameras and sites)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=int(quality),
                                                      subsampling="4:2:0")
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return np.asarray(decoded.convert("RGB"))


def reduced_size(shape, face_in_image: float, target_px: float) -> tuple[int, int]:
    """(width, height) at which the face spans target_px; the image's own size when that rounds
    to no change (a face less than a pixel's rounding above the target)."""
    factor = min(1.0, target_px / face_in_image)
    height, width = shape[:2]
    return max(1, round(width * factor)), max(1, round(height * factor))


def resample_face(image: np.ndarray, face_in_image: float, target_px: float) -> np.ndarray:
    """Down to where the face spans target_px (area average), then back to the same size
    (bilinear): the face keeps its place but carries only target_px of detail."""
    height, width = image.shape[:2]
    size = reduced_size(image.shape, face_in_image, target_px)
    if size == (width, height):
        return image
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
