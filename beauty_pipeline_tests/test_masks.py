"""Person masks: computed once per image and segmenter, shared by every background variant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import require_shared
from PIL import Image

from beauty_pipeline.data.masks import compute_masks, load_mask, mask_jobs, mask_key
from beauty_pipeline.data.variants import VariantSettings, build_variant
from beauty_pipeline.storage import ImageStore
from beauty_pipeline.vision.segmentation import GrabCutSegmenter

SIZE = 160
BOX = np.array([55.0, 48.0, 105.0, 112.0])  # a padding-1.25 FairFace crop's face, at 160 px


class CountingGrabCut(GrabCutSegmenter):
    """GrabCut that counts its calls (in this process: no `spec`, so never pooled)."""

    def __init__(self):
        super().__init__()
        del self.spec
        self.calls = 0

    def mask(self, image, face_box=None):
        self.calls += 1
        return super().mask(image, face_box)


def wide_faces(count: int) -> list[np.ndarray]:
    root = require_shared("data", "fairface_margin125")
    files = sorted(root.glob("*.jpg"))[:count]
    return [np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE))) for f in files]


@pytest.fixture()
def study(tmp_path) -> tuple[pd.DataFrame, ImageStore]:
    """Eight faces: both classes on both sides of the split, as face_dataset makes them."""
    store = ImageStore(tmp_path / "images")
    keys = [store.put_array(image) for image in wide_faces(8)]
    frame = pd.DataFrame({
        "sample_id": range(8), "image_key": keys, "split": ["train"] * 4 + ["test"] * 4,
        "looks": [0, 1] * 4, "person": [f"p{i}" for i in range(8)],
        "face_x0": BOX[0], "face_y0": BOX[1], "face_x1": BOX[2], "face_y1": BOX[3],
        "person_mask_key": "", "age": "", "gender": "", "race": ""})
    return frame, store


def test_every_variant_reads_one_mask_per_image(study):
    frame, store = study
    segmenter = CountingGrabCut()
    settings = VariantSettings(mask_min=0.01, mask_max=0.99)
    manifests = {b: build_variant(frame, b, store, segmenter, settings).manifest
                 for b in ("original", "white", "random")}
    assert segmenter.calls == len(frame)  # not 3 x 8: white and random reused original's masks
    masks = {b: {r.sample_id: store.load(r.mask_key, "L").tobytes() for r in m.itertuples()}
             for b, m in manifests.items()}
    shared = set(masks["original"]) & set(masks["white"]) & set(masks["random"])
    assert len(shared) >= 4
    assert all(masks["original"][s] == masks["white"][s] == masks["random"][s] for s in shared)


def test_known_masks_are_used_as_they_are(study):
    frame, store = study
    exact = np.zeros((SIZE, SIZE), np.uint8)
    exact[40:, 30:130] = 255
    frame = frame.assign(person_mask_key=[store.put_array(exact)] + [""] * 7)
    segmenter = CountingGrabCut()
    from beauty_pipeline.data.variants import person_masks

    masks, backends = person_masks(frame, store, segmenter, workers=1)
    assert (masks[0] == exact).all() and backends[0] == "known"
    assert segmenter.calls == 7 and backends[1] == "grabcut:opencv-grabcut"


def test_key_names_image_segmenter_settings_and_seeding_box(study):
    frame, _ = study
    grabcut = GrabCutSegmenter()
    (a, b) = [job[0] for job in mask_jobs(frame["image_key"][:2], [BOX, BOX], grabcut)]
    assert a != b
    assert a == mask_key(frame["image_key"][0], grabcut.cache_id, tuple(BOX))
    assert a != mask_jobs(frame["image_key"][:1], [BOX], GrabCutSegmenter(iterations=2))[0][0]
    assert a != mask_jobs(frame["image_key"][:1], [BOX + 5], grabcut)[0][0]  # GrabCut is seeded
    unseeded = type("Boxless", (), {"name": "x", "detail": "y", "uses_face_box": False})()
    assert (mask_jobs(frame["image_key"][:1], [BOX], unseeded)[0][0]
            == mask_jobs(frame["image_key"][:1], [BOX + 5], unseeded)[0][0])


def test_pool_makes_the_same_masks_and_a_rerun_makes_none(study, tmp_path):
    frame, store = study
    grabcut = GrabCutSegmenter()
    jobs = mask_jobs(frame["image_key"], [BOX] * len(frame), grabcut)
    assert compute_masks(jobs, store, grabcut, workers=2) == 8  # in a 2-process pool
    assert compute_masks(jobs, store, grabcut, workers=2) == 0  # all cached
    alone = ImageStore(tmp_path / "alone")
    for key in frame["image_key"]:
        alone.put_bytes(store.path(key).read_bytes())
    assert compute_masks(jobs, alone, grabcut, workers=1) == 8  # in this process
    for key, _, _ in jobs:
        assert (load_mask(store, key) == load_mask(alone, key)).all()


def test_variant_materializations_segment_once(study, tmp_path):
    """Real Dagster runs of face_dataset_variant: original segments, white and random reuse."""
    from dagster import AssetKey, asset, instance_for_test, materialize

    from beauty_pipeline.assets.dataset import face_dataset_variant
    from beauty_pipeline.resources import ManifestIOManager, StudyStorage

    frame, _ = study
    home = tmp_path  # the fixture's store is <home>/images, the data root's image store

    @asset(name="face_dataset")
    def stub_face_dataset() -> pd.DataFrame:
        return frame

    resources = {"io_manager": ManifestIOManager(root=str(home)),
                 "storage": StudyStorage(root=str(home))}
    config = {"ops": {"face_dataset_variant": {"config": {
        "segmenter": "grabcut", "mask_min": 0.01, "mask_max": 0.99}}}}
    with instance_for_test() as instance:
        assert materialize([stub_face_dataset], instance=instance, resources=resources).success
        counts = {}
        for background in ("original", "white", "random"):
            result = materialize([stub_face_dataset, face_dataset_variant], instance=instance,
                                 resources=resources, partition_key=background, run_config=config,
                                 selection=[AssetKey("face_dataset_variant")])
            assert result.success
            event = instance.get_latest_materialization_event(AssetKey("face_dataset_variant"))
            metadata = event.asset_materialization.metadata
            counts[background] = (metadata["person_masks_computed"].value,
                                  metadata["person_masks_reused"].value,
                                  metadata["plates_computed"].value)
            assert metadata["wall_seconds"].value > 0
            assert metadata["images_per_second"].value == pytest.approx(
                8 / metadata["wall_seconds"].value, rel=0.01)
            assert metadata["chunks_computed"].value > 0
    # plates: original's four test images, random's four train ones (its test ones are stored)
    assert counts == {"original": (8, 0, 4), "white": (0, 8, 0), "random": (0, 8, 4)}
