"""face_dataset on real photos: frontal-filter drop rate and padding per class, FairFace splits."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import asset_runner, materialize_persons, require_shared
from dagster import AssetCheckKey, AssetKey, instance_for_test

from beauty_pipeline.checks import frontal_filter_parity
from beauty_pipeline.data.parity import frontal_drop_rates, frontal_gap_points, padded_share
from beauty_pipeline.data.split import SplitSettings, build_study_set
from beauty_pipeline.definitions import defs
from beauty_pipeline.resources import (
    DemoDataResource,
    FacePreprocessing,
    ManifestIOManager,
    PhotoSourceResource,
    StudyStorage,
)
from beauty_pipeline.vision.crop import padded_fraction

PERSONS = tuple(f"Person_{name}" for name in ("One", "Two", "Three", "Four", "Five", "Six",
                                                "Seven", "Eight"))


def faces_frame(reasons_by_class: dict[int, list[str]]) -> pd.DataFrame:
    rows = [{"looks": looks, "drop_reason": r, "preprocessing": "yunet_crop(...)"}
            for looks, reasons in reasons_by_class.items() for r in reasons]
    return pd.DataFrame(rows)


def test_drop_rates_count_only_faces_the_filter_judged():
    faces = faces_frame({1: ["", "", "non_frontal", "not_upright", "no_face", "undecodable"],
                         0: ["", "", "", "near_duplicate", "non_frontal", "too_small"]})
    rates = frontal_drop_rates(faces)
    assert rates["celebrity"] == {"judged": 4, "dropped": 2, "rate": 0.5}
    assert rates["ordinary"] == {"judged": 5, "dropped": 1, "rate": 0.2}
    assert frontal_gap_points(rates) == pytest.approx(30.0)
    check = frontal_filter_parity(rates)
    assert not check.passed and check.severity.value == "WARN"
    close = frontal_drop_rates(faces_frame({1: ["", "", "", "non_frontal"] * 5,
                                            0: ["", "", "", "", "non_frontal"] * 4}))
    assert frontal_gap_points(close) == pytest.approx(5.0) and frontal_filter_parity(close).passed


def test_as_is_ordinary_faces_were_never_judged():
    faces = faces_frame({1: ["", "non_frontal"], 0: ["", ""]})
    faces.loc[faces["looks"] == 0, "preprocessing"] = "as_is(study)"
    rates = frontal_drop_rates(faces)
    assert rates["ordinary"]["judged"] == 0 and frontal_gap_points(rates) is None
    assert frontal_filter_parity(rates).passed


def test_padded_fraction_of_a_crop_past_the_border():
    assert padded_fraction((400, 400), (150, 150, 250, 250), 0.25) == 0.0
    # a 100 px face at the left edge: its 150 px square starts 25 px past the border
    assert padded_fraction((400, 400), (0, 150, 100, 250), 0.25) == pytest.approx(25 / 150)
    # ... and at the top-left corner, 25 px past two borders
    assert padded_fraction((400, 400), (0, 0, 100, 100), 0.25) == pytest.approx(
        1 - 125 * 125 / 150 ** 2)
    study = pd.DataFrame({"looks": [1, 1, 0, 0, 0], "pad_fraction": [0.0, 0.2, 0.1, 0.3, np.nan]})
    shares = padded_share(study)
    assert shares["celebrity"] == {"cropped": 2, "padded": 1, "share": 0.5,
                                   "mean_pad_fraction": pytest.approx(0.2)}
    assert shares["ordinary"]["cropped"] == 2 and shares["ordinary"]["share"] == 1.0


def test_checkpoint_keeps_fairface_train_out_of_test(tmp_path):
    from beauty_pipeline.storage import ImageStore

    faces = pd.DataFrame({
        "image_key": [f"k{i}" for i in range(40)], "person": [f"p{i}" for i in range(40)],
        "looks": [1] * 20 + [0] * 20, "source": ["local"] * 20 + ["fairface"] * 20,
        "fairface_split": [""] * 20 + ["train", "val"] * 10, "face_x0": np.nan})
    store = ImageStore(tmp_path)
    for guard in (False, True):
        study = build_study_set(faces, store, SplitSettings(test_fraction=0.5, flip_upsample=False,
                                                            fairface_val_only_in_test=guard))
        ordinary_test = study[(study["looks"] == 0) & (study["split"] == "test")]
        assert len(ordinary_test) >= 5
        if guard:
            assert set(ordinary_test["fairface_split"]) == {"val"}
        else:
            assert "train" in set(ordinary_test["fairface_split"])


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """Four 'celebrities' with AFLW2000 photos (frontal to full profile) vs FairFace in the official
    train/val layout, through the real assets, with and without the official checkpoint."""
    aflw = require_shared("data", "headpose_aflw2000_subset")
    fairface = require_shared("data", "fairface_margin025")
    yunet = require_shared("models", "face_detection_yunet_2026may.onnx")
    home = tmp_path_factory.mktemp("parity")
    photos = home / "photos"
    for i, image in enumerate(sorted(aflw.glob("*.jpg"))):
        folder = photos / PERSONS[i % len(PERSONS)]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / image.name)
    labels = pd.read_csv(fairface / "labels.csv", dtype=str)
    ff = home / "fairface"
    for split in ("train", "val"):
        rows = labels[labels["file"].str.startswith(f"{split}/")].head(40)
        for file in rows["file"]:
            (ff / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(fairface / file, ff / file)
        rows.to_csv(ff / f"fairface_label_{split}.csv", index=False)
    ranking_csv = home / "ranking.csv"
    pd.DataFrame({"name": PERSONS, "gender": "female", "rank": range(1, len(PERSONS) + 1),
                  "list": "test",
                  "year": 2024}).to_csv(ranking_csv, index=False)
    resources = {**defs.resources, "io_manager": ManifestIOManager(root=str(home)),
                 "storage": StudyStorage(root=str(home)),
                 "photo_source": PhotoSourceResource(kind="local", local_dir=str(photos)),
                 "demo_data": DemoDataResource(),
                 "face_stage": FacePreprocessing(detector_model_path=str(yunet), workers=1)}
    with instance_for_test() as instance:
        run = asset_runner(instance, resources)
        materialize_persons(run, instance, str(ranking_csv), "yunet")
        run(["fairface_faces"], ops={"fairface_faces": {"config": {
            "source": "fairface", "fairface_dir": str(ff)}}})
        results = {}
        for checkpoint in ("", str(home / "res34_fair_align_multi_7_20190809.pt")):
            result = run(["face_dataset"], ops={"face_dataset": {"config": {
                "fairface_checkpoint": checkpoint, "test_fraction": 0.3}}})
            record = instance.get_latest_materialization_event(AssetKey("face_dataset"))
            checks = {}
            for name in ("frontal_filter_parity", "padding_parity"):
                key = AssetCheckKey(AssetKey("face_dataset"), name)
                [check] = instance.event_log_storage.get_asset_check_execution_history(key,
                                                                                       limit=1)
                checks[name] = check.event.dagster_event.event_specific_data
            results[bool(checkpoint)] = (result.output_for_node("face_dataset"),
                                         record.asset_materialization.metadata, checks)
        faces = pd.concat([pd.read_parquet(p) for p in (home / "manifests").glob(
            "*_faces/*.parquet")], ignore_index=True)
        yield faces, results


def test_drop_rate_per_class_recorded_and_checked(real_run):
    faces, results = real_run
    _, metadata, checks = results[False]
    check = checks["frontal_filter_parity"]
    rates = metadata["frontal_filter_drop_rate"].value
    assert rates == frontal_drop_rates(faces)
    # AFLW2000 holds profiles and steep pitches, FairFace mostly frontal faces
    assert rates["celebrity"]["dropped"] >= 10 and rates["celebrity"]["judged"] >= 50
    assert rates["ordinary"]["judged"] >= 60
    gap = abs(rates["celebrity"]["rate"] - rates["ordinary"]["rate"]) * 100
    assert check.metadata["gap_points"].value == pytest.approx(gap)
    assert check.passed == (gap <= 10.0) and check.severity.value == "WARN"
    print(f"\nfrontal filter drop rates {rates}; gap {gap:.1f} points")


def test_padding_recorded_per_crop_and_share_per_class(real_run):
    faces, results = real_run
    study, metadata, checks = results[False]
    check = checks["padding_parity"]
    kept = faces[faces["drop_reason"] == ""]
    assert kept["pad_fraction"].between(0, 1).all()
    assert faces.loc[faces["drop_reason"] != "", "pad_fraction"].isna().all()
    shares = metadata["padded_crops"].value
    assert shares == padded_share(study)
    # FairFace's tight aligned crops have no room for the 25 % margin: nearly all are padded,
    # AFLW's wider photos seldom: a class cue the padding_parity check flags (WARN)
    assert shares["ordinary"]["share"] > 0.8 and shares["ordinary"]["mean_pad_fraction"] > 0.05
    assert shares["celebrity"]["share"] < 0.5
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["gap_points"].value == pytest.approx(
        abs(shares["celebrity"]["share"] - shares["ordinary"]["share"]) * 100)
    print(f"\npadded crops per class {shares}")


def test_official_checkpoint_draws_ordinary_test_from_val_only(real_run):
    faces, results = real_run
    ordinary = faces[(faces["looks"] == 0)]
    assert set(ordinary["fairface_split"]) == {"train", "val"}
    without, metadata_without, _ = results[False]
    with_checkpoint, metadata, _ = results[True]
    test_splits = metadata["ordinary_test_fairface_splits"].value
    assert metadata["fairface_val_only_in_test"].value is True
    assert metadata["fairface_checkpoint"].value == "res34_fair_align_multi_7_20190809.pt"
    assert set(test_splits) == {"val"} and test_splits["val"] > 5
    ordinary_test = with_checkpoint[(with_checkpoint["looks"] == 0)
                                    & (with_checkpoint["split"] == "test")]
    assert set(ordinary_test["fairface_split"]) == {"val"}
    assert metadata_without["fairface_val_only_in_test"].value is False
    assert "train" in metadata_without["ordinary_test_fairface_splits"].value
