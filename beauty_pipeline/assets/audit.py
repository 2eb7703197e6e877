"""Group audit: Grad-CAM with FaceMass and the counterfactual BG-gap, per model x background."""

import mlflow
from dagster import (
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
    asset,
)
from pydantic import Field

from beauty_pipeline.assets.common import CODE_VERSION, ON_INPUTS_CHANGED, png_md
from beauty_pipeline.checks import (
    AUDIT_CHECKS,
    GRADCAM_CHECKS,
    background_shortcut,
    face_attention,
)
from beauty_pipeline.explain.audit import TrainedModel, counterfactual_accuracies, gradcam_audit
from beauty_pipeline.explain.plots import thumbnail_png
from beauty_pipeline.partitions import VARIANT_OF_PARTITION, model_background_partitions
from beauty_pipeline.resources import MlflowTracking, StudyStorage


class GradcamConfig(Config):
    """Which layer Grad-CAM reads, and how many per-image overlays to draw."""

    layer: str = Field(default="", description=(
        "Module path; default: the last convolutional stage, or an earlier one when the input is so "
        "small that the last stage is under 4x4"))
    overlays: int = Field(default=8, ge=0)
    batch_size: int = Field(default=32, ge=1)
    device: str = "auto"


def inline_png(path: str, caption: str, max_side: int = 480) -> MetadataValue:
    """A size-capped thumbnail of a figure file, rendered inline in the Dagster UI."""
    return png_md(thumbnail_png(path, max_side=max_side, max_bytes=60_000), caption)


def trained_model(classifier: dict) -> TrainedModel:
    return TrainedModel(classifier["model"], classifier["weights"], int(classifier["image_size"]))


@asset(group_name="audit", partitions_def=model_background_partitions, code_version=CODE_VERSION,
       automation_condition=ON_INPUTS_CHANGED, ins=VARIANT_OF_PARTITION, check_specs=GRADCAM_CHECKS)
def gradcam(context: AssetExecutionContext, config: GradcamConfig, classifier: dict,
            face_dataset_variant, storage: StudyStorage, mlflow_tracking: MlflowTracking):
    """Class-average Grad-CAM heatmaps, per-image overlays and FaceMass (share of heat on the face)."""
    mlflow_tracking.ensure_reachable()  # before the work, not after it
    background = classifier["background"]
    result = gradcam_audit(trained_model(classifier), face_dataset_variant, storage.images,
                           storage.folder("cache"), storage.folder("outputs", "figures"), background,
                           config.layer, config.overlays, config.batch_size, config.device)
    result["mlflow_run_id"] = classifier["mlflow_run_id"]
    with mlflow_tracking.run("", {}, run_id=classifier["mlflow_run_id"]):
        mlflow.log_metrics({k: result[k] for k in ("face_mass_celebrity", "face_mass_ordinary")})
        for path in result["figures"].values():
            mlflow.log_artifact(path, artifact_path="gradcam")
    yield Output(result, metadata={
        "face_mass": result["face_mass"], "face_mass_celebrity": result["face_mass_celebrity"],
        "face_mass_ordinary": result["face_mass_ordinary"],
        "face_area_ratio": result["face_area_ratio"],
        "face_region_sources": MetadataValue.json(result["face_region_sources"]),
        "layer": result["layer"],
        "class_average_heatmaps": inline_png(result["figures"]["class_average"], "class averages"),
        "overlays": inline_png(result["figures"]["overlays"], "overlays"),
        "class_average_file": MetadataValue.path(result["figures"]["class_average"]),
        "overlays_file": MetadataValue.path(result["figures"]["overlays"]),
        "mlflow_run_id": classifier["mlflow_run_id"]})
    yield face_attention(result)


@asset(group_name="audit", partitions_def=model_background_partitions, code_version=CODE_VERSION,
       automation_condition=ON_INPUTS_CHANGED, ins=VARIANT_OF_PARTITION, check_specs=AUDIT_CHECKS)
def shortcut_audit(context: AssetExecutionContext, classifier: dict, face_dataset_variant,
                   storage: StudyStorage, mlflow_tracking: MlflowTracking):
    """Accuracy on face-only, background-only and background-swapped test images, and BG-gap."""
    mlflow_tracking.ensure_reachable()  # before the work, not after it
    result = {**counterfactual_accuracies(trained_model(classifier), face_dataset_variant,
                                          storage.images, storage.folder("cache")),
              "mlflow_run_id": classifier["mlflow_run_id"]}
    with mlflow_tracking.run("", {}, run_id=classifier["mlflow_run_id"]):
        mlflow.log_metrics({k: result[k] for k in ("bg_gap", "acc_face_only", "acc_background_only",
                                                    "acc_swapped", "acc_original")})
    yield Output(result, metadata={k: v for k, v in result.items() if isinstance(v, float | int | str)})
    yield background_shortcut(result)
