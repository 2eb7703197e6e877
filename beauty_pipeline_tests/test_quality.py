"""Source quality cues per image: JPEG quality, face sharpness, face size and share."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from beauty_pipeline.storage import encode_png
from beauty_pipeline.vision.quality import (
    face_share,
    face_sharpness,
    ijg_luma_table,
    image_cues,
    jpeg_quality_estimate,
)


def textured(seed: int, size: int = 224) -> np.ndarray:
    """A detailed RGB image (smoothed noise), the same for the same seed."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 0.8)


def jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def test_jpeg_quality_estimate_recovers_the_encoders_quality():
    image = textured(0)
    estimates = {q: jpeg_quality_estimate(jpeg(image, q)) for q in (10, 30, 60, 75, 90, 95)}
    assert estimates == {10: 10.0, 30: 30.0, 60: 60.0, 75: 75.0, 90: 90.0, 95: 95.0}
    assert list(ijg_luma_table(50)[:8]) == [16, 11, 10, 16, 24, 40, 51, 61]  # Annex K itself
    assert math.isnan(jpeg_quality_estimate(encode_png(image)))  # lossless: recorded as NaN
    with pytest.raises(OSError):
        jpeg_quality_estimate(b"not an image at all")


def test_blur_lowers_sharpness_and_the_fixed_scale_makes_sizes_comparable():
    image = textured(1)
    box = (40, 30, 184, 200)
    sharp = face_sharpness(image, box)
    blurred = face_sharpness(cv2.GaussianBlur(image, (0, 0), 2.0), box)
    # the same photo at twice the size reads about the same: measured at a 64 px face
    double = cv2.resize(image, (448, 448), interpolation=cv2.INTER_LINEAR)
    doubled = face_sharpness(double, tuple(2 * v for v in box))
    print(f"\nsharpness original {sharp:.1f}, blurred (sigma 2) {blurred:.1f}, 2x {doubled:.1f}")
    assert blurred < 0.2 * sharp
    assert doubled == pytest.approx(sharp, rel=0.2)  # bilinear 2x softens a little
    # ... where the Laplacian at native scale would call the larger photo far blurrier
    def native(im):
        return cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(float), cv2.CV_64F).var()
    assert native(double) < 0.3 * native(image)
    # a face upsampled from 32 px carries less detail than the 170 px original
    low = cv2.resize(cv2.resize(image, (42, 42), interpolation=cv2.INTER_AREA), (224, 224),
                     interpolation=cv2.INTER_LINEAR)
    assert face_sharpness(low, box) < 0.5 * sharp
    assert math.isnan(face_sharpness(image, (300, 300, 400, 400)))  # box outside the image


def test_image_cues_of_a_face_box():
    image = textured(2, 200)
    cues = image_cues(jpeg(image, 60), image, (50, 40, 150, 160))
    assert cues["face_px"] == 120 and cues["jpeg_quality"] == 60
    assert cues["face_share"] == pytest.approx(100 * 120 / 200 ** 2)
    assert face_share((-50, -50, 50, 50), (200, 200)) == pytest.approx(0.0625)  # inside part only
    unknown = image_cues(None, image, None)
    assert all(math.isnan(v) for v in unknown.values())
