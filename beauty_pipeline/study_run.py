"""Materialize the whole graph, partition by partition, into a real Dagster instance."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetKey, DagsterInstance, MultiPartitionKey, materialize

from beauty_pipeline.definitions import defs
from beauty_pipeline.demo.synthetic import DemoSpec
from beauty_pipeline.resources import (
    DemoDataResource,
    ManifestIOManager,
    MlflowTracking,
    PhotoSourceResource,
    StudyStorage,
)
from beauty_pipeline.settings import BACKGROUNDS, MODELS, PROFILES, default_mlflow_uri

PERSON_ASSETS = ("celebrity_photos", "celebrity_faces")
DATASET_ASSETS = ("fairface_faces", "face_dataset", "fairface_backbone")
PER_MODEL_ASSETS = ("classifier", "gradcam", "shortcut_audit")


@dataclass(frozen=True)
class DemoPlan:
    """One pass of the demo: where it writes, how big the synthetic study is, what it trains."""

    home: Path
    models: tuple[str, ...] = MODELS
    backgrounds: tuple[str, ...] = BACKGROUNDS
    image_size: int = DemoSpec.image_size
    persons: int = DemoSpec.persons
    photos_per_person: int = DemoSpec.photos_per_person
    ordinary: int = DemoSpec.ordinary
    epochs: int = PROFILES["demo"].epochs
    backbone_epochs: int = PROFILES["demo"].backbone_epochs
    batch_size: int = PROFILES["demo"].batch_size
    learning_rate: float = PROFILES["demo"].learning_rate
    seed: int = 0
    seeds: int = PROFILES["demo"].seeds
    log_level: str = "DEBUG"  # Dagster's console logger; the CLI shows warnings only

    def resources(self) -> dict:
        """Resources pointing at this plan's data root and MLflow store."""
        root = str(Path(self.home).resolve())
        return {**defs.resources,
                "io_manager": ManifestIOManager(root=root), "storage": StudyStorage(root=root),
                "photo_source": PhotoSourceResource(kind="demo"),
                "demo_data": DemoDataResource(image_size=self.image_size, persons=self.persons,
                                              photos_per_person=self.photos_per_person,
                                              ordinary=self.ordinary, seed=self.seed),
                "mlflow_tracking": MlflowTracking(tracking_uri=default_mlflow_uri(Path(root)))}

    def run_config(self, keys: Iterable[str]) -> dict:
        """Per-asset config for the selected assets (demo sizes instead of the study's)."""
        train = {"image_size": self.image_size, "batch_size": self.batch_size, "seed": self.seed,
                 "learning_rate": self.learning_rate}
        configs = {
            "ranking": {"location": "demo"},
            "fairface_faces": {"source": "demo"},
            "celebrity_faces": {"detector": "known"},
            "face_dataset": {"seed": self.seed},
            "fairface_backbone": {**train, "epochs": self.backbone_epochs, "checkpoint_path": ""},
            "classifier": {**train, "epochs": self.epochs, "seeds": self.seeds},
        }
        return {"ops": {k: {"config": configs[k]} for k in keys if k in configs},
                "loggers": {"console": {"config": {"log_level": self.log_level}}}}


@dataclass
class PassReport:
    """What a full pass materialized, with the per-partition outputs and timings."""

    persons: list[str] = field(default_factory=list)
    partitions: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def available(keys: Iterable[str]) -> list[str]:
    """The subset of asset keys this code location defines."""
    defined = {a.key for a in defs.assets}
    return [k for k in keys if AssetKey(k) in defined]


def run_assets(instance: DagsterInstance, plan: DemoPlan, keys: Iterable[str],
               partition: str | None = None):
    """One Dagster run materializing the selected assets (one partition)."""
    keys = available(keys)
    return materialize(list(defs.assets), selection=[AssetKey(k) for k in keys],
                       instance=instance, partition_key=partition, resources=plan.resources(),
                       run_config=plan.run_config(keys), raise_on_error=True)


def register_persons(instance: DagsterInstance, plan: DemoPlan) -> list[str]:
    """Materialize the ranking and make each of its persons a `person` partition."""
    ranking = run_assets(instance, plan, ["ranking"]).output_for_node("ranking")
    persons = ranking["person"].tolist()
    existing = set(instance.get_dynamic_partitions("person"))
    instance.add_dynamic_partitions("person", [p for p in persons if p not in existing])
    return persons


def full_pass(instance: DagsterInstance, plan: DemoPlan,
              log: Callable[[str], None] = print) -> PassReport:
    """ranking -> persons -> study set -> variants -> classifiers and their audits -> report."""
    report = PassReport()
    started = mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        report.seconds[name] = time.perf_counter() - mark
        mark = time.perf_counter()

    report.persons = register_persons(instance, plan)
    for person in report.persons:
        run_assets(instance, plan, PERSON_ASSETS, person)
    log(f"photos and faces ready for {len(report.persons)} persons")
    lap("ingest_and_faces")
    run_assets(instance, plan, DATASET_ASSETS)
    for background in plan.backgrounds:
        run_assets(instance, plan, ["face_dataset_variant"], background)
    log(f"study set, backbone and {len(plan.backgrounds)} background variants ready")
    lap("dataset_and_backbone")
    for model in plan.models:
        for background in plan.backgrounds:
            key = MultiPartitionKey({"model": model, "background": background})
            result = run_assets(instance, plan, PER_MODEL_ASSETS, key)
            outputs = {k: result.output_for_node(k) for k in available(PER_MODEL_ASSETS)}
            report.partitions[f"{model}/{background}"] = outputs
            log(f"{model}/{background}: test accuracy "
                f"{outputs['classifier']['history'][-1]['test_accuracy']:.3f}")
    lap("training_and_audit")
    if available(["study_report"]):
        report.partitions["study_report"] = run_assets(
            instance, plan, ["study_report"]).output_for_node("study_report")
    lap("report")
    report.seconds["total"] = time.perf_counter() - started
    return report
