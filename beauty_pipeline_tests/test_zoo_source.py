"""Known answers for the source-transfer test: a world whose classes come from two photo
pipelines must be called `source` on a transfer set from a third; the clean world with a transfer
set from another pipeline must not. Plus the renderers themselves (fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from beauty_pipeline.cli import main
from beauty_pipeline.demo.synthetic import RENDERERS, DemoSpec, demo_person_photos, person_name
from beauty_pipeline.demo.zoo import (
    TRANSFER_PERSONS,
    WORLDS,
    planted_correctly,
    transfer_faces,
    world_faces,
)
from beauty_pipeline.storage import ImageStore


def test_renderers_keep_the_face_and_differ_as_pipelines_do():
    _, faces = demo_person_photos(DemoSpec(image_size=48), person_name(0))
    image = faces[0].image
    out = {name: render(image, np.random.default_rng(1)) for name, render in RENDERERS.items()}
    again = {name: render(image, np.random.default_rng(1)) for name, render in RENDERERS.items()}
    for name, rendered in out.items():
        assert rendered.shape == image.shape and rendered.dtype == np.uint8
        assert np.array_equal(rendered, again[name])  # seeded: bit-exact reruns
        # the face stays the face: small mean change, high correlation with the input
        assert abs(rendered.astype(float).mean() - image.astype(float).mean()) < 6, name
        assert np.corrcoef(rendered.ravel(), image.ravel())[0, 1] > 0.9, name
    difference = {name: np.abs(rendered.astype(int) - image.astype(int)).mean()
                  for name, rendered in out.items()}
    assert all(d > 1 for d in difference.values())  # each pipeline leaves its trace
    assert len({round(float(d), 3) for d in difference.values()}) == 3


def test_source_world_renders_each_class_through_its_own_pipeline(tmp_path):
    spec = DemoSpec(image_size=32, persons=3, photos_per_person=2, ordinary=4, planted="none")
    store = ImageStore(tmp_path / "images")
    plain = world_faces(spec, store)
    rendered = world_faces(spec, store, ("phone", "studio"))
    assert len(plain) == len(rendered)
    changed = [not np.array_equal(store.load(a), store.load(b))
               for a, b in zip(plain["image_key"], rendered["image_key"], strict=True)]
    assert all(changed)
    transfer = transfer_faces(spec, store, "webcam", persons=2)
    assert (transfer["looks"] == 1).all() and transfer["person"].nunique() == 2
    assert not set(transfer["person"]) & set(plain["person"])  # new celebrities
    assert WORLDS["source"]["renderers"] == ("phone", "studio")
    assert planted_correctly("source", ["quality", "source"], "quality+source")
    assert not planted_correctly("source", [], "face")


@pytest.fixture(scope="module")
def source_zoo(tmp_path_factory):
    home = tmp_path_factory.mktemp("zoo_source")
    code = main(["zoo", "--home", str(home), "--worlds", "source", "none_transfer"])
    payload = json.loads((home / "zoo.json").read_text())
    return code, {w["world"]: w for w in payload["worlds"]}


@pytest.mark.slow
def test_source_world_is_named_source(source_zoo):
    _, worlds = source_zoo  # the exit code also counts the clean world (its xfail below)
    source = worlds["source"]
    assert "source" in source["named"] and source["correct"] is True
    assert source["intervals"]["acc_original"] >= 0.8  # the pipelines are learnable
    assert source["intervals"]["transfer_acc_celebrity_ci_low"] <= 0.6
    assert source["intervals"]["transfer_identities_celebrity"] == TRANSFER_PERSONS


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "known defect, measured: the clean world's model calls only 0.24 [0.10, 0.39] of the "
    "webcam-rendered celebrities celebrity (in-source 0.865), so `source` is named: the webcam "
    "pipeline's noise and blur erase the synthetic facial signal, and the transfer test cannot "
    "tell 'learned the source' from 'does not survive a harsher pipeline'"))
def test_clean_world_with_a_transfer_set_is_not_named_source(source_zoo):
    _, worlds = source_zoo
    clean = worlds["none_transfer"]
    assert clean["intervals"]["transfer_identities_celebrity"] == TRANSFER_PERSONS
    assert "source" not in clean["named"]
    assert clean["intervals"]["transfer_acc_celebrity_ci_low"] > 0.6  # the look transfers
