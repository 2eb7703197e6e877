"""FaceMass on constructed heatmaps whose answers are known, and face regions from manifest rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from beauty_pipeline.explain.facemass import (
    area_ratio,
    as_metrics,
    ellipse_mask,
    face_mass,
    face_region_mask,
    face_regions,
    source_counts,
    summarise,
)

SHAPE = (40, 60)


def _box_mask() -> np.ndarray:
    mask = np.zeros(SHAPE, np.float32)
    mask[10:30, 20:35] = 1.0
    return mask


def test_all_mass_inside_is_one():
    mask = _box_mask()
    heat = np.zeros(SHAPE, np.float32)
    heat[12:20, 22:30] = np.linspace(0.1, 3.0, 64).reshape(8, 8)
    assert face_mass(heat[None], mask[None])[0] == pytest.approx(1.0)


def test_all_mass_outside_is_zero_and_negative_values_ignored():
    mask = _box_mask()
    heat = np.zeros(SHAPE, np.float32)
    heat[0:5, 0:5] = 2.0
    heat[15, 25] = -100.0  # below ReLU: must not count as (negative) face mass
    assert face_mass(heat[None], mask[None])[0] == pytest.approx(0.0)


def test_uniform_heatmap_gives_area_ratio():
    mask = _box_mask()
    expected = 20 * 15 / (40 * 60)
    masses = face_mass(np.full((1, *SHAPE), 0.7), mask[None])
    assert masses[0] == pytest.approx(expected)
    assert area_ratio(mask[None])[0] == pytest.approx(expected)


def test_known_split_and_soft_mask():
    mask = np.zeros(SHAPE, np.float32)
    mask[:, :30] = 0.5  # a soft mask: half-weight on the left half
    heat = np.zeros(SHAPE, np.float32)
    heat[:, :30] = 3.0
    heat[:, 30:] = 1.0
    # inside = 0.5 * 3 * 1200, total = 3 * 1200 + 1 * 1200
    assert face_mass(heat[None], mask[None])[0] == pytest.approx(0.375)


def test_zero_heatmap_is_nan_and_counted():
    mask = np.stack([_box_mask()] * 3)
    heat = np.zeros((3, *SHAPE), np.float32)
    heat[0] = 1.0
    heat[1, 15, 25] = 5.0
    masses = face_mass(heat, mask)
    assert math.isnan(masses[2]) and masses[1] == pytest.approx(1.0)
    summary = summarise(masses, area_ratio(mask), labels=np.array([1, 1, 0]))
    assert summary["celebrity"].n == 2 and summary["celebrity"].n_zero_heatmap == 0
    assert summary["ordinary"].n_zero_heatmap == 1 and math.isnan(summary["ordinary"].face_mass)
    celeb = summary["celebrity"]
    assert celeb.face_mass == pytest.approx((masses[0] + 1.0) / 2)
    assert celeb.lift == pytest.approx(celeb.face_mass / celeb.area_ratio)
    assert summary["all"].n == 3 and summary["all"].n_zero_heatmap == 1
    metrics = as_metrics(summary)
    assert metrics["face_mass_celebrity"] == celeb.face_mass
    assert metrics["zero_heatmaps_ordinary"] == 1.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        face_mass(np.ones((1, 4, 4)), np.ones((1, 5, 5)))


def test_ellipse_area_close_to_pi_over_four():
    mask = ellipse_mask((200, 200), (0, 0, 200, 200))
    assert mask.mean() == pytest.approx(math.pi / 4, abs=0.01)
    assert mask[100, 100] == 1 and mask[0, 0] == 0


def test_region_from_known_mask_is_preferred_and_resized():
    stored = np.zeros((80, 120), np.uint8)
    stored[20:60, 40:70] = 255
    row = pd.Series({"face_mask_key": "k1", "face_x0": 0.0, "face_y0": 0.0, "face_x1": 10.0,
                     "face_y1": 10.0})
    region, source = face_region_mask(row, SHAPE, load_mask={"k1": stored}.__getitem__)
    assert source == "known_mask"
    assert region.shape == SHAPE and region.max() == pytest.approx(1.0)
    assert region.mean() == pytest.approx(stored.mean() / 255, abs=0.02)
    with pytest.raises(ValueError):
        face_region_mask(row, SHAPE)


def test_region_from_detection_box_scales_to_model_input():
    row = {"face_mask_key": "", "face_x0": 100.0, "face_y0": 50.0, "face_x1": 200.0,
           "face_y1": 250.0}
    region, source = face_region_mask(row, (150, 150), image_shape=(300, 300))
    assert source == "detection"
    expected = ellipse_mask((150, 150), (50, 25, 100, 125))
    np.testing.assert_array_equal(region, expected)
    assert region[75, 75] == 1 and region[75, 40] == 0


def test_region_prior_for_aligned_crops_without_box():
    row = {"face_mask_key": float("nan"), "face_x0": float("nan"), "face_y0": float("nan"),
           "face_x1": float("nan"), "face_y1": float("nan")}
    region, source = face_region_mask(row, (90, 90))
    assert source == "aligned_prior"
    assert region[45, 45] == 1 and region[5, 5] == 0
    assert region.mean() == pytest.approx(math.pi / 4 * (2 / 3) ** 2, abs=0.02)


def test_regions_for_a_manifest_record_their_sources():
    frame = pd.DataFrame({"face_mask_key": ["", "", "m"], "face_x0": [2.0, float("nan"), 0.0],
                          "face_y0": [2.0, float("nan"), 0.0], "face_x1": [20.0, float("nan"), 5.0],
                          "face_y1": [30.0, float("nan"), 5.0]})
    masks, sources = face_regions(frame.to_dict("records"), (32, 32),
                                  load_mask=lambda key: np.full((32, 32), 255, np.uint8))
    assert masks.shape == (3, 32, 32)
    assert sources == ["detection", "aligned_prior", "known_mask"]
    assert source_counts(sources) == {"known_mask": 1, "detection": 1, "aligned_prior": 1}
    assert masks[2].min() == 1.0
