"""Decode untrusted image bytes fully, with a pixel limit, so bad files fail here and not later."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = 40_000_000  # ~ 7,300 x 5,500: above any real photo, far below a bomb
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "MPO"})
SUFFIXES = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp",
            "TIFF": "tif"}


class ImageDecodeError(ValueError):
    """Bytes that are not a complete, acceptable image; the message is the recorded reason."""


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Fully decode to an upright RGB uint8 array; returns it and Pillow's format name."""
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
            image = ImageOps.exif_transpose(image).convert("RGB")
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(f"decompression bomb guard: {error}") from error
    except Exception as error:  # Pillow raises many types for bad bytes; all mean "not an image"
        raise ImageDecodeError(f"not a decodable image: {type(error).__name__}: {error}") from error
    return np.asarray(image), fmt
