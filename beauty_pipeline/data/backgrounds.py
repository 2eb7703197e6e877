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


PLATE_WORK_SIDE = 96  # the reduced fill works at about this many pixels across
# the plate methods, today's first: "telea" inpaints at full size (~0.19 s per 300 px image)
PLATE_METHODS = ("telea", "telea-reduced", "pyramid")
PLATE_METHOD = "telea-reduced"


def plate_hole(mask: np.ndarray, grow: int = 3) -> np.ndarray:
    """The region a plate fills: the person mask (alpha > 0.1) grown by `grow` pixels, 0/255."""
    hole = (as_alpha(mask)[..., 0] > 0.1).astype(np.uint8) * 255
    if grow > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        hole = cv2.dilate(hole, kernel)
    return hole


def fill_hole(image: np.ndarray, hole: np.ndarray, min_radius: int = 3) -> np.ndarray:
    """The hole (uint8, 255 inside) filled by the reduced-size TELEA, the rest the image's own:
    exactly TELEA at or below PLATE_WORK_SIDE px."""
    image = np.ascontiguousarray(image)
    return np.where(hole[..., None] > 0, _reduced_telea(image, hole, min_radius), image)


def background_plate(image: np.ndarray, mask: np.ndarray, grow: int = 3,
                     method: str = PLATE_METHOD) -> np.ndarray:
    """Remove the person and fill the hole, leaving only the background; pixels outside the hole
    are the photo's own whatever the method."""
    hole = plate_hole(mask, grow)
    image = np.ascontiguousarray(image)
    if method == "telea":
        return cv2.inpaint(image, hole, max(3, image.shape[0] // 32), cv2.INPAINT_TELEA)
    if method == "telea-reduced":
        fill = _reduced_telea(image, hole)
    elif method == "pyramid":
        fill = _pyramid_fill(image, hole)
    else:
        raise ValueError(f"unknown plate method {method!r}; known: {', '.join(PLATE_METHODS)}")
    return np.where(hole[..., None] > 0, fill, image)


def _reduced_telea(image: np.ndarray, hole: np.ndarray, min_radius: int = 3) -> np.ndarray:
    """TELEA at about PLATE_WORK_SIDE px (radius scaled alike), upsampled: the fill is smooth at
    that scale anyway, and inpainting cost grows with the hole's pixel count."""
    height, width = hole.shape
    scale = min(1.0, PLATE_WORK_SIDE / max(height, width))
    if scale >= 1.0:
        return cv2.inpaint(image, hole, max(min_radius, height // 32), cv2.INPAINT_TELEA)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    # any covered share makes a small pixel part of the hole: no person colour leaks into the fill
    small_hole = (cv2.resize(hole, size, interpolation=cv2.INTER_AREA) > 0).astype(np.uint8) * 255
    filled = cv2.inpaint(small, small_hole, max(min_radius, size[1] // 32), cv2.INPAINT_TELEA)
    return cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)


def _pyramid_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Push-pull fill: known pixels averaged down a pyramid (weighted by how known they are),
    then the holes filled from the coarser level on the way up."""
    known = (hole == 0).astype(np.float32)
    levels = [(image.astype(np.float32) * known[..., None], known)]
    while min(levels[-1][1].shape) > 2:
        colour, weight = levels[-1]
        levels.append((cv2.pyrDown(colour), cv2.pyrDown(weight)))
    colour, weight = levels[-1]
    fill = colour / np.maximum(weight, 1e-6)[..., None]
    for colour, weight in reversed(levels[:-1]):
        up = cv2.pyrUp(fill, dstsize=(weight.shape[1], weight.shape[0]))
        own = colour / np.maximum(weight, 1e-6)[..., None]
        share = np.clip(weight, 0, 1)[..., None]
        fill = share * own + (1 - share) * up
    return np.clip(fill + 0.5, 0, 255).astype(np.uint8)


def mask_fraction(mask: np.ndarray) -> float:
    """Share of the image the foreground mask covers."""
    return float(as_alpha(mask).mean())


def mask_is_plausible(mask: np.ndarray, low: float = 0.05, high: float = 0.95) -> tuple[bool, str]:
    """Mask QA: reject empty and whole-image masks, which would make a variant meaningless."""
    return fraction_is_plausible(mask_fraction(mask), low, high)


def fraction_is_plausible(fraction: float, low: float = 0.05,
                          high: float = 0.95) -> tuple[bool, str]:
    """Mask QA from a mask's coverage alone (pool workers measure it where the mask is loaded)."""
    if fraction < low:
        return False, f"mask covers {fraction:.1%} of the image (< {low:.0%}): person not found"
    if fraction > high:
        return False, f"mask covers {fraction:.1%} of the image (> {high:.0%}): background not found"
    return True, ""
