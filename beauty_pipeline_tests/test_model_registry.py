"""Models a user can pick up: every classifier run logs its model (registered as
`<model>-<background>`, tagged with the audit's verdict), its training and evaluation data sets and
system metrics; gradcam shows an inline thumbnail grid; `beauty-pipeline models` lists them.
A real tiny demo pass into a real SQLite MLflow store and a real Dagster instance."""

from __future__ import annotations

import base64
import io
import json
import re

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from dagster import AssetKey, instance_for_test
from mlflow import MlflowClient
from PIL import Image
from torch import nn

from beauty_pipeline import cli
from beauty_pipeline.model_registry import (
    AUDITED_FACE,
    LATEST,
    alias_version,
    log_classifier_model,
    record_verdict,
)
from beauty_pipeline.storage import ImageStore
from beauty_pipeline.study_run import DemoPlan, full_pass
from beauty_pipeline.training.data import split_arrays

BACKGROUNDS = ("original", "white")
EPOCHS = 2
SIZE = 32


@pytest.fixture(scope="module")
def tiny_registry(tmp_path_factory):
    """resnet18 on two backgrounds through the whole graph (model, registry, audit, report)."""
    home = tmp_path_factory.mktemp("registry_home")
    plan = DemoPlan(home=home, models=("resnet18",), backgrounds=BACKGROUNDS, image_size=SIZE,
                    persons=6, photos_per_person=6, ordinary=40, epochs=EPOCHS, backbone_epochs=1,
                    batch_size=16, learning_rate=1e-3)
    with instance_for_test() as instance:
        full_pass(instance, plan, log=lambda _: None)
        uri = f"sqlite:///{home / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("beauty-pipeline")
        runs = {r.data.tags["background"]: r for r in
                client.search_runs([experiment.experiment_id], "tags.kind = 'classifier'")}
        yield home, instance, client, runs


def final_test_accuracy(client, run) -> float:
    history = client.get_metric_history(run.info.run_id, "test_accuracy")
    return max(history, key=lambda m: m.step).value


def test_latest_model_loads_and_reproduces_its_test_accuracy(tiny_registry):
    home, _, client, runs = tiny_registry
    for background, run in runs.items():
        model = mlflow.pytorch.load_model(f"models:/resnet18-{background}@{LATEST}",
                                          map_location="cpu")
        manifest = pd.read_parquet(home / "manifests" / "face_dataset_variant"
                                   / f"{background}.parquet")
        test = split_arrays(manifest, ImageStore(home / "images"), SIZE, home / "cache")["test"]
        with torch.no_grad():  # the same batch size as training's evaluation
            logits = torch.cat([model(torch.from_numpy(np.array(test.images[i:i + 16])))
                                for i in range(0, len(test.images), 16)])
        accuracy = float((logits.argmax(1).numpy() == test.labels).sum()) / len(test.labels)
        assert accuracy == final_test_accuracy(client, run), background
        assert model.class_names == ("ordinary", "celebrity")
        info = mlflow.models.get_model_info(f"models:/resnet18-{background}@{LATEST}")
        assert info.metadata["class_names"] == ["ordinary", "celebrity"]
        spec = info.signature.inputs.to_dict()[0]["tensor-spec"]
        assert (spec["dtype"], list(spec["shape"])) == ("uint8", [-1, SIZE, SIZE, 3])
        assert info.run_id == run.info.run_id
        # pyfunc takes the same uint8 NHWC array and gives the same logits
        pyfunc = mlflow.pyfunc.load_model(f"models:/resnet18-{background}@{LATEST}")
        np.testing.assert_array_equal(pyfunc.predict(np.array(test.images[:16])),
                                      logits[:16].numpy())


def test_registry_versions_carry_the_audit_verdict(tiny_registry):
    _, instance, client, runs = tiny_registry
    names = sorted(m.name for m in client.search_registered_models())
    assert names == [f"resnet18-{b}" for b in sorted(BACKGROUNDS)]
    for background, run in runs.items():
        name = f"resnet18-{background}"
        (version,) = client.search_model_versions(f"name = '{name}'")
        assert version.run_id == run.info.run_id
        audit = instance.get_latest_materialization_event(
            AssetKey("shortcut_audit")).asset_materialization  # any partition: check each below
        assert audit is not None
        assert version.tags["verdict"] == run.data.tags["verdict"]
        assert version.tags["named_families"] == run.data.tags["named_families"]
        assert float(version.tags["test_accuracy"]) == pytest.approx(
            final_test_accuracy(client, run), abs=1e-6)
        assert alias_version(client, name, LATEST) == str(version.version)
        face = alias_version(client, name, AUDITED_FACE)
        assert (face == str(version.version)) == (version.tags["verdict"] == "face")


