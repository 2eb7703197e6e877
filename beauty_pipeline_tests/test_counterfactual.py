"""Counterfactual sets on synthetic arrays: a green person on red (class 0) or blue (class 1)."""

from __future__ import annotations

import numpy as np
import pytest
from beauty_pipeline.explain.counterfactual import (
    accuracy,
    bg_gap,
    build_counterfactuals,
    other_class_partners,
)

SIZE = 48
BACKDROP = {0: (200, 30, 30), 1: (30, 30, 200)}
PERSON = np.array([20, 220, 20])


def _sample(label: int, shift: int) -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng(label * 10 + shift)
    image = np.empty((SIZE, SIZE, 3), np.uint8)
    image[:] = BACKDROP[label]
    image = np.clip(image.astype(int) + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    mask = (((yy - 24) ** 2 + (xx - 20 - shift) ** 2) <= 10**2).astype(np.uint8) * 255
    image[mask > 0] = PERSON
    return image, mask, label


@pytest.fixture(scope="module")
def samples():
    return [_sample(0, 0), _sample(0, 3), _sample(0, 6), _sample(1, 0), _sample(1, 4)]


@pytest.fixture(scope="module")
def sets(samples):
    return build_counterfactuals(samples, seed=7)


def test_face_only_has_white_background(samples, sets):
    for (image, mask, _), out in zip(samples, sets.face_only, strict=True):
        assert (out[mask == 0] == 255).all()
        np.testing.assert_array_equal(out[mask == 255], image[mask == 255])


def test_background_only_has_no_person(samples, sets):
    for (_, mask, label), plate in zip(samples, sets.background_only, strict=True):
        hole = plate[mask == 255].astype(int)
        assert np.abs(hole - PERSON).sum(axis=1).min() > 150  # no pixel is person-green
        assert np.abs(hole.mean(axis=0) - BACKDROP[label]).max() < 40  # filled with the backdrop


def test_swapped_carries_the_other_class_background(samples, sets):
    labels = sets.labels
    np.testing.assert_array_equal(labels, [s[2] for s in samples])
    for i, ((image, mask, label), out) in enumerate(zip(samples, sets.swapped, strict=True)):
        partner = sets.swap_partner[i]
        assert labels[partner] != label
        np.testing.assert_array_equal(out[mask == 255], image[mask == 255])  # same person
        outside = out[mask == 0].astype(int)
        plate = sets.background_only[partner][mask == 0].astype(int)
        np.testing.assert_array_equal(outside, plate)
        assert np.abs(outside.mean(axis=0) - BACKDROP[1 - label]).max() < 40


def test_partners_are_seeded_and_cross_class():
    labels = [0, 0, 0, 1, 1, 1, 1]
    first, again = other_class_partners(labels, seed=3), other_class_partners(labels, seed=3)
    np.testing.assert_array_equal(first, again)
    assert all(labels[j] != labels[i] for i, j in enumerate(first))
    draws = {tuple(other_class_partners(labels, seed=s)) for s in range(5)}
    assert len(draws) > 1  # the seed matters: partners are drawn, not fixed
    with pytest.raises(ValueError):
        other_class_partners([1, 1, 1])


def test_bg_gap_and_accuracy():
    assert accuracy([1, 0, 1, 1], [1, 0, 0, 1]) == 0.75
    assert bg_gap(0.98, 0.55) == pytest.approx(0.43)
    assert bg_gap(0.7, 0.7) == 0.0
