"""Shortcut-family transforms: matched ones treat every image alike, profile ones move an image to
a class's measured sharpness, face size, colour cast, compression, face position, frame or noise,
and the own-class move (the control) is the same operation as the other-class move (the probe)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from beauty_pipeline.data.families import (
    PROFILE_FAMILIES,
    blockiness,
    chroma_detail,
    class_colour_gap,
    class_profile,
    colour_mean,
    colour_shift,
    down_up,
    frame_width,
    greyscale,
    jpeg,
    matched_probes,
    noise_sigma,
    sharpness,
    shift,
    to_border,
    to_compression,
    to_face_width,
    to_noise,
    to_position,
    to_profile,
    to_sharpness,
    zoom,
)


def _checker(size: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    board = ((yy // 2 + xx // 2) % 2 * 200 + 20).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=2)


def test_down_up_removes_fine_detail_and_keeps_size():
    sharp = _scene()
    soft = down_up(sharp, 0.5)
    assert soft.shape == sharp.shape
    assert sharpness(soft) < 0.2 * sharpness(sharp)
    np.testing.assert_array_equal(down_up(sharp, 1.0), sharp)


def test_to_sharpness_moves_both_ways_to_the_target():
    sharp = _scene()
    target = sharpness(down_up(sharp, 0.5))
    moved = to_sharpness(sharp, target, band=1.0)
    assert sharpness(moved) <= target
    assert sharpness(to_sharpness(sharp, target)) <= 2 * target  # into the band's upper edge
    soft = down_up(_scene(), 0.7)
    goal = 1.5 * sharpness(soft)
    sharpened = to_sharpness(soft, goal, band=1.0)
    assert sharpness(sharpened) >= goal > sharpness(soft)  # a softer image is sharpened
    np.testing.assert_array_equal(to_sharpness(soft, sharpness(soft) * 1.9), soft)  # in the band


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


def _scene(size: int = 48, seed: int = 3) -> np.ndarray:
    """A smooth picture with a few edges: blobs on a gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    image = np.stack([60 + 2 * xx, 80 + yy, 200 - 2 * yy], axis=2)
    for _ in range(6):
        cx, cy, r = rng.uniform(8, size - 8, 2).tolist() + [rng.uniform(3, 8)]
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2] = rng.uniform(0, 255, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_compression_profile_reads_blocking_and_chroma_and_recodes_to_a_target():
    clean = _scene()
    coded = jpeg(clean, 20, subsampled=True)
    assert blockiness(coded) > blockiness(clean) + 0.1
    assert chroma_detail(coded) < chroma_detail(jpeg(clean, 95, subsampled=False))
    moved = to_compression(clean, blockiness(coded), True)
    assert blockiness(moved) >= blockiness(coded)
    assert np.abs(to_compression(clean, 0.0, False).astype(int) - clean).mean() < 2  # q95 4:4:4


def test_noise_estimate_and_move_both_ways():
    clean = _scene()
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 12, clean.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    assert noise_sigma(noisy) > noise_sigma(clean) + 5
    assert noise_sigma(to_noise(clean, noise_sigma(noisy), seed=1)) > noise_sigma(clean) + 5
    assert noise_sigma(to_noise(noisy, noise_sigma(clean) + 1, seed=1)) <= noise_sigma(clean) + 3
    np.testing.assert_array_equal(to_noise(clean, noise_sigma(clean) + 1.9, seed=1), clean)
    np.testing.assert_array_equal(to_noise(clean, 5.0, 7), to_noise(clean, 5.0, 7))  # seeded


def test_border_detected_replaced_and_kept_when_already_at_profile():
    scene = _scene()
    framed = to_border(scene, 4 / 48, (20, 20, 20))
    assert frame_width(framed) == 4 and frame_width(scene) == 0
    np.testing.assert_array_equal(framed[:4], 20)
    np.testing.assert_array_equal(to_border(framed, 4 / 48, (20, 20, 20)), framed)  # identity
    unframed = to_border(framed, 0.0, (0, 0, 0))
    assert frame_width(unframed) == 0 and unframed.shape == scene.shape


def test_position_moves_the_face_centre_and_geometry_keeps_a_frame():
    rng = np.random.default_rng(4)
    image = rng.integers(60, 120, (40, 40, 3)).astype(np.uint8)  # a noisy backdrop, no frame
    image[10:14, 10:14] = 255  # the "face" at (12, 12)
    moved = to_position(image, (12.0, 12.0), (0.5, 0.5))
    ys, xs = np.nonzero(moved[..., 0] > 200)
    assert abs(xs.mean() + 0.5 - 20) <= 0.6 and abs(ys.mean() + 0.5 - 20) <= 0.6
    np.testing.assert_array_equal(to_position(image, (12.0, 12.0), (0.3, 0.3)), image)
    framed = to_border(_scene(), 0.1, (10, 10, 10))
    zoomed = to_face_width(framed, 0.3, 0.4, (24.0, 24.0))
    assert frame_width(zoomed) == frame_width(framed)  # the frame is not zoomed into the picture


def test_spatial_moves_do_not_blur_position_copies_whole_pixels_geometry_uses_lanczos():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 255, (40, 40, 3)).astype(np.uint8)  # detail down to the pixel
    moved = to_position(image, (12.3, 11.6), (0.5, 0.5))  # (+7.7, +8.4) rounds to (+8, +8)
    np.testing.assert_array_equal(moved[8:, 8:], image[:-8, :-8])  # a copy: nothing resampled
    scene, centre = _scene(), (24.0, 24.0)
    lanczos = sharpness(to_face_width(scene, 0.30, 0.31, centre))
    assert lanczos > 1.15 * sharpness(zoom(scene, 0.31 / 0.30, centre))  # bilinear loses more


