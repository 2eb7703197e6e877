"""The audit through the real graph on data whose answer is known: the planted background is
named on `original`, not on `random`; every fixed metric name reaches MLflow with its interval."""

import mlflow
import pytest
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey, instance_for_test
from mlflow.tracking import MlflowClient

from beauty_pipeline.data.families import FAMILIES
from beauty_pipeline.study_run import DemoPlan, full_pass

ACCURACIES = ("acc_original", "acc_face_only", "acc_person_only", "acc_background_only",
              "acc_mixed_same", "acc_mixed_other", "acc_face_features_removed",
              "acc_face_features_control")
GAPS = ("bg_gap", "composite_cost", "face_features_drop", "face_features_control_drop")


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


@pytest.mark.slow
def test_background_named_on_original_not_on_random(audited):
    _, _, report = audited
    original = outputs(report, "original")["shortcut_audit"]
    assert "background" in original["named_families"]
    assert original["bg_gap_ci_low"] > 0.3  # the planted cue flips when plates swap class
    assert original["acc_mixed_same"] > original["acc_mixed_other"] + 0.3
    assert abs(original["composite_cost"]) < 0.15  # the control: compositing alone costs little
    random = outputs(report, "random")["shortcut_audit"]
    assert "background" not in random["named_families"]
    assert random["bg_gap_ci_low"] < 0.1
    assert random["acc_background_only"] < 0.65


@pytest.mark.slow
def test_background_check_warns_on_original_and_passes_on_random(audited):
    _, instance, report = audited
    key = AssetCheckKey(AssetKey("shortcut_audit"), "background_shortcut")
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    evaluations = [r.event.dagster_event.event_specific_data for r in records]
    outcome = {e.metadata["bg_gap"].value: (e.passed, e.severity) for e in evaluations}
    assert outcome[outputs(report, "original")["shortcut_audit"]["bg_gap"]] == (
        False, AssetCheckSeverity.WARN)
    assert outcome[outputs(report, "random")["shortcut_audit"]["bg_gap"]][0] is True
    key = AssetCheckKey(AssetKey("shortcut_audit"), "shortcut_verdict")
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    verdicts = {r.event.dagster_event.event_specific_data.metadata["verdict"].value:
                r.event.dagster_event.event_specific_data.passed for r in records}
    assert verdicts[outputs(report, "original")["shortcut_audit"]["verdict"]] is False
    assert set(verdicts) == {outputs(report, b)["shortcut_audit"]["verdict"]
                             for b in ("original", "random")}


@pytest.mark.slow
def test_fixed_metric_names_intervals_and_verdict_tag_reach_mlflow(audited):
    plan, _, report = audited
    mlflow.set_tracking_uri(f"sqlite:///{plan.home / 'mlflow.db'}")
    client = MlflowClient()
    for background in ("original", "random"):
        parts = outputs(report, background)
        run = client.get_run(parts["classifier"]["mlflow_run_id"])
        metrics = run.data.metrics
        for name in (*ACCURACIES, *GAPS):
            low, high = metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"]
            assert low <= metrics[name] <= high
        for family in FAMILIES:
            assert metrics[f"family_{family}_drop_ci_low"] <= metrics[f"family_{family}_drop"]
            assert f"family_{family}_flip" in metrics
            low, high = (metrics[f"family_{family}_control_cost_ci_{s}"] for s in ("low", "high"))
            assert low <= metrics[f"family_{family}_control_cost"] <= high
        for name in ("face_mass_celebrity", "face_mass_ordinary", "val_accuracy"):
            assert name in metrics
        # accuracy within demographic strata (the demo labels every face's gender, age, race)
        low, high = metrics["acc_matched_strata_ci_low"], metrics["acc_matched_strata_ci_high"]
        assert low <= metrics["acc_matched_strata"] <= high
        assert 0 < metrics["matched_strata_share"] <= 1
        assert {"acc_gender_male", "acc_gender_female"} & set(metrics)
        assert run.data.tags["verdict"] == parts["shortcut_audit"]["verdict"]
        assert run.data.tags["verdict_per_seed"] == parts["shortcut_audit"]["verdict_per_seed"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "gradcam")}
    assert {"gradcam/resnet18__random__class_average.png",
            "gradcam/resnet18__random__overlays.png"} <= artifacts
    html = (plan.home / "outputs" / "report" / "study_report.html").read_text()
    assert "resnet18__original__accuracy_curves.png" in html
    for text in ("BG-gap", "mixed-same", "explain.verdict.decide", "Demographics of the test set",
                 outputs(report, "original")["shortcut_audit"]["verdict"],
                 "Quality matching: not used", "quality_parity: "):
        assert text in html
