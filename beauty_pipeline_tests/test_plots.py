"""Audit figures are deterministic and thumbnails respect their byte cap."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from beauty_pipeline.explain.plots import (
    class_averages,
    figure_name,
    overlay,
    plot_accuracy_curves,
    plot_class_averages,
    plot_overlays,
    thumbnail_png,
)

EPOCHS = [{"epoch": e, "train_accuracy": 0.5 + e / 10, "test_accuracy": 0.5 + e / 20,
           "train_loss": 1 / e, "test_loss": 1.2 / e} for e in range(1, 4)]


def _heatmaps(n=4, size=32):
    rng = np.random.default_rng(0)
    return rng.random((n, size, size)).astype(np.float32), np.array([0, 1, 0, 1])


def test_figures_have_deterministic_names_and_bytes(tmp_path):
    heat, labels = _heatmaps()
    name = figure_name("resnet18", "random", "class_average")
    assert name == "resnet18__random__class_average.png"
    assert figure_name("a b/c", "..", "x") == "a-b-c__..__x.png"
    first = plot_class_averages(heat, labels, tmp_path / name, title="t").read_bytes()
    second = plot_class_averages(heat, labels, tmp_path / name, title="t").read_bytes()
    assert first == second and first[:8] == b"\x89PNG\r\n\x1a\n"
    images = (np.random.default_rng(1).random((4, 32, 32, 3)) * 255).astype(np.uint8)
    grid = plot_overlays(images, heat, tmp_path / "o.png", labels=labels, predictions=labels)
    curves = plot_accuracy_curves(EPOCHS, tmp_path / "c.png")
    assert Image.open(grid).size[0] > 0 and Image.open(curves).size[0] > 0


def test_class_averages_normalise_each_image():
    heat = np.zeros((2, 4, 4), np.float32)
    heat[0, 0, 0] = 1000.0  # a loud image must not drown a quiet one
    heat[1, 3, 3] = 0.001
    averages = class_averages(heat, [1, 1])
    assert set(averages) == {"celebrity"}
    assert averages["celebrity"][0, 0] == pytest.approx(0.5)
    assert averages["celebrity"][3, 3] == pytest.approx(0.5)


def test_overlay_keeps_shape_and_zero_heatmap():
    image = np.full((8, 8, 3), 100, np.uint8)
    out = overlay(image, np.zeros((8, 8)))
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8


def test_thumbnail_is_capped_in_size_and_bytes():
    noisy = (np.random.default_rng(0).random((600, 900, 3)) * 255).astype(np.uint8)
    data = thumbnail_png(noisy, max_side=320, max_bytes=40_000)
    assert len(data) <= 40_000
    width, height = Image.open(io.BytesIO(data)).size
    assert max(width, height) <= 320 and width > height
    heat = thumbnail_png(np.random.default_rng(1).random((50, 50)), max_side=64)
    assert Image.open(io.BytesIO(heat)).mode == "RGB"
