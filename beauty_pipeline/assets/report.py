"""Group report: every partition side by side in one HTML page."""

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from beauty_pipeline.assets.common import CODE_VERSION, ON_INPUTS_CHANGED
from beauty_pipeline.data.quality import quality_summary
from beauty_pipeline.explain.plots import figure_name, plot_accuracy_curves
from beauty_pipeline.report.html import render_report, summary_markdown
from beauty_pipeline.resources import MlflowTracking, StudyStorage


def partition_report(classifier: dict, cam: dict | None, audit: dict | None, mlflow_ui: str) -> dict:
    """The report's view of one model x background partition."""
    cam, audit = cam or {}, audit or {}
    run_id = classifier["mlflow_run_id"]
    return {
        "model": classifier["model"], "background": classifier["background"],
        "epochs": classifier["history"], "mlflow_run_id": run_id,
        "mlflow_run_url": f"{mlflow_ui}/#/experiments/{classifier['mlflow_experiment_id']}/runs/{run_id}"
        if mlflow_ui else None,
        "verdict": audit.get("verdict"), "verdict_reasons": audit.get("verdict_reasons", []),
        "verdict_per_seed": audit.get("verdict_per_seed"),
        "verdict_label": audit.get("verdict_label"), "confounds": audit.get("confounds", []),
        "metrics": {k: float(v) for k, v in {**cam, **audit}.items()
                    if isinstance(v, float | int) and not isinstance(v, bool)},
        "figures": cam.get("figures", {}),
        "face_region_source": ", ".join(f"{k}: {v}" for k, v in cam.get("face_region_sources", {}).items())
        or None,
        "attribute_mix": audit.get("attribute_mix", {}), "strata": audit.get("strata", []),
        "strata_attributes": audit.get("strata_attributes"),
    }


@asset(group_name="report", code_version=CODE_VERSION, automation_condition=ON_INPUTS_CHANGED)
def study_report(context: AssetExecutionContext, classifier: dict[str, dict], gradcam: dict[str, dict],
                 shortcut_audit: dict[str, dict], face_dataset: pd.DataFrame,
                 storage: StudyStorage, mlflow_tracking: MlflowTracking) -> Output[dict]:
    """Per-epoch tables, heatmap grid, verdicts and every audit figure with its interval."""
    mlflow_ui = mlflow_tracking.tracking_uri if mlflow_tracking.tracking_uri.startswith("http") else ""
    parts = [partition_report(result, gradcam.get(key), shortcut_audit.get(key), mlflow_ui)
             for key, result in sorted(classifier.items())]
    figures = storage.folder("outputs", "figures")
    for part in parts:  # the study's accuracy-per-epoch curves, one figure per partition
        name = figure_name(part["model"], part["background"], "accuracy_curves")
        part["figures"] = {**part["figures"], "accuracy_curves": str(
            plot_accuracy_curves(part["epochs"], figures / name, f"{part['model']} / {part['background']}"))}
    if not parts:
        raise ValueError("no classifier partition has been materialized yet")
    dataset = quality_summary(face_dataset)  # whether quality matching was used, cue table
    html = render_report(parts, storage.folder("outputs", "report"), dataset=dataset)
    return Output({"html": str(html), "partitions": len(parts)},
                  metadata={"report": MetadataValue.path(str(html)), "partitions": len(parts),
                            "match_quality": dataset["match_quality"],
                            "quality_parity_passed": dataset["passed"],
                            "summary": MetadataValue.md(summary_markdown(parts, dataset))})
