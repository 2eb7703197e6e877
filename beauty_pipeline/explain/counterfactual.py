"""Counterfactual test sets (Xiao et al. 2020): what a model gets right without face or background.

- face_only: the person on white (background removed); label = the person's.
- background_only: the person removed and inpainted (the plate); label = the image's.
- swapped: the person composited onto the plate of a random image of the *other* class (fixed seed);
  label = the person's. BG-gap = accuracy(original) - accuracy(swapped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from beauty_pipeline.data.backgrounds import background_plate, composite, on_white


def face_only(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Keep the person, make everything else white."""
    return on_white(image, mask)


def background_only(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Remove the person and inpaint the hole, leaving the background plate."""
    return background_plate(image, mask)


def swapped(image: np.ndarray, mask: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """Move the person onto another image's background plate."""
    return composite(image, mask, plate)


def other_class_partners(labels: Sequence[int], seed: int = 0) -> np.ndarray:
    """For each image, the index of a random image of a different class (fixed seed)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    partners = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        pool = np.flatnonzero(labels != label)
        if len(pool) == 0:
            raise ValueError(f"no image of another class than {label!r} to take a background from")
        partners[i] = rng.choice(pool)
    return partners


@dataclass(frozen=True)
class CounterfactualSets:
    """The three counterfactual test sets, aligned with the input order."""

    face_only: list[np.ndarray]
    background_only: list[np.ndarray]
    swapped: list[np.ndarray]
    labels: np.ndarray  # (N,) the label of every set: the person's (= the original image's)
    swap_partner: np.ndarray  # (N,) index of the image whose background each swapped image got

    def sets(self) -> dict[str, list[np.ndarray]]:
        return {"face_only": self.face_only, "background_only": self.background_only,
                "swapped": self.swapped}


def build_counterfactuals(
    samples: Sequence[tuple[np.ndarray, np.ndarray, int]], seed: int = 0
) -> CounterfactualSets:
    """All three sets from (image, person mask, label) triples; each plate is inpainted once."""
    if not samples:
        raise ValueError("no samples")
    labels = np.asarray([int(label) for _, _, label in samples], dtype=np.int64)
    plates = [background_only(image, mask) for image, mask, _ in samples]
    partners = other_class_partners(labels, seed)
    return CounterfactualSets(
        face_only=[face_only(image, mask) for image, mask, _ in samples],
        background_only=plates,
        swapped=[swapped(image, mask, plates[j])
                 for (image, mask, _), j in zip(samples, partners, strict=True)],
        labels=labels,
        swap_partner=partners,
    )


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Share of correct predictions (NaN for an empty set)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float((predictions == labels).mean()) if len(labels) else float("nan")


def bg_gap(acc_original: float, acc_swapped: float) -> float:
    """Accuracy lost when each person is moved onto the other class's background (DESIGN.md §2)."""
    return float(acc_original) - float(acc_swapped)
