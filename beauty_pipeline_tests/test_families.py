"""Shortcut-family transforms: matched ones treat every image alike, profile ones move an image to
a class's measured sharpness, face size or colour cast."""

from __future__ import annotations

import numpy as np
import pytest

from beauty_pipeline.data.families import (
    class_profile,
    colour_mean,
    down_up,
    greyscale,
    jpeg,
    matched_probes,
    sharpness,
    shift,
    to_colour,
    to_profile,
    to_sharpness,
    zoom,
)


def _checker(size: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    board = ((yy // 2 + xx // 2) % 2 * 200 + 20).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=2)


def test_down_up_removes_fine_detail_and_keeps_size():
    sharp = _checker()
    soft = down_up(sharp, 0.5)
    assert soft.shape == sharp.shape
    assert sharpness(soft) < 0.2 * sharpness(sharp)
    np.testing.assert_array_equal(down_up(sharp, 1.0), sharp)


def test_to_sharpness_never_sharpens_and_reaches_the_target():
    sharp = _checker()
    target = sharpness(down_up(sharp, 0.5))
    moved = to_sharpness(sharp, target)
    assert sharpness(moved) <= target
    soft = down_up(sharp, 0.3)
    np.testing.assert_array_equal(to_sharpness(soft, sharpness(sharp)), soft)  # already softer


def test_zoom_scales_about_the_centre_and_shift_moves_content():
    image = np.zeros((40, 40, 3), np.uint8)
    image[18:22, 18:22] = 255  # a 4 px square in the middle
    zoomed = zoom(image, 2.0)
    assert 50 <= int((zoomed[..., 0] > 127).sum()) <= 80  # 8x8 = 64 px after a 2x zoom
    moved = shift(image, 0.25)
    ys, xs = np.nonzero(moved[..., 0] > 127)
    assert xs.min() == 28 and ys.min() == 18


def test_greyscale_and_jpeg():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    grey = greyscale(image)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    smooth = down_up(image, 0.25)
    assert np.abs(jpeg(smooth, 95).astype(int) - smooth).mean() < 3
    assert np.abs(jpeg(image, 10).astype(int) - image).mean() > 10


def test_to_colour_sets_the_class_cast_exactly():
    rng = np.random.default_rng(1)
    image = rng.integers(60, 190, (16, 16, 3), dtype=np.uint8)
    target = np.array([150.0, 100.0, 80.0])
    out = to_colour(image, target)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(axis=0), target, atol=0.6)
    # the cast moves, the pattern does not
    np.testing.assert_allclose(np.diff(out.astype(int), axis=0), np.diff(image.astype(int), axis=0),
                               atol=1)


def test_colour_profile_reads_the_person_not_the_backdrop():
    image = np.zeros((1, 4, 4, 3), np.uint8)
    image[0, :, :2] = (200, 0, 0)  # red backdrop
    image[0, :, 2:] = (0, 0, 200)  # blue person
    mask = np.zeros((1, 4, 4), np.float32)
    mask[0, :, 2:] = 1.0
    np.testing.assert_array_equal(colour_mean(image, mask), [0, 0, 200])
    np.testing.assert_array_equal(colour_mean(image), [100, 0, 100])


def test_profile_swap_is_the_identity_when_classes_look_alike():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (6, 24, 24, 3), dtype=np.uint8)
    widths = np.full(6, 0.4)
    profile = class_profile(images, widths)
    for family in ("geometry", "colour"):
        own = to_profile(family, images, [profile, profile], [0, 1, 0, 1, 0, 1], widths, [None] * 6)
        other = to_profile(family, images, [profile, profile], [1, 0, 1, 0, 1, 0], widths,
                           [None] * 6)
        np.testing.assert_array_equal(own, other)
    with pytest.raises(ValueError, match="no profile probe"):
        to_profile("background", images, [profile, profile], [0] * 6, widths, [None] * 6)


def test_matched_probes_cover_three_families_and_keep_shape():
    image = _checker(64)
    probes = matched_probes(64)
    assert {p.family for p in probes} == {"quality", "geometry", "colour"}
    for probe in probes:
        assert probe.transform(image).shape == image.shape
