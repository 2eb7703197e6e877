"""Sideways and upside-down faces never pass the frontal filter; upright ones do."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_shared
from PIL import Image

from beauty_pipeline.storage import ImageStore
from beauty_pipeline.vision.faces import FaceConfig, process_photos
from beauty_pipeline.vision.orientation import landmarks_upright

FRONTAL = ("image00019.jpg", "image00040.jpg", "image00064.jpg")  # |yaw|, |pitch| < 7 degrees


@pytest.fixture(scope="module")
def turned_report(tmp_path_factory, yunet_model):
    folder = require_shared("data", "headpose_aflw2000_subset")
    store = ImageStore(tmp_path_factory.mktemp("store") / "images")
    photos = []
    for file in FRONTAL:
        image = np.asarray(Image.open(folder / file).convert("RGB"))
        for turns in range(4):
            photos.append((f"{file}@{90 * turns}",
                           store.put_array(np.ascontiguousarray(np.rot90(image, turns)))))
    config = FaceConfig(detector_model_path=str(yunet_model), workers=1)
    _, report = process_photos(photos, store, config, person="p", looks=1)
    return report.set_index("row_id")


def test_upright_frontal_faces_are_kept(turned_report):
    upright = turned_report.loc[[f"{file}@0" for file in FRONTAL]]
    assert (upright["drop_reason"] == "").all(), upright[["drop_reason", "detail"]]


def test_turned_faces_never_pass(turned_report):
    turned = turned_report.drop(index=[f"{file}@0" for file in FRONTAL])
    assert (turned["drop_reason"] != "").all()
    # YuNet still finds most of them, with upright-looking landmarks and a small roll: the
    # orientation check is what drops them, not the pose.
    found = turned[turned["n_faces"] > 0]
    assert len(found) >= 6
    assert (found["drop_reason"].isin(["not_upright", "non_frontal"])).all()
    assert (found["drop_reason"] == "not_upright").sum() >= 5
    assert found.loc[found["drop_reason"] == "not_upright", "detail"].str.contains(
        "detector prefers|roll|order").all()


def test_landmark_order():
    upright = np.array([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]], float)
    assert landmarks_upright(upright)
    assert not landmarks_upright(upright * [1, -1])         # upside down
    assert not landmarks_upright(upright[[1, 0, 2, 4, 3]])  # eyes and mouth swapped left/right
    assert not landmarks_upright(upright[:, ::-1])          # a quarter turn
