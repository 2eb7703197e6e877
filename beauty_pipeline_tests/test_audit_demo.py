"""The audit on data whose answer is known: it flags the planted shortcut on `original` only."""

import mlflow
import pytest
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey, instance_for_test
from mlflow.tracking import MlflowClient

from beauty_pipeline.explain.verdict import verdict
from beauty_pipeline.study_run import DemoPlan, full_pass


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    plan = DemoPlan(home=tmp_path_factory.mktemp("audit"), models=("resnet18",),
                    backgrounds=("original", "random"), image_size=48, persons=30,
                    photos_per_person=6, ordinary=180, epochs=6, backbone_epochs=1,
                    batch_size=16, learning_rate=1e-3)
    with instance_for_test() as instance:
        report = full_pass(instance, plan, log=lambda _: None)
        yield plan, instance, report


def outputs(report, background):
    return report.partitions[f"resnet18/{background}"]


def test_shortcut_flagged_on_original_not_on_random(audited):
    _, _, report = audited
    original, random = outputs(report, "original"), outputs(report, "random")
    shortcut = original["shortcut_audit"]
    # the planted background carries the decision: alone it predicts the class, swapped it flips it
    assert shortcut["acc_background_only"] > 0.8
    assert shortcut["bg_gap"] > 0.3
    assert verdict(original["gradcam"]["face_mass"], shortcut["bg_gap"],
                   shortcut["acc_background_only"], acc_original=shortcut["acc_original"]) == "background"
    fair = random["shortcut_audit"]
    assert abs(fair["bg_gap"]) <= 0.1
    assert fair["acc_background_only"] < 0.65
    # not flagged: either it learned the (noisy) face signal or, in so few epochs, nothing yet
    assert verdict(random["gradcam"]["face_mass"], fair["bg_gap"], fair["acc_background_only"],
                   acc_original=fair["acc_original"]) in ("face", "chance")


def test_background_check_warns_on_original_and_passes_on_random(audited):
    _, instance, report = audited
    key = AssetCheckKey(AssetKey("shortcut_audit"), "background_shortcut")
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    evaluations = [r.event.dagster_event.event_specific_data for r in records]
    assert len(evaluations) == 2
    outcome = {e.metadata["bg_gap"].value: (e.passed, e.severity) for e in evaluations}
    assert outcome[outputs(report, "original")["shortcut_audit"]["bg_gap"]] == (
        False, AssetCheckSeverity.WARN)
    assert outcome[outputs(report, "random")["shortcut_audit"]["bg_gap"]][0] is True


def test_heatmaps_and_audit_numbers_reach_mlflow_and_the_report(audited):
    plan, _, report = audited
    mlflow.set_tracking_uri(f"sqlite:///{plan.home / 'mlflow.db'}")
    client = MlflowClient()
    run = client.get_run(outputs(report, "original")["classifier"]["mlflow_run_id"])
    for metric in ("face_mass_celebrity", "face_mass_ordinary", "bg_gap", "acc_face_only",
                   "acc_background_only", "acc_swapped"):
        assert metric in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "gradcam")}
    assert {"gradcam/resnet18__original__class_average.png",
            "gradcam/resnet18__original__overlays.png"} <= artifacts
    html = (plan.home / "outputs" / "report" / "study_report.html").read_text()
    assert "resnet18__original__accuracy_curves.png" in html
    for text in ("resnet18", "original", "random", "BG-gap", "FaceMass", "test_accuracy"):
        assert text in html
