"""Group models: the FairFace backbone and one classifier per model x background."""


import hashlib
import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
    asset,
)
from pydantic import Field

from beauty_pipeline import progress
from beauty_pipeline.assets.common import (
    CODE_VERSION,
    GPU_POOL,
    GPU_STEP_TAGS,
    ON_INPUTS_CHANGED,
    table_md,
)
from beauty_pipeline.checks import CLASSIFIER_CHECKS, above_chance
from beauty_pipeline.data.variants import variant_version
from beauty_pipeline.model_registry import (
    log_classifier_model,
    log_data_sets,
    registered_name,
)
from beauty_pipeline.partitions import VARIANT_OF_PARTITION, model_background_partitions
from beauty_pipeline.resources import MlflowTracking, StudyStorage
from beauty_pipeline.resources.io import manifest_stem
from beauty_pipeline.settings import FAIRFACE_CHECKPOINT_ENV, TrainSettings, active_profile
from beauty_pipeline.training.backbone import (
    AttributeObjective,
    attribute_targets,
    load_official_backbone,
)
from beauty_pipeline.training.checkpoints import EpochCheckpoints, load_state, save_state
from beauty_pipeline.training.data import split_arrays
from beauty_pipeline.training.loop import EpochMetrics, seeded, train
from beauty_pipeline.training.models import (
    build_fairface_backbone,
    build_model,
    transfer_from_backbone,
)

TRAINING_POOL = GPU_POOL  # training shares the GPU with the audits (one step per device)


class TrainConfig(Config):
    """Training settings; defaults are the study's (Adam, lr 1e-4, 10 epochs, batch 32, 224 px)."""

    epochs: int = Field(default_factory=lambda: active_profile().epochs, ge=1)
    batch_size: int = Field(default_factory=lambda: active_profile().batch_size, ge=1)
    learning_rate: float = Field(default_factory=lambda: active_profile().learning_rate, gt=0)
    image_size: int = Field(default_factory=lambda: active_profile().image_size, ge=8)
    seed: int = 0
    seeds: int = Field(default_factory=lambda: active_profile().seeds, ge=1,
                       description="Train this many times (seed, seed+1, ...): mean and spread")
    device: str = Field(default_factory=lambda: os.environ.get("BEAUTY_PIPELINE_DEVICE", "auto"),
                        description="auto | cpu | cuda")
    amp: bool = Field(default=True, description="Mixed precision on CUDA (ignored on the CPU)")

    def settings(self) -> TrainSettings:
        return TrainSettings(epochs=self.epochs, batch_size=self.batch_size,
                             learning_rate=self.learning_rate, image_size=self.image_size,
                             seed=self.seed, device=self.device, amp=self.amp)


def fingerprint(**parts) -> str:
    """Identity of a training run: same inputs and settings resume the same checkpoints."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def seed_spread(histories: list[list[EpochMetrics]]) -> dict[str, float]:
    """Mean and standard deviation over seeds of the final epoch's accuracies."""
    out = {}
    for name in ("train_accuracy", "val_accuracy", "test_accuracy"):
        values = np.array([getattr(h[-1], name) for h in histories], dtype=np.float64)
        out[f"{name}_seed_mean"] = float(values.mean())
        out[f"{name}_seed_std"] = float(values.std())
    return out


def log_epoch(metrics: EpochMetrics, prefix: str) -> dict[str, float]:
    """One epoch's metrics to the active MLflow run at step=epoch; returns them unprefixed."""
    import mlflow

    values = metrics.as_dict()
    epoch = int(values.pop("epoch"))
    mlflow.log_metrics({f"{prefix}{k}": v for k, v in values.items()}, step=epoch)
    return values


def log_unlogged_epochs(run_id: str, prefix: str, history: list[EpochMetrics]) -> None:
    """Log epochs a killed run checkpointed but never sent to MLflow, so a resumed run's curves
    have every epoch."""
    import mlflow

    logged = {m.step for m in mlflow.MlflowClient().get_metric_history(
        run_id, f"{prefix}val_accuracy")}
    for metrics in history:
        if metrics.epoch not in logged:
            log_epoch(metrics, prefix)


def history_table(history: list[EpochMetrics]) -> MetadataValue:
    frame = pd.DataFrame([m.as_dict() for m in history]).round(4)
    return table_md(frame, max_rows=50)


