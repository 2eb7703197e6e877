"""Background variants' segmentation: rembg with the IS-Net fixture, and the GrabCut fallback."""

import numpy as np
import pytest
from conftest import require_shared
from PIL import Image

from beauty_pipeline.data.backgrounds import background_plate, mask_fraction, on_white
from beauty_pipeline.vision.segmentation import (
    GrabCutSegmenter,
    RembgSegmenter,
    SegmenterSettings,
    SegmenterUnavailable,
    make_segmenter,
)

FACES = ("fairface_0001.jpg", "fairface_0002.jpg", "fairface_0003.jpg")


def wide_faces():
    root = require_shared("data", "fairface_margin125")
    return [np.asarray(Image.open(root / name).convert("RGB").resize((224, 224))) for name in FACES]


# A face crop with padding 1.25 is roughly centred: box of the middle third.
CENTRE_BOX = np.array([75.0, 70.0, 150.0, 160.0])


def test_rembg_with_isnet_fixture_finds_the_person(monkeypatch, tmp_path):
    model = require_shared("models", "isnet_small.onnx")
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    segmenter = RembgSegmenter(model_path=str(model))
    assert segmenter.detail == "dis_custom:isnet_small.onnx"
    for image in wide_faces()[:2]:
        mask = segmenter.mask(image)
        assert mask.shape == image.shape[:2]
        assert 0.05 < mask_fraction(mask) < 0.9
        # the face centre is mostly foreground, the top corners background
        assert mask[90:140, 90:140].mean() > 2 * mask[:30, :30].mean() + 40


def test_grabcut_fallback_seeded_by_face_box():
    segmenter = GrabCutSegmenter()
    for image in wide_faces():
        mask = segmenter.mask(image, face_box=CENTRE_BOX)
        assert 0.1 < mask_fraction(mask) < 0.9
        assert mask[115, 112] == 255
        white = on_white(image, mask)
        assert (white[mask == 0] == 255).all()
        plate = background_plate(image, mask)
        assert plate.shape == image.shape


def test_auto_without_rembg_weights_falls_back_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    assert isinstance(make_segmenter(SegmenterSettings("auto")), GrabCutSegmenter)


def test_explicit_rembg_with_missing_file_is_clear():
    with pytest.raises(SegmenterUnavailable, match="not found"):
        RembgSegmenter(model_path="/nonexistent/isnet.onnx")
