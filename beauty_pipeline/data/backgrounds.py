"""Background surgery on face images: white backdrop, inpainted plates and composites."""

from __future__ import annotations

import cv2
import numpy as np

WHITE = 255


def as_alpha(mask: np.ndarray) -> np.ndarray:
    """A float (H, W, 1) alpha in [0, 1] from a uint8 or bool foreground mask."""
    alpha = mask.astype(np.float32)
    if alpha.max() > 1.0:
        alpha /= 255.0
    return alpha[..., None] if alpha.ndim == 2 else alpha


def composite(image: np.ndarray, mask: np.ndarray, backdrop: np.ndarray) -> np.ndarray:
    """Paste the person (mask = foreground) from image onto a backdrop of the same size."""
    if backdrop.shape != image.shape:
        backdrop = cv2.resize(backdrop, (image.shape[1], image.shape[0]),
                              interpolation=cv2.INTER_AREA)
    alpha = as_alpha(mask)
    blended = alpha * image.astype(np.float32) + (1.0 - alpha) * backdrop.astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def on_white(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The study's white-background image: person kept, everything else white."""
    return composite(image, mask, np.full_like(image, WHITE))


def background_plate(image: np.ndarray, mask: np.ndarray, grow: int = 3) -> np.ndarray:
    """Remove the person and fill the hole by inpainting, leaving only the background."""
    hole = (as_alpha(mask)[..., 0] > 0.1).astype(np.uint8) * 255
    if grow > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        hole = cv2.dilate(hole, kernel)
    radius = max(3, image.shape[0] // 32)
    return cv2.inpaint(np.ascontiguousarray(image), hole, radius, cv2.INPAINT_TELEA)


def mask_fraction(mask: np.ndarray) -> float:
    """Share of the image the foreground mask covers."""
    return float(as_alpha(mask).mean())


def mask_is_plausible(mask: np.ndarray, low: float = 0.05, high: float = 0.95) -> tuple[bool, str]:
    """Mask QA: reject empty and whole-image masks, which would make a variant meaningless."""
    fraction = mask_fraction(mask)
    if fraction < low:
        return False, f"mask covers {fraction:.1%} of the image (< {low:.0%}): person not found"
    if fraction > high:
        return False, f"mask covers {fraction:.1%} of the image (> {high:.0%}): background not found"
    return True, ""