class BackboneConfig(TrainConfig):
    """The official FairFace checkpoint when given; else pre-training on attribute labels."""

    checkpoint_path: str = Field(default_factory=lambda: os.environ.get(FAIRFACE_CHECKPOINT_ENV, ""),
                                 description="e.g. res34_fair_align_multi_7_20190809.pt")
    epochs: int = Field(default_factory=lambda: active_profile().backbone_epochs, ge=1)


@asset(group_name="models", code_version=CODE_VERSION,
       automation_condition=ON_INPUTS_CHANGED, pool=TRAINING_POOL)
def fairface_backbone(context: AssetExecutionContext, config: BackboneConfig,
                      face_dataset: pd.DataFrame, storage: StudyStorage) -> Output[dict]:
    """ResNet-34 with FairFace's 18 outputs (7 race, 2 gender, 9 age) for transfer learning."""
    target_dir = storage.folder("models", "fairface_backbone")
    if config.checkpoint_path:
        model = load_official_backbone(config.checkpoint_path)
        origin, history = f"official checkpoint {os.path.basename(config.checkpoint_path)}", []
    else:
        ordinary = face_dataset[face_dataset["looks"] == 0]
        arrays = split_arrays(ordinary, storage.images, config.image_size,
                              storage.folder("cache"), key_column="image_key")
        targets = {side: attribute_targets(ordinary[ordinary["split"] == side])
                   for side in ("train", "val")}
        settings = config.settings()
        seeded(settings.seed)
        model = build_fairface_backbone()
        run_id = fingerprint(kind="backbone", data=ordinary["image_key"].tolist(),
                             settings=settings.__dict__)
        history = train(model, arrays["train"].images, targets["train"], None, None, settings,
                        EpochCheckpoints(storage.folder("checkpoints", "fairface_backbone"), run_id),
                        lambda m: (context.log.info(f"backbone epoch {m.epoch}: {m.as_dict()}"),
                                   progress.emit("fairface_backbone", m.epoch, settings.epochs)),
                        objective=AttributeObjective(), val_images=arrays["val"].images,
                        val_targets=targets["val"])
        origin = "pre-trained here on the ordinary train images' age/gender/race labels"
    weights = target_dir / "backbone.pt"
    save_state(weights, model.state_dict())
    shutil.rmtree(storage.path / "checkpoints" / "fairface_backbone", ignore_errors=True)
    return Output({"weights": str(weights), "origin": origin,
                   "history": [m.as_dict() for m in history]},
                  metadata={"origin": origin, "weights": MetadataValue.path(str(weights)),
                            "history": history_table(history)})


@asset(group_name="models", partitions_def=model_background_partitions, code_version=CODE_VERSION,
       automation_condition=ON_INPUTS_CHANGED,
       pool=TRAINING_POOL, op_tags=GPU_STEP_TAGS, check_specs=CLASSIFIER_CHECKS,
       ins=VARIANT_OF_PARTITION)
