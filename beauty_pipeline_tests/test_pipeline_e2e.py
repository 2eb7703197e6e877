"""The whole graph on a tiny synthetic study, materialized for real into Dagster and MLflow."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, instance_for_test
from mlflow.tracking import MlflowClient

from beauty_pipeline.storage import ImageStore
from beauty_pipeline.study_run import DemoPlan, full_pass

MODELS = ("resnet18", "fairface_resnet34")
BACKGROUNDS = ("original", "white", "random")
EPOCHS = 2


@pytest.fixture(scope="module")
def tiny_pass(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    plan = DemoPlan(home=home, models=MODELS, backgrounds=BACKGROUNDS, image_size=32, persons=6,
                    photos_per_person=6, ordinary=40, epochs=EPOCHS, backbone_epochs=1,
                    batch_size=16, learning_rate=1e-4)
    with instance_for_test() as instance:
        report = full_pass(instance, plan, log=lambda _: None)
        yield plan, instance, report


def manifest(plan, asset, partition="latest"):
    return pd.read_parquet(plan.home / "manifests" / asset / f"{partition}.parquet")


def test_dataset_manifests_are_consistent(tiny_pass):
    plan, _, report = tiny_pass
    study = manifest(plan, "face_dataset")
    store = ImageStore(plan.home / "images")
    assert all(store.exists(k) for k in study["image_key"])
    # no identity on both sides, celebrity persons all from the ranking
    assert (study.groupby("person")["split"].nunique() == 1).all()
    assert set(study.loc[study["looks"] == 1, "person"]) <= set(report.persons)
    counts = study.groupby(["split", "looks"]).size().unstack()
    assert (counts[0] == counts[1]).all()
    for background in BACKGROUNDS:
        variant = manifest(plan, "face_dataset_variant", background)
        assert set(variant["sample_id"]) <= set(study["sample_id"])
        per_class = variant.groupby(["split", "looks"]).size().unstack()
        assert (per_class[0] == per_class[1]).all()
        test = variant[variant["split"] == "test"]
        for name in ("face_only", "background_only", "mixed_same", "mixed_other"):
            assert (test[f"cf_{name}_key"] != "").all()
    white = manifest(plan, "face_dataset_variant", "white")
    row = white.iloc[0]
    image, mask = store.load(row["variant_image_key"]), store.load(row["mask_key"], "L")
    assert (image[mask == 0] == 255).all()


def test_one_mlflow_run_per_partition_with_epoch_metrics(tiny_pass):
    plan, _, report = tiny_pass
    mlflow.set_tracking_uri(f"sqlite:///{plan.home / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("beauty-pipeline")
    runs = client.search_runs([experiment.experiment_id], "tags.kind = 'classifier'")
    names = sorted(r.info.run_name for r in runs)
    assert names == sorted(f"{m}/{b}" for m in MODELS for b in BACKGROUNDS)
    for run in runs:
        for metric in ("train_accuracy", "test_accuracy", "train_loss", "test_loss",
                       "epoch_seconds", "images_per_second"):
            history = client.get_metric_history(run.info.run_id, metric)
            assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1)), metric
        assert run.data.params["learning_rate"] == "0.0001"
        assert run.data.params["epochs"] == str(EPOCHS)
        for tag in ("dagster_run_id", "partition_key", "dataset_version", "code_version"):
            assert run.data.tags[tag]
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "weights")]
        assert len(artifacts) == 1 and artifacts[0].endswith(".pt")
        accuracy = client.get_metric_history(run.info.run_id, "test_accuracy")[-1].value
        assert 0.0 <= accuracy <= 1.0


def test_dagster_instance_recorded_every_partition(tiny_pass):
    _, instance, report = tiny_pass
    materialized = instance.get_materialized_partitions(AssetKey("classifier"))
    assert len(materialized) == len(MODELS) * len(BACKGROUNDS)
    persons = instance.get_materialized_partitions(AssetKey("celebrity_faces"))
    assert persons == set(report.persons)
    record = instance.get_latest_materialization_event(AssetKey("face_dataset"))
    metadata = record.asset_materialization.metadata
    assert metadata["dataset_version"].value
    assert np.isfinite(report.seconds["total"])
