"""A real mini study: 24 public figures from a local folder vs FairFace, through face_dataset."""

import pandas as pd
import pytest
from conftest import asset_runner, materialize_persons, ranking_from_labels, require_shared
from dagster import AssetCheckKey, AssetKey, instance_for_test

from beauty_pipeline.definitions import defs
from beauty_pipeline.resources import (
    DemoDataResource,
    FacePreprocessing,
    ManifestIOManager,
    PhotoSourceResource,
    StudyStorage,
)


@pytest.fixture(scope="module")
def mini_study(tmp_path_factory):
    crops = require_shared("data", "celebrity_crops_glint")
    fairface = require_shared("data", "fairface_margin025")
    yunet = require_shared("models", "face_detection_yunet_2026may.onnx")
    home = tmp_path_factory.mktemp("mini")
    ranking_csv = ranking_from_labels(pd.read_csv(crops / "labels.csv"), home / "ranking.csv",
                                      "test_public_figures")
    resources = {**defs.resources, "io_manager": ManifestIOManager(root=str(home)),
                 "storage": StudyStorage(root=str(home)),
                 "photo_source": PhotoSourceResource(kind="local", local_dir=str(crops)),
                 "demo_data": DemoDataResource(),
                 "face_stage": FacePreprocessing(detector_model_path=str(yunet))}
    with instance_for_test() as instance:
        run = asset_runner(instance, resources)
        persons = materialize_persons(run, instance, str(ranking_csv), "yunet")
        result = run(["fairface_faces", "face_dataset"], ops={
            "fairface_faces": {"config": {"source": "fairface", "fairface_dir": str(fairface),
                                          "limit": 400}}})
        yield instance, persons, result


def test_every_person_fetched_locally_and_faces_kept_or_explained(mini_study):
    instance, persons, _ = mini_study
    assert len(persons) == 24
    assert instance.get_materialized_partitions(AssetKey("celebrity_faces")) == set(persons)
    record = instance.get_latest_materialization_event(AssetKey("celebrity_faces"))
    metadata = record.asset_materialization.metadata
    assert metadata["kept"].value > 10
    assert "data:image/png;base64," in metadata["kept_crops"].value


def test_split_has_no_person_and_no_near_duplicate_on_both_sides(mini_study):
    instance, persons, result = mini_study
    study = result.output_for_node("face_dataset")
    celebrities = study[study["looks"] == 1]
    assert set(celebrities["person"]) <= set(persons) and celebrities["person"].nunique() >= 20
    assert (study.groupby("person")["split"].nunique() == 1).all()
    assert (study.groupby("leak_group")["split"].nunique() == 1).all()
    counts = study.groupby(["split", "looks"]).size().unstack()
    assert (counts[0] == counts[1]).all() and counts.loc["test"].min() > 10
    # both classes went through the same detector, crop and frontal filter
    assert study["preprocessing"].str.startswith("yunet_crop").all()
    for check in ("class_balance", "no_identity_leakage"):
        key = AssetCheckKey(AssetKey("face_dataset"), check)
        [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        assert record.event.dagster_event.event_specific_data.passed


def test_celebrity_gender_from_the_ranking_and_mix_checked(mini_study):
    instance, _, result = mini_study
    study = result.output_for_node("face_dataset")
    celebrities = study[study["looks"] == 1]
    assert (celebrities["gender_source"] == "ranking").all()
    per_person = celebrities.groupby("person")["gender"].agg(set)
    assert (per_person.map(len) == 1).all()  # one gender per person, from the ranking row
    genders = per_person.map(min).value_counts()
    assert set(genders.index) == {"Male", "Female"} and genders.max() <= 12  # 12 M + 12 F listed
    assert (celebrities["age_source"] == "unknown").all()  # no official checkpoint here
    key = AssetCheckKey(AssetKey("face_dataset"), "attribute_mix_parity")
    [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    check = record.event.dagster_event.event_specific_data
    print("\nattribute_mix_parity:", check.passed, check.description)
    print("persons per gender:", genders.to_dict(), "rows per split, class, gender:",
          study.groupby(["split", "looks", "gender"]).size().to_dict())
    assert "age: not compared" in check.description and "race: not compared" in check.description
    test = study[study["split"] == "test"]
    female = test.groupby("looks")["gender"].apply(lambda g: (g == "Female").mean())
    gap = 100 * abs(female[1] - female[0])  # two values: total variation = the share's gap
    assert check.metadata["gender_gap_points_test"].value == pytest.approx(gap)
    assert check.metadata["gender_gap_points"].value >= gap
    assert check.passed == (check.metadata["gender_gap_points"].value <= 10)
