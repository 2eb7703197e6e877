"""Counterfactual sets with controls on synthetic arrays: a green person on red (class 0) or blue
(class 1) backdrops; each sample carries its original plate."""

from __future__ import annotations

import numpy as np
import pytest

from beauty_pipeline.data.backgrounds import background_plate
from beauty_pipeline.data.counterfactual import (
    TestSample,
    build_counterfactuals,
    neutral_colour,
    partners,
)

SIZE = 48
BACKDROP = {0: (200, 30, 30), 1: (30, 30, 200)}
PERSON = np.array([20, 220, 20])


def _sample(label: int, shift: int, identity: str) -> TestSample:
    rng = np.random.default_rng(label * 10 + shift)
    image = np.empty((SIZE, SIZE, 3), np.uint8)
    image[:] = BACKDROP[label]
    image = np.clip(image.astype(int) + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    mask = (((yy - 24) ** 2 + (xx - 20 - shift) ** 2) <= 10**2).astype(np.uint8) * 255
    image[mask > 0] = PERSON
    return TestSample(image, mask, background_plate(image, mask), label, identity)


@pytest.fixture(scope="module")
def samples():
    return [_sample(0, 0, "a"), _sample(0, 3, "b"), _sample(0, 6, "c"), _sample(1, 0, "d"),
            _sample(1, 4, "e"), _sample(1, 5, "f")]


@pytest.fixture(scope="module")
def built(samples):
    return build_counterfactuals(samples, np.array([90, 100, 110], np.uint8), seed=7)


def test_face_only_is_the_person_on_one_neutral_plate(samples, built):
    for sample, out in zip(samples, built.sets["face_only"], strict=True):
        np.testing.assert_array_equal(out[sample.mask == 0], np.tile([90, 100, 110], (
            int((sample.mask == 0).sum()), 1)))
        np.testing.assert_array_equal(out[sample.mask == 255], sample.image[sample.mask == 255])


def test_background_only_has_no_person(samples, built):
    for sample, plate in zip(samples, built.sets["background_only"], strict=True):
        hole = plate[sample.mask == 255].astype(int)
        assert np.abs(hole - PERSON).sum(axis=1).min() > 150  # no pixel is person-green
        assert np.abs(hole.mean(axis=0) - BACKDROP[sample.label]).max() < 40


@pytest.mark.parametrize("name, same", [("mixed_same", True), ("mixed_other", False)])
def test_mixed_sets_take_another_identitys_plate(samples, built, name, same):
    chosen = built.same_partner if same else built.other_partner
    for i, (sample, out) in enumerate(zip(samples, built.sets[name], strict=True)):
        partner = samples[chosen[i]]
        assert partner.identity != sample.identity
        assert (partner.label == sample.label) is same
        np.testing.assert_array_equal(out[sample.mask == 255], sample.image[sample.mask == 255])
        np.testing.assert_array_equal(out[sample.mask == 0], partner.plate[sample.mask == 0])
        expected = BACKDROP[sample.label if same else 1 - sample.label]
        assert np.abs(out[sample.mask == 0].astype(int).mean(axis=0) - expected).max() < 40


def test_partners_are_seeded_cross_identity_and_fail_clearly():
    labels, who = [0, 0, 0, 1, 1, 1, 1], list("abcdefg")
    first, again = partners(labels, who, False, seed=3), partners(labels, who, False, seed=3)
    np.testing.assert_array_equal(first, again)
    assert all(labels[j] != labels[i] for i, j in enumerate(first))
    draws = {tuple(partners(labels, who, True, seed=s)) for s in range(6)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="another identity"):
        partners([1, 1, 0], ["x", "y", "z"], True)  # the lone class-0 image has no same-class peer
    with pytest.raises(ValueError, match="another class"):
        partners([1, 1], ["x", "y"], False)


def test_neutral_colour_is_the_mean_background_pixel():
    image = np.zeros((4, 4, 3), np.uint8)
    image[:, :2] = (10, 20, 30)
    image[:, 2:] = (250, 250, 250)
    mask = np.zeros((4, 4), np.uint8)
    mask[:, 2:] = 255  # the white half is the person
    np.testing.assert_array_equal(neutral_colour([image], [mask]), [10, 20, 30])
