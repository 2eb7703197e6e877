"""Counterfactual test sets with controls (Xiao et al. 2020, Backgrounds Challenge), per variant.

Every set keeps the person's label and is built identically for both classes:
- face_only: the person on a neutral plate (one flat colour for all images: the mean background
  colour of the variant's train images, so it carries no class and is in the variant's palette).
- background_only: the image's background plate (person removed and inpainted).
- mixed_same: the person on the background plate of another identity of the *same* class
  (the control: compositing damage without a class change).
- mixed_other: the person on the plate of an identity of the *other* class.
BG-gap = acc(mixed_same) - acc(mixed_other); composite cost = acc(original) - acc(mixed_same).
Plates come from the variant's own background pool, labelled by the photo they were cut from: the
original photos' plates for `original` and `random`, plain white for `white` (whose backgrounds
carry no class by construction, so its BG-gap is exactly 0 and other families must speak).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from beauty_pipeline.data.backgrounds import as_alpha, composite

COUNTERFACTUALS = ("face_only", "background_only", "mixed_same", "mixed_other")


@dataclass(frozen=True)
class TestSample:
    """One test image of a variant: the variant image, the person mask, its original plate."""

    image: np.ndarray
    mask: np.ndarray
    plate: np.ndarray
    label: int
    identity: str


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
    """The four counterfactual sets, aligned with the input order, and how they were drawn."""

    sets: dict[str, list[np.ndarray]]
    labels: np.ndarray
    same_partner: np.ndarray
    other_partner: np.ndarray
    neutral: np.ndarray


def build_counterfactuals(samples: Sequence[TestSample], neutral: np.ndarray,
                          seed: int = 0) -> CounterfactualSets:
    """All four sets; partners are seeded and never the same identity."""
    if not samples:
        raise ValueError("no test samples to build counterfactual sets from")
    labels = np.asarray([s.label for s in samples], dtype=np.int64)
    identities = [s.identity for s in samples]
    same = partners(labels, identities, True, seed)
    other = partners(labels, identities, False, seed + 1)
    plate = np.asarray(neutral, np.uint8)
    sets = {
        "face_only": [composite(s.image, s.mask, np.broadcast_to(plate, s.image.shape).copy())
                      for s in samples],
        "background_only": [s.plate for s in samples],
        "mixed_same": [composite(s.image, s.mask, samples[j].plate)
                       for s, j in zip(samples, same, strict=True)],
        "mixed_other": [composite(s.image, s.mask, samples[j].plate)
                        for s, j in zip(samples, other, strict=True)],
    }
    return CounterfactualSets(sets, labels, same, other, plate)
