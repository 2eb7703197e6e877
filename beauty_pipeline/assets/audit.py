"""Group audit: contrastive Grad-CAM with FaceMass, and every shortcut family's controlled probes
with identity-bootstrap intervals and the verdict, per model x background."""

import base64

import mlflow
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    Config,
    MetadataValue,
    Output,
    asset,
)
from PIL import Image
from pydantic import Field

from beauty_pipeline.assets.common import (
    CODE_VERSION,
    GPU_POOL,
    GPU_STEP_TAGS,
    ON_INPUTS_CHANGED,
    audit_code_version,
    png_md,
    table_md,
)
from beauty_pipeline.assets.transfer import score_transfer_sets
from beauty_pipeline.checks import (
    AUDIT_CHECKS,
    GRADCAM_CHECKS,
    background_shortcut,
    face_attention,
    shortcut_verdict,
)
from beauty_pipeline.explain import audit as audit_domain
from beauty_pipeline.explain.confounds import dataset_confounds, decorate
from beauty_pipeline.explain.plots import thumbnail_png, thumbnail_webp
from beauty_pipeline.explain.seeds import audit_per_seed
from beauty_pipeline.explain.transfer import (
    apply_to_audit,
    transfer_control_metrics,
    transfer_metrics,
)
from beauty_pipeline.model_registry import record_verdict
from beauty_pipeline.partitions import VARIANT_OF_PARTITION, model_background_partitions
from beauty_pipeline.resources import MlflowTracking, StudyStorage

INLINE_MARKDOWN_LIMIT = 1000  # Dagster 1.13 UI: MetadataEntry.tsx, `mdStr.length < 1000`


class GradcamConfig(Config):
    """Which layer Grad-CAM reads, and how many per-image overlays to draw."""

    layer: str = Field(default="", description=(
        "Module path; default: the last convolutional stage, or the deepest one whose map is at "
        "least 7x7 (the study's own map size at 224 px) when the input is smaller"))
    overlays: int = Field(default=8, ge=0)
    batch_size: int = Field(default=32, ge=1)
    device: str = "auto"


class AuditConfig(Config):
    """Seed of the identity bootstrap and the batch size for the probes."""

    bootstrap_seed: int = 0
    batch_size: int = 64
    device: str = "auto"


def inline_png(path: str, caption: str, max_side: int = 480) -> MetadataValue:
    """A size-capped thumbnail of a figure file, rendered inline in the Dagster UI."""
    return png_md(thumbnail_png(path, max_side=max_side, max_bytes=40_000), caption)


def inline_thumbnail(path: str, caption: str) -> MetadataValue:
    """A thumbnail the Dagster UI shows in place: its Markdown renders inline only under 1,000
    characters (longer ones hide behind "Show Markdown"), so a WebP of the bytes that leaves."""
    head = f"![{caption}](data:image/webp;base64,"
    max_bytes = (INLINE_MARKDOWN_LIMIT - 1 - len(head) - 1) // 4 * 3
    data = base64.b64encode(thumbnail_webp(path, max_side=128, max_bytes=max_bytes)).decode()
    return MetadataValue.md(f"{head}{data})")


def trained_model(classifier: dict) -> audit_domain.TrainedModel:
    weights = tuple(classifier.get("seed_weights") or [classifier["weights"]])
    return audit_domain.TrainedModel(classifier["model"], weights, int(classifier["image_size"]))


def numbers(result: dict) -> dict[str, float]:
    """The float metrics of an audit result (MLflow takes numbers only)."""
    return {k: float(v) for k, v in result.items()
            if isinstance(v, float | int) and not isinstance(v, bool)}


@asset(group_name="audit", partitions_def=model_background_partitions, code_version=CODE_VERSION,
       automation_condition=ON_INPUTS_CHANGED, ins=VARIANT_OF_PARTITION, check_specs=GRADCAM_CHECKS,
       pool=GPU_POOL, op_tags=GPU_STEP_TAGS)
def gradcam(context: AssetExecutionContext, config: GradcamConfig, classifier: dict,
            face_dataset_variant, storage: StudyStorage, mlflow_tracking: MlflowTracking):
    """Class-average contrastive Grad-CAM heatmaps, overlays and FaceMass with 95% intervals."""
    mlflow_tracking.ensure_reachable()  # before the work, not after it
    background = classifier["background"]
    result = audit_domain.gradcam_audit(trained_model(classifier), face_dataset_variant, storage.images,
                           storage.folder("cache"), storage.folder("outputs", "figures"), background,
                           config.layer, config.overlays, config.batch_size, config.device)
    result["mlflow_run_id"] = classifier["mlflow_run_id"]
    with mlflow_tracking.run("", {}, run_id=classifier["mlflow_run_id"]):
        mlflow.log_metrics({k: v for k, v in numbers(result).items() if k.startswith("face_")})
        mlflow.set_tag("gradcam_layer", result["layer"])
        for path in result["figures"].values():
            mlflow.log_artifact(path, artifact_path="gradcam")
        for kind in ("class_average", "heatmap_grid"):  # the run's Images view shows these
            with Image.open(result["figures"][kind]) as figure:
                mlflow.log_image(figure.convert("RGB"), key=f"gradcam_{kind}", step=0)
    yield Output(result, metadata={
        **{k: v for k, v in numbers(result).items() if k.startswith("face_")},
        "face_region_sources": MetadataValue.json(result["face_region_sources"]),
        "layer": result["layer"], "explained": result["explained"],
        "class_average_heatmaps": inline_png(result["figures"]["class_average"], "class averages"),
        "overlays": inline_png(result["figures"]["overlays"], "overlays"),
        "class_average_file": MetadataValue.path(result["figures"]["class_average"]),
        "overlays_file": MetadataValue.path(result["figures"]["overlays"]),
        "mlflow_run_id": classifier["mlflow_run_id"],
        "heatmaps": inline_thumbnail(result["figures"]["heatmap_grid"],
                                     "class-average Grad-CAM, celebrity | ordinary"),
        "heatmap_grid_file": MetadataValue.path(result["figures"]["heatmap_grid"]),
        "mlflow_run": MetadataValue.url(mlflow_tracking.run_url(
            classifier.get("mlflow_experiment_id", "0"), classifier["mlflow_run_id"]))})
    yield face_attention(result)