def classifier(context: AssetExecutionContext, config: TrainConfig,
               face_dataset_variant: pd.DataFrame, fairface_backbone: dict,
               storage: StudyStorage, mlflow_tracking: MlflowTracking):
    """A celebrity-vs-ordinary classifier; one MLflow run with per-epoch accuracy and loss."""
    mlflow_tracking.ensure_reachable()
    keys = model_background_partitions.get_partition_key_from_str(
        str(context.partition_key)).keys_by_dimension
    model_name, background = keys["model"], keys["background"]
    settings = config.settings()
    dataset_version = variant_version(face_dataset_variant)
    run_key = fingerprint(model=model_name, background=background, data=dataset_version,
                          settings=settings.__dict__, backbone=fairface_backbone["weights"]
                          if model_name == "fairface_resnet34" else "")
    checkpoint_root = storage.folder("checkpoints", f"{model_name}__{background}")
    seeds = [settings.seed + k for k in range(config.seeds)]
    checkpoints = [EpochCheckpoints(checkpoint_root / f"seed{seed}", run_key) for seed in seeds]
    resumed = checkpoints[0].latest()
    arrays = split_arrays(face_dataset_variant, storage.images, settings.image_size,
                          storage.folder("cache"))
    tags = {"dagster_run_id": context.run.run_id, "partition_key": str(context.partition_key),
            "dataset_version": dataset_version, "code_version": CODE_VERSION,
            "model": model_name, "background": background, "kind": "classifier"}
    histories, weights = [], []
    registered = registered_name(model_name, background)
    with mlflow_tracking.run(f"{model_name}/{background}", tags,
                             run_id=resumed.get("mlflow_run_id") if resumed else None,
                             log_system_metrics=True) as run:
        import mlflow

        if resumed:
            mlflow.set_tags({**tags, "resumed_from_epoch": str(resumed["epoch"])})
            context.log.info(f"resuming {model_name}/{background} after epoch {resumed['epoch']}")
        else:
            mlflow.log_params({**settings.__dict__, "model": model_name, "background": background,
                               "seeds": config.seeds, "optimizer": "adam",
                               "train_images": len(arrays["train"].labels),
                               "val_images": len(arrays["val"].labels),
                               "test_images": len(arrays["test"].labels),
                               "backbone": fairface_backbone["origin"]
                               if model_name == "fairface_resnet34" else "none (from scratch)"})
            log_data_sets(face_dataset_variant, dataset_version, f"face_dataset_variant/{background}",
                          manifest_stem(storage.path, ["face_dataset_variant"], background)
                          .with_suffix(".parquet"))
        for index, (seed, seed_checkpoints) in enumerate(zip(seeds, checkpoints, strict=True)):
            prefix = "" if index == 0 else f"seed{seed}_"

            def on_epoch(metrics: EpochMetrics, prefix=prefix, seed=seed) -> None:
                values, epoch = log_epoch(metrics, prefix), metrics.epoch
                context.log.info(f"{model_name}/{background} {prefix}epoch {epoch}: " +
                                 ", ".join(f"{k}={v:.4f}" for k, v in values.items()))
                progress.emit(f"{model_name}/{background} seed {seed}", epoch, settings.epochs,
                              f"val {values['val_accuracy']:.2f}")

            seed_settings = replace(settings, seed=seed)
            seeded(seed)
            model = transfer_from_backbone(load_state(fairface_backbone["weights"])) \
                if model_name == "fairface_resnet34" else build_model(model_name)
            histories.append(train(model, arrays["train"].images, arrays["train"].labels,
                                   arrays["test"].images, arrays["test"].labels, seed_settings,
                                   seed_checkpoints, on_epoch,
                                   extra_state={"mlflow_run_id": run.info.run_id},
                                   val_images=arrays["val"].images,
                                   val_targets=arrays["val"].labels))
            log_unlogged_epochs(run.info.run_id, prefix, histories[-1])
            path = storage.folder("models", "classifier", f"{model_name}__{background}") / \
                f"{run_key}_seed{seed}.pt"
            weights.append(str(save_state(path, model.cpu().state_dict())))
            mlflow.log_artifact(weights[-1], artifact_path="weights")
            if index == 0:  # the registered version is the first seed's model, as `weights`
                logged = log_classifier_model(model, settings.image_size, registered,
                                              histories[0][-1].test_accuracy)
        spread = seed_spread(histories)
        mlflow.log_metrics(spread)
        run_id, experiment_id = run.info.run_id, run.info.experiment_id
    shutil.rmtree(checkpoint_root, ignore_errors=True)
    history = histories[0]
    final = history[-1]
    yield Output({"model": model_name, "background": background, "weights": weights[0],
                  "seed_weights": weights, "seeds": seeds,
                  "mlflow_run_id": run_id, "mlflow_experiment_id": experiment_id,
                  "dataset_version": dataset_version, "seed_spread": spread,
                  "registered_model": registered,
                  "model_version": str(logged.registered_model_version),
                  "model_uri": logged.model_uri,
                  "image_size": settings.image_size, "history": [m.as_dict() for m in history]},
                 metadata={"train_accuracy": final.train_accuracy,
                           "val_accuracy": final.val_accuracy,
                           "test_accuracy": final.test_accuracy, **spread,
                           "mlflow_run_id": run_id, "epochs": history_table(history),
                           "registered_model": f"{registered} v{logged.registered_model_version}",
                           "mlflow_run": MetadataValue.url(mlflow_tracking.run_url(experiment_id,
                                                                                  run_id)),
                           "weights": MetadataValue.path(weights[0])})
    yield above_chance(final.test_accuracy)

