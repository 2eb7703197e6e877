"""Materialize the whole graph, partition by partition, into a real Dagster instance."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dagster import AssetKey, DagsterInstance, MultiPartitionKey, materialize

from beauty_pipeline.definitions import defs
from beauty_pipeline.settings import BACKGROUNDS, MODELS

PERSON_ASSETS = ("celebrity_photos", "celebrity_faces")
DATASET_ASSETS = ("fairface_faces", "face_dataset", "fairface_backbone")
PER_MODEL_ASSETS = ("classifier",)


@dataclass
class PassReport:
    """What a full pass materialized, with the per-partition outputs and timings."""

    persons: list[str] = field(default_factory=list)
    classifiers: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _assets():
    return list(defs.assets)


def _materialize(instance: DagsterInstance, keys: Iterable[str], partition: str | None = None,
                 run_config: dict | None = None):
    result = materialize(_assets(), selection=[AssetKey(k) for k in keys], instance=instance,
                         partition_key=partition, resources=defs.resources,
                         run_config=run_config or {}, raise_on_error=True)
    return result


def register_persons(instance: DagsterInstance) -> list[str]:
    """Materialize the ranking and make each of its persons a `person` partition."""
    result = _materialize(instance, ["ranking"])
    ranking = result.output_for_node("ranking")
    persons = ranking["person"].tolist()
    existing = set(instance.get_dynamic_partitions("person"))
    instance.add_dynamic_partitions("person", [p for p in persons if p not in existing])
    return persons


def full_pass(instance: DagsterInstance, models: Iterable[str] = MODELS,
              backgrounds: Iterable[str] = BACKGROUNDS,
              log: Callable[[str], None] = print) -> PassReport:
    """ranking -> persons -> study set -> variants -> classifiers (and their audits)."""
    report = PassReport()
    started = time.perf_counter()
    report.persons = register_persons(instance)
    for person in report.persons:
        _materialize(instance, PERSON_ASSETS, person)
    log(f"faces ready for {len(report.persons)} persons")
    report.seconds["ingest_and_faces"] = time.perf_counter() - started
    mark = time.perf_counter()
    _materialize(instance, DATASET_ASSETS)
    for background in backgrounds:
        _materialize(instance, ["face_dataset_variant"], background)
    log(f"study set, backbone and {len(list(backgrounds))} background variants ready")
    report.seconds["dataset_and_backbone"] = time.perf_counter() - mark
    mark = time.perf_counter()
    per_model = [k for k in PER_MODEL_ASSETS if AssetKey(k) in {a.key for a in _assets()}]
    for model in models:
        for background in backgrounds:
            key = MultiPartitionKey({"model": model, "background": background})
            result = _materialize(instance, per_model, key)
            report.classifiers[f"{model}/{background}"] = {
                k: result.output_for_node(k) for k in per_model}
            history = report.classifiers[f"{model}/{background}"]["classifier"]["history"]
            log(f"{model}/{background}: test accuracy {history[-1]['test_accuracy']:.3f}")
    report.seconds["training_and_audit"] = time.perf_counter() - mark
    report.seconds["total"] = time.perf_counter() - started
    return report