@asset(group_name="audit", partitions_def=model_background_partitions,
       code_version=audit_code_version(),
       automation_condition=ON_INPUTS_CHANGED, ins=VARIANT_OF_PARTITION, check_specs=AUDIT_CHECKS,
       pool=GPU_POOL, op_tags=GPU_STEP_TAGS,
       deps=["transfer_faces"])  # read from its stored manifest: absent = no transfer set
def shortcut_audit(context: AssetExecutionContext, config: AuditConfig, classifier: dict,
                   gradcam: dict, face_dataset_variant, face_dataset: pd.DataFrame,
                   storage: StudyStorage, mlflow_tracking: MlflowTracking):
    """Accuracy on the counterfactual sets (face-only, background-only, mixed-same, mixed-other),
    every family's probe against its control with 95% intervals, and the verdict."""
    mlflow_tracking.ensure_reachable()  # before the work, not after it
    result = audit_per_seed(trained_model(classifier), face_dataset_variant,
                                         storage.images, storage.folder("cache"),
                                         audit_domain.class_lifts(gradcam), config.batch_size,
                                         config.device, config.bootstrap_seed)
    result["mlflow_run_id"] = classifier["mlflow_run_id"]
    result = label_or_source(context, result, classifier, face_dataset_variant, face_dataset,
                             storage, config)
    with mlflow_tracking.run("", {}, run_id=classifier["mlflow_run_id"]):
        mlflow.log_metrics(numbers(result))
        mlflow.set_tags({"verdict": result["verdict"], "verdict_per_seed": result["verdict_per_seed"],
                         "named_families": "+".join(result["named_families"]) or "none",
                         "verdict_label": result["verdict_label"][:5000],
                         "confounds": describe_confounds(result["confounds"])[:5000]})
        mlflow.log_dict({k: result[k] for k in ("probes", "class_profiles", "verdict_reasons")},
                        "audit/probes.json")
        mlflow.log_dict({k: result[k] for k in ("attribute_mix", "strata", "strata_attributes")},
                        "audit/demographics.json")
    if classifier.get("registered_model"):  # classifier outputs from before the registry have none
        record_verdict(classifier["registered_model"], classifier["model_version"],
                       result["verdict"], "+".join(result["named_families"]) or "none",
                       (classifier.get("history") or [{}])[-1].get("test_accuracy"))
        context.log.info(f"{classifier['registered_model']} v{classifier['model_version']}: "
                         f"verdict {result['verdict']}")
    yield Output(result, metadata={
        **numbers(result), "verdict": result["verdict"], "verdict_per_seed": result["verdict_per_seed"],
        "verdict_reasons": MetadataValue.md("\n".join(f"- {r}" for r in result["verdict_reasons"])),
        "probes": table_md(pd.DataFrame(result["probes"]).round(3), max_rows=30),
        "class_profiles": MetadataValue.json(result["class_profiles"]),
        "strata_attributes": result["strata_attributes"],
        "strata": table_md(pd.DataFrame(result["strata"]).round(3), max_rows=30),
        "test_attribute_mix": MetadataValue.json(result["attribute_mix"]),
        "verdict_label": result["verdict_label"],
        "confounds": MetadataValue.json(result["confounds"]),
        "transfer_segmenter": result["transfer_segmenter"]})
    yield background_shortcut(result)
    yield shortcut_verdict(result)


def frontal_rates(context: AssetExecutionContext) -> dict | None:
    """The frontal filter's per-class drop rates face_dataset recorded (None if not recorded)."""
    event = context.instance.get_latest_materialization_event(AssetKey("face_dataset"))
    entry = event.asset_materialization.metadata.get("frontal_filter_drop_rate") if event and \
        event.asset_materialization else None
    return getattr(entry, "value", None) if entry is not None else None


def label_or_source(context: AssetExecutionContext, result: dict, classifier: dict,
                    variant: pd.DataFrame, study: pd.DataFrame, storage: StudyStorage,
                    config: AuditConfig) -> dict:
    """The audit result with the source-transfer scores and post-step (`source` named when the
    label does not survive another source) and the data set's confounds on the label."""
    estimates, images, identities, controls, segmenter = score_transfer_sets(
        trained_model(classifier), variant, storage, classifier["background"], config.batch_size,
        config.device, config.bootstrap_seed)
    result = {**apply_to_audit(result, estimates, controls=controls),
              **transfer_metrics(estimates, images, identities),
              **transfer_control_metrics(controls), "transfer_segmenter": segmenter}
    found = dataset_confounds(study, frontal_rates(context))
    return {**result, "confounds": [c.as_dict() for c in found],
            "verdict_label": decorate(result["verdict"], found)}


def describe_confounds(confounds: list[dict]) -> str:
    """The MLflow tag: each confounding cue with its size, or 'none'."""
    return "; ".join(f"{c['cue']}: {c['magnitude']}" for c in confounds) or "none"
