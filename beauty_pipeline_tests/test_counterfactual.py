"""Counterfactual sets with controls on synthetic arrays: a green person on red (class 0) or blue
(class 1) backdrops; each sample carries its original plate."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from beauty_pipeline.data.backgrounds import background_plate
from beauty_pipeline.data.counterfactual import (
    COUNTERFACTUALS,
    TestSample,
    aligned,
    build_counterfactuals,
    control_blobs,
    face_region,
    feature_blobs,
    inner_face_blobs,
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


def test_person_only_is_the_whole_cut_out_on_one_neutral_plate(samples, built):
    for sample, out in zip(samples, built.sets["person_only"], strict=True):
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


def _portrait(label: int = 1, seed: int = 0) -> TestSample:
    """A head (face box 16..32 x 8..28) with dark eyes and mouth on a torso, on a noisy backdrop."""
    rng = np.random.default_rng(seed)
    image = rng.integers(100, 140, (SIZE, SIZE, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE] + 0.5
    head = ((xx - 24) / 8) ** 2 + ((yy - 18) / 10) ** 2 <= 1
    torso = (yy > 30) & (np.abs(xx - 24) < 18)
    mask = ((head | torso) * 255).astype(np.uint8)
    image[head] = (220, 180, 150)
    image[torso] = (40, 90, 160)
    for x, y in ((20.6, 16.4), (27.4, 16.4)):  # eyes
        image[((xx - x) ** 2 + (yy - y) ** 2) <= 2] = (20, 20, 60)
    image[(np.abs(yy - 23) < 1) & (np.abs(xx - 24) < 3)] = (150, 30, 40)  # mouth
    return TestSample(image, mask, background_plate(image, mask), label, f"p{seed}",
                      face_box=(16.0, 8.0, 32.0, 28.0))


def test_every_set_is_built():
    built = build_counterfactuals([_portrait(0, 0), _portrait(0, 1), _portrait(1, 2),
                                   _portrait(1, 3)], np.array([90, 100, 110], np.uint8))
    assert set(built.sets) == set(COUNTERFACTUALS)


def test_face_only_is_the_face_alone_no_hair_neck_or_clothes():
    sample = _portrait()
    built = build_counterfactuals([sample, _portrait(1, 1), _portrait(0, 2), _portrait(0, 3)],
                                  np.array([90, 100, 110], np.uint8))
    out = built.sets["face_only"][0]
    face = face_region(sample) >= 0.5
    np.testing.assert_array_equal(out[face], sample.image[face])
    torso = (sample.mask == 255) & ~face
    np.testing.assert_array_equal(out[torso], np.tile([90, 100, 110], (int(torso.sum()), 1)))
    person = built.sets["person_only"][0]
    np.testing.assert_array_equal(person[torso], sample.image[torso])


def test_feature_removal_touches_only_the_features_and_the_control_the_same_area_elsewhere():
    samples = [_portrait(1, 0), _portrait(1, 1), _portrait(0, 2), _portrait(0, 3)]
    built = build_counterfactuals(samples, np.array([90, 100, 110], np.uint8))
    for i, sample in enumerate(samples):
        blobs = feature_blobs(sample)
        features = np.any(blobs, axis=0)
        control = np.any(control_blobs(sample, blobs), axis=0)
        removed, kept = built.sets["face_features_removed"][i], built.sets["face_features_control"][i]
        np.testing.assert_array_equal(removed[~features], sample.image[~features])
        np.testing.assert_array_equal(kept[~control], sample.image[~control])
        dark = np.all(sample.image < (60, 60, 70), axis=2) | \
            np.all(sample.image == (150, 30, 40), axis=2)
        assert dark.sum() >= 10 and (dark & features).sum() == dark.sum()  # eyes, mouth inside
        assert not (removed[features] < 70).all(axis=1).any()  # filled from the skin around them
        assert built.feature_area[i] == built.control_area[i] == features.sum() == control.sum()
        assert not (control & (face_region(sample) >= 0.5)).any()  # never on the face
        assert (sample.mask[control] == 255).all()  # always on the person
        assert samples[built.other_partner[i]].label != sample.label  # from the other class


def _scaled(sample: TestSample, k: int) -> TestSample:
    """The same portrait k times larger (nearest neighbour), so a pixel is small next to a face."""
    def big(array):
        return cv2.resize(array, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST)

    return TestSample(big(sample.image), big(sample.mask), big(sample.plate), sample.label,
                      sample.identity, tuple(k * v for v in sample.face_box))


def test_the_swap_takes_the_inner_face_from_the_other_class_and_the_control_as_many_pixels():
    samples = [_scaled(_portrait(label, seed), 3) for label, seed in ((1, 0), (1, 1), (0, 2),
                                                                     (0, 3))]
    built = build_counterfactuals(samples, np.array([90, 100, 110], np.uint8))
    for i, sample in enumerate(samples):
        inner = np.any(inner_face_blobs(sample), axis=0)
        control = np.any(control_blobs(sample, inner_face_blobs(sample)), axis=0)
        face = face_region(sample) >= 0.5
        features = np.any(feature_blobs(sample), axis=0)
        assert (inner & face).sum() == inner.sum()  # inside the face...
        assert (features & face & ~inner).sum() <= 0.05 * features.sum()  # ...with the features
        assert inner.sum() > 1.5 * features.sum()  # and the cheeks
        rim = face & ~cv2.erode(face.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert not (inner & rim).any()  # clear of the face's outline
        assert not (control & face).any() and (sample.mask[control] == 255).all()
        assert built.areas[i, 2] == built.areas[i, 3] == inner.sum() == control.sum()
        swapped, swap_control = (built.sets[n][i] for n in ("face_swapped", "face_swap_control"))
        source = aligned(samples[built.other_partner[i]], sample)
        np.testing.assert_array_equal(swapped[~inner], sample.image[~inner])
        np.testing.assert_array_equal(swapped[inner], source[inner])
        np.testing.assert_array_equal(swap_control[~control], sample.image[~control])
        np.testing.assert_array_equal(swap_control[control], source[control])


def test_a_photo_frame_stays_with_the_photo_not_with_the_plate():
    from beauty_pipeline.data.families import frame_width, to_border

    def framed(sample: TestSample, width: float) -> TestSample:
        image = to_border(sample.image, width, (20, 20, 20))
        mask = to_border(np.repeat(sample.mask[..., None], 3, 2), width, (0, 0, 0))[..., 0]
        return TestSample(image, mask, background_plate(image, mask), sample.label,
                          sample.identity)

    samples = [framed(_portrait(0, i), 4 / SIZE) for i in range(2)] + \
        [_portrait(1, i) for i in range(2, 4)]
    built = build_counterfactuals(samples, np.array([90, 100, 110], np.uint8), seed=1)
    for i, sample in enumerate(samples):
        own = frame_width(sample.image)
        assert frame_width(built.sets["background_only"][i]) == 0  # no class frame in a plate
        for name in ("mixed_same", "mixed_other"):
            assert frame_width(built.sets[name][i]) == own, (name, i)


def test_a_mixed_image_keeps_its_own_photos_noise_level():
    from beauty_pipeline.data.families import noise_sigma

    def noisy(sample: TestSample, seed: int) -> TestSample:
        rng = np.random.default_rng(seed)
        image = np.clip(sample.image + rng.normal(0, 16, sample.image.shape), 0, 255)
        image = image.astype(np.uint8)
        return TestSample(image, sample.mask, background_plate(image, sample.mask), sample.label,
                          sample.identity, sample.face_box)

    samples = [noisy(_portrait(0, i), i) for i in range(2)] + [_portrait(1, i) for i in range(2, 4)]
    built = build_counterfactuals(samples, np.array([90, 100, 110], np.uint8), seed=1)
    for i, sample in enumerate(samples):
        own = noise_sigma(sample.image)
        for name in ("mixed_same", "mixed_other"):
            assert abs(noise_sigma(built.sets[name][i]) - own) < 4, (name, i, own)


def test_feature_removal_is_telea_at_small_sizes_and_fills_only_the_regions_above():
    """At or below 96 px removal is exactly TELEA (the zoo and demo sizes: their answers cannot
    move); above, the reduced fill touches the regions and nothing else."""
    import cv2

    from beauty_pipeline.data.counterfactual import remove_regions

    rng = np.random.default_rng(0)
    for side in (48, 96, 224):
        image = rng.integers(0, 255, (side, side, 3)).astype(np.uint8)
        region = np.zeros((side, side), bool)
        region[side // 3:side // 2, side // 4:side // 2] = True
        hole = region.astype(np.uint8) * 255
        removed = remove_regions(image, [region])
        assert np.array_equal(removed[~region], image[~region])
        assert not np.array_equal(removed[region], image[region])
        telea = cv2.inpaint(image, hole, max(2, side // 32), cv2.INPAINT_TELEA)
        assert np.array_equal(removed, telea) == (side <= 96)
