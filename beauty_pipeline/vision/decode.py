"""Decode untrusted image bytes fully, with a pixel limit, so bad files fail here and not later."""

from __future__ import annotations

import io
import warnings
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from beauty_pipeline.errors import PipelineError

DEFAULT_MAX_PIXELS = 40_000_000  # ~ 7,300 x 5,500: above any real photo, far below a bomb
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "MPO"})
SUFFIXES = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp",
            "TIFF": "tif"}


# Transparent pixels are composited on white: the study's own "white" background. Every source
# (photo folders, Bing, FairFace, stored images) reaches pixels through to_rgb8, so all share it.
ALPHA_BACKGROUND = (255, 255, 255)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageDecodeError(PipelineError):
    """Bytes that are not a complete, acceptable image; the message is the recorded reason."""


class DecodedImage(NamedTuple):
    """An upright RGB uint8 image, its format, and whether transparency was composited away."""

    pixels: np.ndarray
    fmt: str
    had_alpha: bool  # some pixels were transparent or translucent: now on ALPHA_BACKGROUND


def has_alpha(image: Image.Image) -> bool:
    """Whether any pixel is less than fully opaque (an alpha channel or a transparent colour)."""
    if image.mode not in _ALPHA_MODES and "transparency" not in image.info:
        return False
    return bool((np.asarray(image.convert("RGBA"))[..., 3] < 255).any())


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def to_rgb8(image: Image.Image) -> np.ndarray:
    """RGB uint8 from any mode: 16-bit scaled by 1/257, float 0..1 by 255, alpha on white."""
    mode = image.mode
    if mode in _SIXTEEN_BIT or mode == "I":
        values = np.asarray(image).astype(np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageDecodeError(f"unsupported pixel range in mode {mode}: values "
                                   f"{values.min():g}..{values.max():g} exceed 16 bits")
        return _grey_to_rgb(values / 257.0)
    if mode == "F":
        values = np.asarray(image).astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageDecodeError("float image (mode F) has NaN or infinite pixels")
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low >= 0 and high <= 1:
            return _grey_to_rgb(values * 255.0)
        if low >= 0 and high <= 255:
            return _grey_to_rgb(values)
        raise ImageDecodeError(f"float image (mode F) with values {low:g}..{high:g}: neither "
                               "0..1 nor 0..255, so its brightness is unknown")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        backdrop = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return np.asarray(Image.alpha_composite(backdrop, rgba).convert("RGB"))
    try:
        return np.asarray(image.convert("RGB"))
    except (ValueError, OSError) as error:
        raise ImageDecodeError(f"unsupported image mode {mode}: {error}") from error


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Fully decode to an upright RGB uint8 array; returns it and Pillow's format name."""
    decoded = decode_photo(data, max_pixels)
    return decoded.pixels, decoded.fmt


def decode_photo(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """decode_image, also saying whether transparent pixels were composited onto the plate."""
    if not data:
        raise ImageDecodeError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ALLOWED_FORMATS:
                raise ImageDecodeError(f"unsupported image format {image.format}")
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(f"decompression bomb guard: {width}x{height} pixels "
                                       f"exceeds the limit of {max_pixels}")
            image.load()  # a truncated or corrupt file raises here
            fmt = image.format
            upright = ImageOps.exif_transpose(image)
            pixels, transparent = to_rgb8(upright), has_alpha(upright)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(f"decompression bomb guard: {error}") from error
    except Exception as error:  # Pillow raises many types for bad bytes; all mean "not an image"
        raise ImageDecodeError(f"not a decodable image: {type(error).__name__}: {error}") from error
    return DecodedImage(pixels, fmt, transparent)
