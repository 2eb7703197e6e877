"""Counterfactual test sets with controls (Xiao et al. 2020, Backgrounds Challenge), per variant.

Every set keeps the person's label and is built identically for both classes:
- face_only: the face alone (person mask x face region) on a neutral plate (one flat colour for all
  images: the mean background colour of the variant's train images, so it carries no class and is
  in the variant's palette): no hair, neck or clothes.
- person_only: the whole cut-out (face, hair, neck, clothes) on the same neutral plate.
- face_features_removed: eyes, nose and mouth removed and inpainted from the surrounding face
  (positive evidence for the face: a face model's decision must collapse).
- face_features_control: the same area of the same person removed elsewhere (hair, neck, clothes,
  forehead: inside the person, outside the face) and filled the same way (the control).
- face_swapped: the inner face (eyes, cheeks, nose and mouth: the face inside its outline)
  taken from the mixed-other partner (an identity of the other class, its face box aligned onto
  this one); face_swap_control: as many pixels of the same person elsewhere taken from that
  partner. Removal leaves a face with no features, which a face model reads as one class (the
  "featureless" class keeps its accuracy), so only the swap can show, in *each* class, that the
  face decides; it takes the whole inner face, not the features alone, because a class's look
  lives on the cheeks and skin too (blush, make-up), which a features-only swap leaves in place.
- background_only: the image's background plate (person removed and inpainted).
- mixed_same: the person on the background plate of another identity of the *same* class
  (the control: compositing damage without a class change).
- mixed_other: the person on the plate of an identity of the *other* class.
A flat frame (padding, letterbox) and the noise level belong to the photo, not to the scene: they
are the border and noise families' business, so plates lose their frame (the scene inside
stretched to the full side) and a mixed image keeps its own photo's frame and noise level.
BG-gap = acc(mixed_same) - acc(mixed_other); composite cost = acc(original) - acc(mixed_same).
Plates come from the variant's own background pool, labelled by the photo they were cut from: the
original photos' plates for `original` and `random`, plain white for `white` (whose backgrounds
carry no class by construction, so its BG-gap is exactly 0 and other families must speak).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from beauty_pipeline.data.backgrounds import as_alpha, composite, fill_hole
from beauty_pipeline.data.families import frame_colour, frame_width, noise_sigma, to_border, to_noise

COUNTERFACTUALS = ("face_only", "person_only", "background_only", "mixed_same", "mixed_other",
                   "face_features_removed", "face_features_control", "face_swapped",
                   "face_swap_control")
# Where the eyes, nose and mouth sit inside a face box (x0, y0, x1, y1), as ellipses
# (centre x, centre y, radius x, radius y) in fractions of the box: the rows carry no landmarks
# (the face stage keeps the box only), so the aligned-face positions are used; they cover the
# five YuNet landmarks of an upright frontal face and the synthetic faces' eyes and mouth.
FEATURE_PRIOR = ((0.29, 0.42, 0.15, 0.10), (0.71, 0.42, 0.15, 0.10),  # eyes
                 (0.50, 0.57, 0.09, 0.10),  # nose
                 (0.50, 0.74, 0.32, 0.10))  # mouth
# Where the control removes the same area, relative to the face box (x, y in box widths/heights
# from its top-left corner): left and right shoulder, neck, top of the head.
CONTROL_ANCHORS = ((-0.6, 1.55), (1.6, 1.55), (0.5, 1.25), (0.5, -0.08))
# The inner face the swap takes, as one ellipse in the box's fractions: from the brows to below
# the mouth and across both cheeks, clear of the face's outline (so the partner's hair, ears or
# background never come along); split in four quadrants, one per control anchor.
INNER_FACE = (0.50, 0.57, 0.42, 0.30)
# The sets' method version: it names the variants' Dagster code version and their chunk-ledger
# step, so a changed set is rebuilt, never read back from a finished chunk. 2: the inner-face swap.
COUNTERFACTUAL_SETS_VERSION = "2"
# The areas recorded per test image (manifest columns cf_<name>_area), in FaceSets.areas order.
FACE_AREAS = ("feature", "control", "swap", "swap_control")


@dataclass(frozen=True)
class TestSample:
    """One test image of a variant: the variant image, the person mask, its original plate."""

    image: np.ndarray
    mask: np.ndarray
    plate: np.ndarray
    label: int
    identity: str
    face_box: tuple[float, float, float, float] | None = None  # image pixels; None: aligned prior
    face_region: np.ndarray | None = None  # (H, W) in [0, 1]; None: ellipse in the face box


def sample_box(sample: TestSample) -> tuple[float, float, float, float]:
    """The sample's face box in its own pixels (the aligned prior box when it has none)."""
    if sample.face_box is not None and all(np.isfinite(sample.face_box)):
        return tuple(float(v) for v in sample.face_box)
    height, width = sample.image.shape[:2]
    return (width / 6, height / 6, width * 5 / 6, height * 5 / 6)


