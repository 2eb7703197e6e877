"""Shortcut families beyond the background: matched transforms and class-profile swaps.

Every transform works on a batch of uint8 (N, H, W, 3) model inputs and treats both classes the
same way. Two kinds of probe:
- matched: one transform for every image (it can remove a cue, never add a class-specific one);
  compared with the untouched test set. It has no class control (it also erases facial detail:
  at 48 px a clean face model loses 0.2-0.3 to it), so it is reported beside the verdict, not in it.
- profile: each image is moved to a class's profile (sharpness, face size in the frame, colour
  cast, measured on the *train* images); moving it to the other class's profile is the probe,
  to its own class's profile the control (the same manipulation, keeping the class cue).
Parameters scale with the image side, so a probe means the same at 48 px and at 224 px.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

FAMILIES = ("background", "quality", "geometry", "colour")
SHARPNESS_FACTORS = (1.0, 0.85, 0.7, 0.6, 0.5, 0.42, 0.35, 0.3, 0.25, 0.2)

Batch = np.ndarray  # (N, H, W, 3) uint8


def _each(images: Batch, change: Callable[[np.ndarray], np.ndarray]) -> Batch:
    return np.stack([change(np.asarray(image)) for image in images]) if len(images) else images


def down_up(image: np.ndarray, factor: float) -> np.ndarray:
    """Resample to `factor` of the side and back: detail above that resolution is gone."""
    if factor >= 1.0:
        return image
    side = image.shape[0]
    small = max(2, int(round(side * factor)))
    reduced = cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA)
    return cv2.resize(reduced, (side, side), interpolation=cv2.INTER_LINEAR)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode as JPEG at the given quality (colour order is irrelevant to the round trip)."""
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)


def zoom(image: np.ndarray, factor: float, centre: tuple[float, float] | None = None) -> np.ndarray:
    """Scale the content by `factor` about `centre` (default: the middle); borders reflect."""
    side = image.shape[0]
    cx, cy = centre if centre is not None else (side / 2, side / 2)
    matrix = np.float32([[factor, 0, (1 - factor) * cx], [0, factor, (1 - factor) * cy]])
    return cv2.warpAffine(image, matrix, (image.shape[1], side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def shift(image: np.ndarray, fraction: float) -> np.ndarray:
    """Move the content right by a fraction of the width; borders reflect."""
    matrix = np.float32([[1, 0, fraction * image.shape[1]], [0, 1, 0]])
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def greyscale(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[..., None], 3, axis=2)


@dataclass(frozen=True)
class MatchedProbe:
    """One transform applied identically to every test image."""

    family: str
    name: str
    transform: Callable[[np.ndarray], np.ndarray]


def matched_probes(side: int) -> list[MatchedProbe]:
    """The matched transforms of every non-background family, scaled to the image side."""
    return [
        MatchedProbe("quality", "resample", lambda im: down_up(im, 0.5)),
        MatchedProbe("quality", "jpeg", lambda im: jpeg(im, 30)),
        MatchedProbe("quality", "blur", lambda im: blur(im, side / 64)),
        MatchedProbe("geometry", "zoom_in", lambda im: zoom(im, 1.15)),
        MatchedProbe("geometry", "shift", lambda im: shift(im, 0.08)),
        MatchedProbe("colour", "greyscale", greyscale),
    ]


def apply(images: Batch, transform: Callable[[np.ndarray], np.ndarray]) -> Batch:
    """A transform over a batch."""
    return _each(images, transform)


def sharpness(image: np.ndarray) -> float:
    """Mean squared Laplacian of the grey image: fine detail, what resampling and blur remove."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.mean(cv2.Laplacian(grey, cv2.CV_32F) ** 2))


def colour_mean(images: Batch, masks: np.ndarray | None = None) -> np.ndarray:
    """Per-channel mean, shape (3,), over the person pixels (mask >= 0.5) when masks are given:
    the person's colour cast, not the backdrop's (that is the background family's business)."""
    pixels = np.asarray(images, np.float64)
    if masks is not None:
        inside = np.asarray(masks) >= 0.5
        if inside.any():
            return pixels[inside].mean(axis=0)
    return pixels.reshape(-1, 3).mean(axis=0)


@dataclass(frozen=True)
class ClassProfile:
    """What one class's train images look like, for the profile probes."""

    sharpness: float  # median
    face_width: float  # median face-box width as a share of the image side
    colour: np.ndarray  # (3,) channel means of the person pixels

    def as_dict(self) -> dict:
        return {"sharpness": self.sharpness, "face_width": self.face_width,
                "colour_mean": [round(float(v), 2) for v in self.colour]}


def class_profile(images: Batch, face_widths: Sequence[float],
                  person_masks: np.ndarray | None = None) -> ClassProfile:
    """Median sharpness, median face width and the person's mean colour, one class's train images;
    person masks are (N, H, W) in [0, 1] at the images' size."""
    widths = np.asarray(face_widths, dtype=np.float64)
    widths = widths[np.isfinite(widths)]
    return ClassProfile(float(np.median([sharpness(im) for im in images])),
                        float(np.median(widths)) if len(widths) else float("nan"),
                        colour_mean(images, person_masks))


def to_sharpness(image: np.ndarray, target: float) -> np.ndarray:
    """Resample down and up just enough that the image is no sharper than `target`."""
    if sharpness(image) <= target:
        return image
    for factor in SHARPNESS_FACTORS[1:]:
        resampled = down_up(image, factor)
        if sharpness(resampled) <= target:
            return resampled
    return down_up(image, SHARPNESS_FACTORS[-1])


def to_face_width(image: np.ndarray, width: float, target: float,
                  centre: tuple[float, float] | None) -> np.ndarray:
    """Zoom so the face spans `target` of the side instead of `width` (unknown width: as is)."""
    if not (np.isfinite(width) and np.isfinite(target)) or width <= 0:
        return image
    return zoom(image, float(np.clip(target / width, 0.5, 2.0)), centre)


def to_colour(image: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Give the image a class's colour cast: its own channel means replaced by the class's."""
    pixels = image.astype(np.float64)
    out = pixels - pixels.reshape(-1, 3).mean(axis=0) + mean
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


PROFILE_FAMILIES = ("quality", "geometry", "colour")


def to_profile(family: str, images: Batch, profiles: Sequence[ClassProfile],
               targets: Sequence[int], face_widths: Sequence[float],
               centres: Sequence[tuple[float, float] | None]) -> Batch:
    """Each image moved to the profile of class targets[i] along one family."""
    out = []
    for image, target, width, centre in zip(images, targets, face_widths, centres, strict=True):
        profile = profiles[int(target)]
        image = np.asarray(image)
        if family == "quality":
            out.append(to_sharpness(image, profile.sharpness))
        elif family == "geometry":
            out.append(to_face_width(image, width, profile.face_width, centre))
        elif family == "colour":
            out.append(to_colour(image, profile.colour))
        else:
            raise ValueError(f"no profile probe for family {family!r}; expected {PROFILE_FAMILIES}")
    return np.stack(out) if out else np.asarray(images)
