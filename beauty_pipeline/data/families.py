"""Shortcut families beyond the background: matched transforms and class-profile swaps.

Every transform works on a batch of uint8 (N, H, W, 3) model inputs and treats both classes the
same way. Two kinds of probe:
- matched: one transform for every image (it can remove a cue, never add a class-specific one);
  compared with the untouched test set. It has no class control (it also erases facial detail:
  at 48 px a clean face model loses 0.2-0.3 to it), so it is reported beside the verdict, not in it.
- profile: each image is moved to a class's profile (sharpness, face size in the frame, colour
  cast, JPEG compression, where the face sits, border/padding, noise level, measured on the
  *train* images); moving it to the other class's profile is the probe, to its own class's
  profile the control (the same operation at the same cost, keeping the class cue). Every move
  works both ways (sharpen or soften, add or remove noise, subtract and add the same person mean),
  and geometry and position move the content inside a detected frame, never the frame itself.
  The spatial moves keep the pixels' detail: position moves by whole pixels (a copy, no
  resampling) and geometry resamples with Lanczos. Bilinear resampling is a blur of its own: on
  the demo's validation photos a half-pixel bilinear shift alone took a 48 px face model from
  0.90 to 0.58, which made both moves' controls cost more than the cue they test.
Parameters scale with the image side, so a probe means the same at 48 px and at 224 px.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from beauty_pipeline.parallel import run_in_pool
from beauty_pipeline.settings import available_cpus

FAMILIES = ("background", "quality", "geometry", "colour", "compression", "position", "border",
            "noise")
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


def jpeg(image: np.ndarray, quality: int, subsampled: bool = True) -> np.ndarray:
    """Re-encode as JPEG at the given quality, chroma 4:2:0 (subsampled) or 4:4:4 (colour order
    is irrelevant to the round trip)."""
    sampling = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420 if subsampled else \
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image), [
        cv2.IMWRITE_JPEG_QUALITY, int(quality), cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)


def zoom(image: np.ndarray, factor: float, centre: tuple[float, float] | None = None,
         offset: tuple[float, float] = (0.0, 0.0),
         interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Scale the content by `factor` about `centre` (default: the middle), then move it by
    `offset` pixels; borders reflect."""
    side = image.shape[0]
    cx, cy = centre if centre is not None else (side / 2, side / 2)
    matrix = np.float32([[factor, 0, (1 - factor) * cx + offset[0]],
                         [0, factor, (1 - factor) * cy + offset[1]]])
    return cv2.warpAffine(image, matrix, (image.shape[1], side), flags=interpolation,
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
    """Mean squared Laplacian of the grey image after a 3x3 median: fine detail, what resampling
    and blur remove; the median takes pixel noise out first, so noise is the noise family's."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    grey = cv2.medianBlur(grey, 3).astype(np.float32)
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
    blockiness: float = 1.0  # median JPEG 8x8 blockiness (1 = none)
    subsampled: bool = False  # chroma looks 4:2:0 (most images' chroma carries no fine detail)
    face_centre: tuple[float, float] = (0.5, 0.5)  # median face centre, shares of the side
    border: float = 0.0  # median width of a flat frame, share of the side
    border_colour: tuple[float, float, float] = (0.0, 0.0, 0.0)
    noise: float = 0.0  # median noise sigma (grey levels)

    def as_dict(self) -> dict:
        return {"sharpness": self.sharpness, "face_width": self.face_width,
                "colour_mean": [round(float(v), 2) for v in self.colour],
                "blockiness": round(self.blockiness, 3), "chroma_subsampled": self.subsampled,
                "face_centre": [round(float(v), 3) for v in self.face_centre],
                "border": round(self.border, 3),
                "border_colour": [round(float(v), 1) for v in self.border_colour],
                "noise": round(self.noise, 2)}


def blockiness(image: np.ndarray) -> float:
    """Mean absolute luma step across the 8x8 JPEG grid over the mean step inside blocks: 1 for an
    image never JPEG-coded at this size, above 1 the stronger the blocking."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    steps = np.abs(np.diff(grey, axis=1)).mean(axis=0), np.abs(np.diff(grey, axis=0)).mean(axis=1)
    ratios = []
    for step in steps:
        at_edge = np.arange(len(step)) % 8 == 7
        if at_edge.any() and (~at_edge).any():
            ratios.append((step[at_edge].mean() + 0.5) / (step[~at_edge].mean() + 0.5))
    return float(np.mean(ratios)) if ratios else 1.0


def chroma_detail(image: np.ndarray) -> float:
    """Share of the chroma energy lost by 2x chroma subsampling: near 0 for 4:2:0 images."""
    ycc = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2YCrCb).astype(np.float32)
    chroma = ycc[..., 1:]
    h, w = chroma.shape[:2]
    reduced = cv2.resize(cv2.resize(chroma, (max(1, w // 2), max(1, h // 2)),
                                    interpolation=cv2.INTER_AREA), (w, h),
                         interpolation=cv2.INTER_LINEAR)
    centred = chroma - chroma.mean(axis=(0, 1))
    return float(np.mean((chroma - reduced) ** 2) / (np.mean(centred ** 2) + 1e-6))


CHROMA_SUBSAMPLED = 0.02  # chroma_detail below this: the image's chroma is 4:2:0
JPEG_QUALITIES = (95, 85, 75, 65, 55, 45, 35, 25, 18, 12, 8)


def noise_sigma(image: np.ndarray) -> float:
    """Noise standard deviation (grey levels) from Immerkaer's Laplacian-difference operator, with
    the median absolute response (robust: edges and texture are sparse, noise is everywhere)."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    kernel = np.float32([[1, -2, 1], [-2, 4, -2], [1, -2, 1]])
    response = cv2.filter2D(grey, -1, kernel)[1:-1, 1:-1]
    return float(1.4826 * np.median(np.abs(response)) / 6)


def frame_width(image: np.ndarray, tolerance: float = 3.0) -> int:
    """Width in pixels of a flat frame on all four sides (padding, letterbox, mat), 0 if none:
    rows and columns from each edge inward whose pixels all stay within `tolerance` of the corner
    colour (padding is flat to the level; a backdrop has noise); the thinnest side's run."""
    pixels = np.asarray(image)
    colour = np.asarray(pixels[0, 0], np.float32)
    limit = pixels.shape[0] // 3
    edges = (lambda k: pixels[k], lambda k: pixels[-1 - k], lambda k: pixels[:, k],
             lambda k: pixels[:, -1 - k])
    width = limit
    for line in edges:  # inward from each edge, line by line: most photos stop at the first
        for k in range(width):
            if np.abs(np.asarray(line(k), np.float32) - colour).max() > tolerance:
                width = k
                break
        if width == 0:
            break
    return width


def frame_colour(image: np.ndarray, width: int) -> np.ndarray:
    """Mean colour of the frame's pixels (the corner pixel when there is no frame)."""
    if width <= 0:
        return np.asarray(image[0, 0], np.float64)
    inner = np.zeros(image.shape[:2], bool)
    inner[width:-width, width:-width] = True
    return np.asarray(image, np.float64)[~inner].mean(axis=0)


def class_profile(images: Batch, face_widths: Sequence[float],
                  person_masks: np.ndarray | None = None,
                  face_centres: Sequence[tuple[float, float] | None] | None = None) -> ClassProfile:
    """Every family's profile of one class's train images: medians of sharpness, face width,
    blockiness, chroma detail, face centre (shares of the side), frame width and noise; the
    person's mean colour. Person masks are (N, H, W) in [0, 1] at the images' size."""
    widths = np.asarray(face_widths, dtype=np.float64)
    widths = widths[np.isfinite(widths)]
    images = np.asarray(images)
    side = images.shape[1] if len(images) else 1
    centres = [c for c in (face_centres or []) if c is not None]
    centre = tuple(float(v) / side for v in np.median(np.asarray(centres), axis=0)) if centres \
        else (0.5, 0.5)
    frames = np.asarray([frame_width(im) for im in images]) if len(images) else np.zeros(1, int)
    border = int(np.median(frames))
    framed = [frame_colour(im, int(w)) for im, w in zip(images, frames, strict=False) if w > 0]
    return ClassProfile(float(np.median([sharpness(im) for im in images])),
                        float(np.median(widths)) if len(widths) else float("nan"),
                        colour_mean(images, person_masks),
                        float(np.median([blockiness(im) for im in images])),
                        bool(np.median([chroma_detail(im) for im in images]) < CHROMA_SUBSAMPLED),
                        centre, border / side,
                        tuple(float(v) for v in np.median(framed, axis=0)) if framed else
                        (0.0, 0.0, 0.0),
                        float(np.median([noise_sigma(im) for im in images])))


def unsharp(image: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp masking: add `amount` times the detail a small blur removes."""
    pixels = image.astype(np.float32)
    soft = cv2.GaussianBlur(pixels, (0, 0), sigmaX=max(0.6, image.shape[0] / 96))
    return np.clip(np.rint(pixels + amount * (pixels - soft)), 0, 255).astype(np.uint8)


SHARPEN_AMOUNTS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


SHARPNESS_BAND = 2.0  # within a factor of 2 of the target an image is left as is


def to_sharpness(image: np.ndarray, target: float, band: float = SHARPNESS_BAND) -> np.ndarray:
    """Move the image's sharpness into [target / band, target * band]: resample down and up just
    enough when it is sharper, unsharp-mask just enough when it is softer (the same search both
    ways). Images already in the band are untouched: one class's own spread of sharpness (studio
    vs cluttered scenes) is not moved, so the own-class control costs little."""
    current = sharpness(image)
    if target / band <= current <= target * band:
        return image
    target = target * band if current > target else target / band
    if current > target:
        for factor in SHARPNESS_FACTORS[1:]:
            resampled = down_up(image, factor)
            if sharpness(resampled) <= target:
                return resampled
        return down_up(image, SHARPNESS_FACTORS[-1])
    if current < target:
        for amount in SHARPEN_AMOUNTS:
            sharpened = unsharp(image, amount)
            if sharpness(sharpened) >= target:
                return sharpened
        return unsharp(image, SHARPEN_AMOUNTS[-1])
    return image


def inside_frame(image: np.ndarray, transform: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a spatial transform to the content inside a flat frame, keeping the frame as is (so
    zooming or moving never duplicates a frame or an edge cue into the picture)."""
    width = frame_width(image)
    if width <= 0 or image.shape[0] - 2 * width < 8:
        return transform(image)
    out = np.array(image, copy=True)
    inner = np.ascontiguousarray(image[width:-width, width:-width])
    out[width:-width, width:-width] = transform(inner)
    return out


def to_face_width(image: np.ndarray, width: float, target: float,
                  centre: tuple[float, float] | None) -> np.ndarray:
    """Zoom so the face spans `target` of the side instead of `width` (unknown width: as is); the
    factor stays within [2/3, 3/2], the content inside a frame is zoomed, not the frame, and
    Lanczos resampling keeps the detail a bilinear zoom would blur away."""
    if not (np.isfinite(width) and np.isfinite(target)) or width <= 0:
        return image
    factor = float(np.clip(target / width, 2 / 3, 1.5))
    frame = frame_width(image)
    if centre is not None and frame > 0:
        centre = (centre[0] - frame, centre[1] - frame)
    return inside_frame(image, lambda inner: zoom(inner, factor, centre,
                                                  interpolation=cv2.INTER_LANCZOS4))


def to_position(image: np.ndarray, centre: tuple[float, float] | None,
                target: tuple[float, float]) -> np.ndarray:
    """Translate the content so the face centre (pixels) lands on `target` (shares of the side),
    to the nearest whole pixel (a copy: no resampling blur), inside any frame; unknown centre: as
    is."""
    if centre is None:
        return image
    side = image.shape[0]
    offset = tuple(float(round(t * side - c)) for t, c in zip(target, centre, strict=True))
    return inside_frame(image, lambda inner: zoom(inner, 1.0, None, offset))


def colour_shift(image: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The whole image's channels moved by `shift` (clipped): a colour cast added or taken away,
    the pattern kept."""
    out = image.astype(np.float64) + np.asarray(shift, np.float64)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def class_colour_gap(profiles: Sequence[ClassProfile], target: int) -> np.ndarray:
    """The colour move toward class `target`: its person mean minus the other class's. Other-class
    photos cross the gap; own-class photos move the same distance further into their own class
    (the control: the same manipulation, the class cue kept), so both cost alike whatever the
    person's own colour, and a clean model's gap is small."""
    return np.asarray(profiles[int(target)].colour, np.float64) - np.asarray(
        profiles[1 - int(target)].colour, np.float64)


def to_compression(image: np.ndarray, target: float, subsampled: bool) -> np.ndarray:
    """Re-encode with the class's chroma subsampling at the highest JPEG quality whose blocking
    reaches `target` (quality 95 when the image is already as blocky: blocking cannot be undone,
    but every image goes through the same encoder either way)."""
    for quality in JPEG_QUALITIES:
        coded = jpeg(image, quality, subsampled)
        if blockiness(coded) >= target:
            return coded
    return coded


NOISE_SIGMAS = (0.6, 0.9, 1.2, 1.6, 2.0, 2.5)
GREY_GAIN = float(np.sqrt(0.299 ** 2 + 0.587 ** 2 + 0.114 ** 2))  # grey sigma per channel sigma


NOISE_BAND = 2.0  # grey levels: a noise level this close to the target is left as is


def to_noise(image: np.ndarray, target: float, seed: int, band: float = NOISE_BAND) -> np.ndarray:
    """Move the noise level to `target` unless it is within `band` of it already: add Gaussian
    noise when the image is cleaner, blur just enough when it is noisier (seeded per image, so
    reruns agree, and own and other moves draw the same noise)."""
    current = noise_sigma(image)
    if abs(current - target) <= band:
        return image
    if current < target:
        rng = np.random.default_rng(seed)
        extra = rng.normal(0.0, np.sqrt(target ** 2 - current ** 2) / GREY_GAIN, image.shape)
        return np.clip(np.rint(image.astype(np.float64) + extra), 0, 255).astype(np.uint8)
    if current > target:
        for sigma in NOISE_SIGMAS:
            smoothed = blur(image, sigma * image.shape[0] / 96)
            if noise_sigma(smoothed) <= target:
                return smoothed
        return blur(image, NOISE_SIGMAS[-1] * image.shape[0] / 96)
    return image


def to_border(image: np.ndarray, target: float, colour: Sequence[float]) -> np.ndarray:
    """Replace the image's flat frame (if any) by the class's: the content inside the old frame is
    resized into a frame of `target` (share of the side) in the class's frame colour."""
    side = image.shape[0]
    old, new = frame_width(image), int(round(target * side))
    if old == new and (new == 0 or np.abs(frame_colour(image, old) - colour).max() < 6):
        return image
    inner = image[old:side - old, old:image.shape[1] - old] if old else image
    out = np.empty_like(image)
    out[:] = np.clip(np.rint(np.asarray(colour)), 0, 255).astype(np.uint8)
    size = (image.shape[1] - 2 * new, side - 2 * new)
    out[new:side - new, new:image.shape[1] - new] = cv2.resize(
        np.ascontiguousarray(inner), size, interpolation=cv2.INTER_AREA)
    return out


PROFILE_FAMILIES = ("quality", "geometry", "colour", "compression", "position", "border", "noise")


def to_profile(family: str, images: Batch, profiles: Sequence[ClassProfile],
               targets: Sequence[int], face_widths: Sequence[float],
               centres: Sequence[tuple[float, float] | None], seed: int = 0,
               first: int = 0) -> Batch:
    """Each image moved to the profile of class targets[i] along one family (seed: the noise
    move's draws; first: the index of images[0] in the whole set, so a chunk draws the noise the
    whole set would)."""
    if family not in PROFILE_FAMILIES:
        raise ValueError(f"no profile probe for family {family!r}; expected {PROFILE_FAMILIES}")
    out = []
    for i, (image, target, width, centre) in enumerate(zip(images, targets, face_widths, centres,
                                                           strict=True)):
        profile = profiles[int(target)]
        image = np.asarray(image)
        if family == "quality":
            out.append(to_sharpness(image, profile.sharpness))
        elif family == "geometry":
            out.append(to_face_width(image, width, profile.face_width, centre))
        elif family == "colour":
            out.append(colour_shift(image, class_colour_gap(profiles, target)))
        elif family == "compression":
            out.append(to_compression(image, profile.blockiness, profile.subsampled))
        elif family == "position":
            out.append(to_position(image, centre, profile.face_centre))
        elif family == "border":
            out.append(to_border(image, profile.border, profile.border_colour))
        else:
            out.append(to_noise(image, profile.noise, seed * 100_003 + first + i))
    return np.stack(out) if out else np.asarray(images)


PROFILE_CHUNK = 32  # test images per pool task of profile_sets
MIN_POOL_PROFILE_IMAGES = 128  # fewer: this process moves them (a pool's start costs more)


def _profile_chunk(profiles, labels, widths, centres, images, seed: int,
                   first: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pool task: one chunk of test images moved to its own and to the other class's profile,
    family by family."""
    return {family: tuple(to_profile(family, images, profiles, targets, widths, centres, seed,
                                     first) for targets in (labels, 1 - labels))
            for family in PROFILE_FAMILIES}


def profile_sets(images: np.ndarray, profiles: Sequence[ClassProfile], labels: np.ndarray,
                 widths: Sequence[float], centres: Sequence, seed: int,
                 workers: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every profile family's own- and other-class versions of the test images, in chunks over
    the process pool when there are enough (the same arrays as in one process)."""
    labels = np.asarray(labels)
    starts = list(range(0, len(images), PROFILE_CHUNK))
    calls = [(profiles, labels[a:a + PROFILE_CHUNK], list(widths[a:a + PROFILE_CHUNK]),
              list(centres[a:a + PROFILE_CHUNK]), np.asarray(images[a:a + PROFILE_CHUNK]), seed,
              a) for a in starts]
    cap = workers or available_cpus()
    chunks = None
    if cap > 1 and len(calls) > 1 and len(images) >= MIN_POOL_PROFILE_IMAGES:
        chunks = run_in_pool(_profile_chunk, calls, cap)
    if chunks is None:  # one core, few images, or a pool that broke: here
        chunks = [_profile_chunk(*call) for call in calls]
    if not chunks:
        return {family: (np.asarray(images), np.asarray(images)) for family in PROFILE_FAMILIES}
    return {family: tuple(np.concatenate([chunk[family][k] for chunk in chunks])
                          for k in (0, 1)) for family in PROFILE_FAMILIES}