def test_own_profile_swap_of_an_image_at_its_class_profile_is_the_identity():
    scene = _scene()
    framed = to_border(scene, 4 / 48, (20, 20, 20))
    profile = class_profile(framed[None], [0.3], None, [(24.0, 24.0)])
    assert profile.border == 4 / 48 and profile.face_centre == (0.5, 0.5)
    for family in ("border", "position", "geometry", "quality", "noise"):
        own = to_profile(family, framed[None], [profile, profile], [0], [0.3], [(24.0, 24.0)])
        np.testing.assert_array_equal(own[0], framed, err_msg=family)


def test_colour_shift_moves_the_cast_and_keeps_the_pattern():
    rng = np.random.default_rng(1)
    image = rng.integers(60, 190, (16, 16, 3), dtype=np.uint8)
    shift = np.array([20.0, -10.0, 5.0])
    out = colour_shift(image, shift)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(axis=0) - image.reshape(-1, 3).mean(axis=0),
                               shift, atol=1e-9)
    np.testing.assert_array_equal(np.diff(out.astype(int), axis=0),
                                  np.diff(image.astype(int), axis=0))


def test_colour_profile_reads_the_person_not_the_backdrop():
    image = np.zeros((1, 4, 4, 3), np.uint8)
    image[0, :, :2] = (200, 0, 0)  # red backdrop
    image[0, :, 2:] = (0, 0, 200)  # blue person
    mask = np.zeros((1, 4, 4), np.float32)
    mask[0, :, 2:] = 1.0
    np.testing.assert_array_equal(colour_mean(image, mask), [0, 0, 200])
    np.testing.assert_array_equal(colour_mean(image), [100, 0, 100])


def test_colour_move_crosses_the_class_gap_and_its_control_goes_as_far_the_other_way():
    """Other-class photos get the target's cast relative to their own class; own-class photos move
    the same distance further into their class, whatever the person's own colour."""
    rng = np.random.default_rng(3)
    images = rng.integers(80, 170, (4, 12, 12, 3), dtype=np.uint8)
    warm = class_profile(images[:2], np.full(2, 0.4))
    cool = class_profile(images[2:], np.full(2, 0.4))
    profiles = [replace(warm, colour=np.array([120.0, 100.0, 90.0])),
                replace(cool, colour=np.array([100.0, 100.0, 110.0]))]
    labels = np.array([0, 0, 1, 1])
    widths, centres = [0.4] * 4, [None] * 4
    own = to_profile("colour", images, profiles, labels, widths, centres)
    other = to_profile("colour", images, profiles, 1 - labels, widths, centres)
    gap = np.array([20.0, 0.0, -20.0])  # class 0 minus class 1
    for i, label in enumerate(labels):
        sign = 1 if label == 0 else -1
        moved_own = own[i].astype(float).mean(axis=(0, 1)) - images[i].astype(float).mean(axis=(0, 1))
        moved_other = other[i].astype(float).mean(axis=(0, 1)) - images[i].astype(float).mean(
            axis=(0, 1))
        np.testing.assert_allclose(moved_own, sign * gap, atol=1e-9)
        np.testing.assert_allclose(moved_other, -sign * gap, atol=1e-9)
    assert np.array_equal(class_colour_gap(profiles, 0), gap)


def test_profile_swap_is_the_identity_when_classes_look_alike():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (6, 24, 24, 3), dtype=np.uint8)
    widths = np.full(6, 0.4)
    profile = class_profile(images, widths)
    for family in PROFILE_FAMILIES:
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


def _frame_width_whole_image(image, tolerance=3.0):
    """The whole-image reading frame_width replaced (kept here as the reference)."""
    pixels = np.asarray(image, np.float32)
    flat = np.abs(pixels - pixels[0, 0]).max(axis=2) <= tolerance
    limit = pixels.shape[0] // 3
    runs = []
    for line in (flat, flat[::-1], flat.T, flat.T[::-1]):
        full = line.all(axis=1)[:limit]
        runs.append(int(np.argmin(full)) if not full.all() else limit)
    return min(runs)


def test_frame_width_line_by_line_reads_what_the_whole_image_reading_did():
    from beauty_pipeline.data.families import frame_width

    rng = np.random.default_rng(0)
    framed = 0
    for n in range(300):
        side = int(rng.integers(9, 120))
        image = rng.integers(0, 255, (side, side, 3)).astype(np.uint8)
        if n % 2:  # a frame of its own width on each side, sometimes with noise within tolerance
            top, bottom, left, right = (int(rng.integers(0, side // 2)) for _ in range(4))
            colour = rng.integers(0, 255, 3)
            image[:top], image[side - bottom:] = colour, colour
            image[:, :left], image[:, side - right:] = colour, colour
            if n % 4 == 1:
                image = np.clip(image.astype(int) + rng.integers(-3, 4, image.shape), 0,
                                255).astype(np.uint8)
        if n % 7 == 0:
            image[:] = 90  # flat all over: the limit
        framed += _frame_width_whole_image(image) > 0
        assert frame_width(image) == _frame_width_whole_image(image), n
    assert framed > 50