def test_audited_face_alias_follows_the_newest_face_version(tmp_path):
    """v1 face takes the alias, v2 background takes it away, v3 face takes it; re-auditing the
    older v1 as face never moves it back."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    name = "tiny-original"
    for _ in range(3):
        with mlflow.start_run():
            log_classifier_model(network, 8, name, 0.5)
    assert alias_version(client, name, LATEST) == "3"
    assert alias_version(client, name, AUDITED_FACE) is None
    record_verdict(name, "1", "face", "none", 0.9)
    assert alias_version(client, name, AUDITED_FACE) == "1"
    record_verdict(name, "2", "background", "background", 0.95)
    assert alias_version(client, name, AUDITED_FACE) is None
    assert client.get_model_version(name, "2").tags["verdict"] == "background"
    record_verdict(name, "3", "face", "none", 0.8)
    assert alias_version(client, name, AUDITED_FACE) == "3"
    record_verdict(name, "1", "face", "none", 0.9)
    assert alias_version(client, name, AUDITED_FACE) == "3"
    assert client.get_model_version(name, "3").tags["test_accuracy"] == "0.8"


def test_every_run_has_training_and_evaluation_inputs(tiny_registry):
    _, _, client, runs = tiny_registry
    digests = {}
    for background, run in runs.items():
        inputs = {i.tags[0].value: i.dataset for i in client.get_run(run.info.run_id).inputs
                  .dataset_inputs}
        assert set(inputs) == {"training", "evaluation"}, background
        assert inputs["training"].digest == run.data.tags["dataset_version"]
        assert inputs["training"].name == f"face_dataset_variant/{background}/train"
        profile = json.loads(inputs["evaluation"].profile)
        assert profile["num_rows"] == int(run.data.params["test_images"])
        digests[background] = inputs["training"].digest
    assert len(set(digests.values())) == len(BACKGROUNDS)  # other data version, other input


def test_every_run_has_system_metrics(tiny_registry):
    _, _, client, runs = tiny_registry
    for run in runs.values():
        metrics = client.get_run(run.info.run_id).data.metrics
        for name in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
            assert name in metrics, sorted(metrics)
        assert 0 <= metrics["system/cpu_utilization_percentage"] <= 100 * 256
        assert metrics["system/system_memory_usage_megabytes"] > 0


def test_gradcam_metadata_shows_an_inline_thumbnail_grid(tiny_registry):
    _, instance, client, runs = tiny_registry
    records = instance.fetch_materializations(AssetKey("gradcam"), limit=10).records
    assert len(records) == len(BACKGROUNDS)
    for record in records:
        metadata = record.asset_materialization.metadata
        markdown = metadata["heatmaps"].value
        assert len(markdown) < 1000  # Dagster's UI renders it in place only below that
        data = re.fullmatch(r"!\[[^\]]*\]\(data:image/webp;base64,([A-Za-z0-9+/=]+)\)", markdown)
        with Image.open(io.BytesIO(base64.b64decode(data.group(1)))) as thumb:
            assert thumb.format == "WEBP" and min(thumb.size) >= 48, thumb.size
        grid = metadata["heatmap_grid_file"].value
        with Image.open(grid) as full:
            assert full.size == (192, 192)
        run_id = metadata["mlflow_run_id"].value
        assert metadata["mlflow_run"].value.endswith(f"/runs/{run_id}")
        size = len(json.dumps({k: str(v.value) for k, v in metadata.items()}))
        assert size < 100_000, size
        images = [a.path for a in client.list_artifacts(run_id, "images")]
        assert any("gradcam_heatmap_grid" in p for p in images), images
        assert any("gradcam_class_average" in p for p in images), images


def test_models_command_lists_versions_with_verdicts(tiny_registry, capsys):
    home, _, client, runs = tiny_registry
    assert cli.main(["models", "--home", str(home)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["model", "version", "test_accuracy", "verdict", "named_families",
                                "aliases"]
    versions = sorted(client.search_model_versions(), key=lambda v: -v.creation_timestamp)
    assert len(lines) == 1 + len(versions)
    for line, version in zip(lines[1:], versions, strict=True):
        cells = line.split()
        assert cells[:4] == [version.name, str(version.version), version.tags["test_accuracy"],
                             version.tags["verdict"]]
        assert LATEST in cells[-1]
    assert cli.main(["models", "--home", str(home / "nowhere")]) == 2


@pytest.mark.parametrize("enabled", [True, False])
def test_system_metrics_switch_and_a_run_shorter_than_one_interval(tmp_path, enabled):
    """On: a run far shorter than the sampling interval still gets one sample; off: none."""
    from beauty_pipeline.resources.tracking import MlflowTracking

    tracking = MlflowTracking(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                              system_metrics=enabled, system_metrics_interval_s=30)
    with tracking.run("short", {"kind": "classifier"}, log_system_metrics=True) as run:
        mlflow.log_metric("test_accuracy", 0.5)
    metrics = MlflowClient(tracking.tracking_uri).get_run(run.info.run_id).data.metrics
    system = {k for k in metrics if k.startswith("system/")}
    assert ("system/cpu_utilization_percentage" in system) == enabled, sorted(metrics)
    assert bool(system) == enabled