def _ellipses(shape: tuple[int, int], box, ellipses) -> list[np.ndarray]:
    """Boolean masks of ellipses given in fractions of the box."""
    height, width = shape
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    out = []
    for fx, fy, rx, ry in ellipses:
        cx, cy = x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)
        ax, ay = max(rx * (x1 - x0), 0.75), max(ry * (y1 - y0), 0.75)
        out.append(((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2 <= 1.0)
    return out


def face_region(sample: TestSample) -> np.ndarray:
    """The face (float in [0, 1]): the exact face mask when known, else the box's ellipse."""
    if sample.face_region is not None:
        region = np.asarray(sample.face_region, np.float32)
        return region / 255.0 if region.max() > 1.0 else region
    return _ellipses(sample.image.shape[:2], sample_box(sample), [(0.5, 0.5, 0.5, 0.5)])[0] \
        .astype(np.float32)


def feature_blobs(sample: TestSample) -> list[np.ndarray]:
    """Eyes, nose and mouth as boolean masks inside the person (one per feature)."""
    person = as_alpha(sample.mask)[..., 0] >= 0.5
    return [blob & person for blob in _ellipses(sample.image.shape[:2], sample_box(sample),
                                                 FEATURE_PRIOR)]


def inner_face_blobs(sample: TestSample) -> list[np.ndarray]:
    """The inner face (INNER_FACE inside the face and the person) as four quadrant masks."""
    box = sample_box(sample)
    [inner] = _ellipses(sample.image.shape[:2], box, [INNER_FACE])
    inner &= (face_region(sample) >= 0.5) & (as_alpha(sample.mask)[..., 0] >= 0.5)
    x0, y0, x1, y1 = box
    cx, cy = x0 + INNER_FACE[0] * (x1 - x0), y0 + INNER_FACE[1] * (y1 - y0)
    ys, xs = np.mgrid[0:inner.shape[0], 0:inner.shape[1]].astype(np.float32) + 0.5
    left, top = xs < cx, ys < cy
    return [inner & left & top, inner & ~left & top, inner & ~left & ~top, inner & left & ~top]


def control_blobs(sample: TestSample, blobs: list[np.ndarray]) -> list[np.ndarray]:
    """For every feature blob, as many person pixels outside the (grown) face, nearest to one
    anchor each (shoulders, neck, top of the head): the same area of the same person elsewhere."""
    height, width = sample.image.shape[:2]
    x0, y0, x1, y1 = sample_box(sample)
    face = (face_region(sample) >= 0.5).astype(np.uint8)
    grow = max(1, int(round(0.08 * (x1 - x0))))
    face = cv2.dilate(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2))
    free = (as_alpha(sample.mask)[..., 0] >= 0.5) & (face == 0)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    out = []
    for blob, (ax, ay) in zip(blobs, CONTROL_ANCHORS, strict=True):
        area = int(blob.sum())
        cx, cy = x0 + ax * (x1 - x0), y0 + ay * (y1 - y0)
        candidates = np.flatnonzero(free.ravel())
        distance = (xs.ravel()[candidates] - cx) ** 2 + (ys.ravel()[candidates] - cy) ** 2
        chosen = candidates[np.argsort(distance, kind="stable")[:area]]
        taken = np.zeros(height * width, bool)
        taken[chosen] = True
        taken = taken.reshape(height, width)
        free &= ~taken
        out.append(taken)
    return out


def remove_regions(image: np.ndarray, regions: list[np.ndarray]) -> np.ndarray:
    """Cut the regions out and inpaint them from their surroundings (as background plates are:
    TELEA, at about 96 px for larger images)."""
    hole = np.zeros(image.shape[:2], np.uint8)
    for region in regions:
        hole[region] = 255
    if not hole.any():
        return np.array(image, copy=True)
    return fill_hole(image, hole, min_radius=2)


def unframed_plate(sample: TestSample) -> np.ndarray:
    """The sample's plate without its photo's frame (frame read on the image, which the
    inpainting never touched): the scene inside stretched to the full side."""
    width = frame_width(sample.image)
    return sample.plate if width == 0 else to_border(sample.plate[width:-width, width:-width],
                                                     0.0, (0, 0, 0))


def framed_like(plate: np.ndarray, sample: TestSample) -> np.ndarray:
    """A frameless plate given the sample's own noise level and frame (noise within the noise
    move's band and no frame: as is)."""
    if plate.shape != sample.image.shape:
        plate = cv2.resize(plate, (sample.image.shape[1], sample.image.shape[0]),
                           interpolation=cv2.INTER_AREA)
    seed = int(np.asarray(sample.image, np.int64).sum() % 2**31)
    plate = to_noise(plate, noise_sigma(sample.image), seed)
    width = frame_width(sample.image)
    if width == 0:
        return plate
    return to_border(plate, width / sample.image.shape[0], frame_colour(sample.image, width))


def aligned(partner: TestSample, sample: TestSample) -> np.ndarray:
    """The partner's image scaled and moved so its face box lies on the sample's."""
    px0, py0, px1, py1 = sample_box(partner)
    sx0, sy0, sx1, sy1 = sample_box(sample)
    kx, ky = (sx1 - sx0) / max(px1 - px0, 1e-6), (sy1 - sy0) / max(py1 - py0, 1e-6)
    matrix = np.float32([[kx, 0, sx0 - kx * px0], [0, ky, sy0 - ky * py0]])
    height, width = sample.image.shape[:2]
    return cv2.warpAffine(np.ascontiguousarray(partner.image), matrix, (width, height),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def pasted(image: np.ndarray, source: np.ndarray, regions: list[np.ndarray]) -> np.ndarray:
    """The image with the regions' pixels taken from the (aligned) source."""
    out = np.array(image, copy=True)
    where = np.any(regions, axis=0) if regions else np.zeros(image.shape[:2], bool)
    out[where] = source[where]
    return out


@dataclass(frozen=True)
class FaceSets:
    """One sample's face tests: features removed and their control, the inner face swapped from
    the other-class partner and its control, with each test's area and its control's."""

    removed: np.ndarray
    removed_control: np.ndarray
    swapped: np.ndarray
    swap_control: np.ndarray
    areas: tuple[int, int, int, int]  # features, their control, inner face, its control


def _area(regions: list[np.ndarray]) -> int:
    return int(sum(r.sum() for r in regions))


def face_sets(sample: TestSample, partner: TestSample) -> FaceSets:
    """The face tests for one sample and its other-class partner."""
    features = feature_blobs(sample)
    features_control = control_blobs(sample, features)
    inner = inner_face_blobs(sample)
    inner_control = control_blobs(sample, inner)
    source = aligned(partner, sample)
    return FaceSets(remove_regions(sample.image, features),
                    remove_regions(sample.image, features_control),
                    pasted(sample.image, source, inner), pasted(sample.image, source, inner_control),
                    tuple(_area(r) for r in (features, features_control, inner, inner_control)))


def neutral_colour(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> np.ndarray:
    """Mean RGB of all background pixels (mask < 0.5) over the given images: a class-free plate."""
    total, count = np.zeros(3), 0
    for image, mask in zip(images, masks, strict=True):
        outside = as_alpha(mask)[..., 0] < 0.5
        total += image[outside].reshape(-1, 3).sum(axis=0)
        count += int(outside.sum())
    if count == 0:
        return np.full(3, 128, np.uint8)
    return np.clip(np.rint(total / count), 0, 255).astype(np.uint8)


def partners(labels: Sequence[int], identities: Sequence[str], same_class: bool,
             seed: int = 0) -> np.ndarray:
    """For each image, a random other identity's image of the same (or the other) class."""
    labels, identities = np.asarray(labels), np.asarray(identities)
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=np.int64)
    for i, (label, who) in enumerate(zip(labels, identities, strict=True)):
        wanted = labels == label if same_class else labels != label
        pool = np.flatnonzero(wanted & (identities != who))
        if len(pool) == 0:
            kind = "the same" if same_class else "another"
            raise ValueError(f"no image of {kind} class than {label!r} from another identity "
                             "to take a background plate from")
        out[i] = rng.choice(pool)
    return out


@dataclass(frozen=True)
class CounterfactualSets:
    """The counterfactual sets, aligned with the input order, and how they were drawn."""

    sets: dict[str, list[np.ndarray]]
    labels: np.ndarray
    same_partner: np.ndarray
    other_partner: np.ndarray
    neutral: np.ndarray
    areas: np.ndarray  # (images, 4) pixels: features, their control, inner face, its control

    @property
    def feature_area(self) -> np.ndarray:
        return self.areas[:, 0]

    @property
    def control_area(self) -> np.ndarray:
        return self.areas[:, 1]


def sample_sets(sample: TestSample, same: TestSample, other: TestSample,
                neutral: np.ndarray) -> tuple[list[np.ndarray], tuple[int, int, int, int]]:
    """One test image's sets in COUNTERFACTUALS order, given its same- and other-class partners,
    with the face tests' areas: one function for the serial and the pooled builds."""
    plate = np.broadcast_to(np.asarray(neutral, np.uint8), sample.image.shape).copy()
    face = face_sets(sample, other)
    made = {
        "face_only": composite(sample.image, as_alpha(sample.mask)[..., 0] * face_region(sample),
                               plate),
        "person_only": composite(sample.image, sample.mask, plate),
        "background_only": unframed_plate(sample),
        "mixed_same": composite(sample.image, sample.mask,
                                framed_like(unframed_plate(same), sample)),
        "mixed_other": composite(sample.image, sample.mask,
                                 framed_like(unframed_plate(other), sample)),
        "face_features_removed": face.removed,
        "face_features_control": face.removed_control,
        "face_swapped": face.swapped,
        "face_swap_control": face.swap_control,
    }
    return [made[name] for name in COUNTERFACTUALS], face.areas


def build_counterfactuals(samples: Sequence[TestSample], neutral: np.ndarray,
                          seed: int = 0) -> CounterfactualSets:
    """Every set; partners are seeded and never the same identity."""
    if not samples:
        raise ValueError("no test samples to build counterfactual sets from")
    labels = np.asarray([s.label for s in samples], dtype=np.int64)
    identities = [s.identity for s in samples]
    same = partners(labels, identities, True, seed)
    other = partners(labels, identities, False, seed + 1)
    made = [sample_sets(s, samples[j], samples[k], neutral)
            for s, j, k in zip(samples, same, other, strict=True)]
    sets = {name: [m[0][n] for m in made] for n, name in enumerate(COUNTERFACTUALS)}
    return CounterfactualSets(sets, labels, same, other, np.asarray(neutral, np.uint8),
                              np.asarray([m[1] for m in made], dtype=np.int64).reshape(-1, 4))
