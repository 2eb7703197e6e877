"""Materialize the whole graph, partition by partition, into a real Dagster instance."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetKey, DagsterInstance, MultiPartitionKey, materialize

from beauty_pipeline import progress
from beauty_pipeline.assets.common import GPU_POOL, step_code_version
from beauty_pipeline.definitions import defs
from beauty_pipeline.demo.synthetic import DemoSpec
from beauty_pipeline.lanes import overlapped, pool_is_limited
from beauty_pipeline.parallel import kept_pools
from beauty_pipeline.resources import (
    DemoDataResource,
    FacePreprocessing,
    ManifestIOManager,
    MlflowTracking,
    PhotoSourceResource,
    StudyStorage,
)
from beauty_pipeline.resources.io import manifest_stem, read_manifest
from beauty_pipeline.resume import StepLedger, data_version, fingerprint, folder_listing
from beauty_pipeline.scraping import LocalFolderSource
from beauty_pipeline.settings import BACKGROUNDS, MODELS, PROFILES, default_mlflow_uri
from beauty_pipeline.study_options import StudyOptions
from beauty_pipeline.training.loop import resolve_device

PERSON_ASSETS = ("celebrity_photos", "celebrity_faces")
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


@dataclass(frozen=True)
class StudyPlan:
    """The real study: photo folders or Bing, a FairFace download, the study's training settings."""

    options: StudyOptions
    log_level: str = "WARNING"
    unread_resources: tuple[str, ...] = ("demo_data",)  # a study reads no synthetic faces

    @property
    def home(self) -> Path:
        return self.options.root

    @property
    def models(self) -> tuple[str, ...]:
        return self.options.models

    @property
    def backgrounds(self) -> tuple[str, ...]:
        return self.options.backgrounds

    def resources(self) -> dict:
        """Resources on this study's data root, photo source and face detector."""
        root, o = str(self.home), self.options
        return {**defs.resources,
                "io_manager": ManifestIOManager(root=root), "storage": StudyStorage(root=root),
                "photo_source": PhotoSourceResource(kind="bing" if o.bing else "local",
                                                    local_dir=o.photos),  # absolute already
                "demo_data": DemoDataResource(),
                "face_stage": FacePreprocessing(detector_model_path=o.detector_model,
                                                workers=o.workers),
                "mlflow_tracking": MlflowTracking(tracking_uri=default_mlflow_uri(self.home))}

    def run_config(self, keys: Iterable[str]) -> dict:
        """Per-asset config of the study for the selected assets."""
        o = self.options
        train = {"image_size": o.image_size, "batch_size": o.batch_size, "seed": o.seed,
                 "learning_rate": o.learning_rate}
        configs = {
            "ranking": {"location": o.ranking},
            "celebrity_faces": {"detector": "yunet"},
            "fairface_faces": {"source": "fairface", "fairface_dir": o.fairface,
                               "limit": o.limit_ordinary, "preprocessing": o.preprocessing},
            "face_dataset": {"seed": o.seed, "fairface_checkpoint": o.fairface_checkpoint,
                             "match_quality": o.match_quality,
                             "match_demographics": o.match_demographics},
            "face_dataset_variant": {"segmenter": o.segmenter,
                                     "rembg_model_path": o.rembg_model_path, "seed": o.seed},
            "fairface_backbone": {**train, "epochs": o.backbone_epochs,
                                  "checkpoint_path": o.fairface_checkpoint},
            "classifier": {**train, "epochs": o.epochs, "seeds": o.seeds},
            "transfer_faces": {"celebrity_dir": o.transfer_photos,
                               "ordinary_dir": o.transfer_ordinary},
        }
        return {"ops": {k: {"config": configs[k]} for k in keys if k in configs},
                "loggers": {"console": {"config": {"log_level": self.log_level}}}}

    @property
    def transfer_dirs(self) -> tuple[str, ...]:
        """The source-transfer folders given (--transfer-photos, --transfer-ordinary)."""
        return tuple(d for d in (self.options.transfer_photos, self.options.transfer_ordinary)
                     if d)

    def inputs_of_transfer(self) -> list:
        """Every transfer folder's files (name, size, time): new photos rerun the audits."""
        return [folder_listing(Path(d)) for d in self.transfer_dirs]

    def inputs_of_person(self, person: str, name: str) -> list:
        """What a person's photos step reads besides its config: the name, the folder's files."""
        if not self.options.photos:
            return [name, "bing"]
        folder = LocalFolderSource(self.options.photos).folder(person, name)
        return [name, folder_listing(folder) if folder else "no folder"]

    def inputs_of_fairface(self) -> list:
        """The FairFace label files (name, size, time): a new download reruns the ordinary class."""
        root = Path(self.options.fairface).expanduser()
        return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.glob("*.csv"))]


@dataclass
class PassReport:
    """What a full pass materialized, with the per-partition outputs and timings."""

    persons: list[str] = field(default_factory=list)
    partitions: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # steps done before, not run again


def available(keys: Iterable[str]) -> list[str]:
    """The subset of asset keys this code location defines."""
    defined = {a.key for a in defs.assets}
    return [k for k in keys if AssetKey(k) in defined]


def run_assets(instance: DagsterInstance, plan, keys: Iterable[str],
               partition: str | None = None):
    """One Dagster run materializing the selected assets (one partition)."""
    keys = available(keys)
    return materialize(list(defs.assets), selection=[AssetKey(k) for k in keys],
                       instance=instance, partition_key=partition, resources=plan.resources(),
                       run_config=plan.run_config(keys), raise_on_error=True)


def _run_in_worker(instance_ref, plan, keys, partition, outputs) -> dict:
    """run_assets in a worker process on the same instance; the outputs named, pickled back."""
    with DagsterInstance.from_ref(instance_ref) as instance:
        result = run_assets(instance, plan, keys, partition)
        return {k: result.output_for_node(k) for k in available(outputs)}


def lane_workers(instance: DagsterInstance, lanes: int) -> ProcessPoolExecutor | None:
    """Worker processes for overlapping lanes, or None when the instance lives only in memory.

    Processes, not threads: Dagster reconfigures `logging` at every run start, which deadlocks
    against another thread's logging; a process also gives each training its own torch seed."""
    if not instance.is_persistent:
        return None
    workers = max(2, min(lanes, 4))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_own_process_group)
    for warm in [pool.submit(_warm_worker) for _ in range(workers)]:
        warm.result()
    return pool


def _warm_worker() -> None:
    """Import the graph up front, so a lane's first run does not wait seconds for a new process
    (a spawn pool starts a process per submission while none is idle: all start here at once)."""
    import beauty_pipeline.definitions  # noqa: F401


def _own_process_group() -> None:
    """A worker leaves the terminal's process group: a Ctrl-C reaches it once, from the parent."""
    if hasattr(os, "setpgrp"):
        os.setpgrp()


def interrupt_workers(workers: ProcessPoolExecutor) -> None:
    """Pass a Ctrl-C on to the workers, so their runs stop as a run in this process would."""
    for process in list(getattr(workers, "_processes", {}).values()):
        if process.is_alive():
            os.kill(process.pid, signal.SIGINT)


def register_persons(instance: DagsterInstance, ranking) -> list[str]:
    """Make each person of the materialized ranking a `person` partition."""
    persons = ranking["person"].tolist()
    existing = set(instance.get_dynamic_partitions("person"))
    instance.add_dynamic_partitions("person", [p for p in persons if p not in existing])
    return persons


# Settings that change how fast a step runs, never what it makes (the pools are bit-exact).
SPEED_ONLY = {"face_stage": ("workers",)}


def resource_settings(plan) -> dict:
    """Each resource's settings as a step's fingerprint sees them: without the speed-only ones
    and without the resources the plan never reads (the study's demo_data, whose defaults change
    with the demo, must not rerun a real study)."""
    unread = set(getattr(plan, "unread_resources", ()))
    out = {}
    for name, resource in sorted(plan.resources().items()):
        if name in unread:
            continue
        settings = resource.model_dump() if hasattr(resource, "model_dump") else repr(resource)
        if isinstance(settings, dict):
            settings = {k: v for k, v in settings.items() if k not in SPEED_ONLY.get(name, ())}
        out[name] = settings
    return out


def resources_read(keys: Iterable[str]) -> set[str]:
    """The resources a step's assets declare (plus their IO manager): only these settings count."""
    out = {"io_manager"}
    for asset in defs.assets:
        if any(AssetKey(k) in asset.keys for k in keys):
            out |= set(asset.required_resource_keys)
    return out


class Steps:
    """Runs a pass's steps; with a ledger, a step already done under the same inputs is skipped."""

    def __init__(self, instance: DagsterInstance, plan, ledger: StepLedger | None):
        self.instance, self.plan, self.ledger = instance, plan, ledger
        self.skipped: list[str] = []
        self.lock = threading.Lock()  # lanes share the ledger
        self.workers: ProcessPoolExecutor | None = None  # set while lanes overlap
        self.settings = resource_settings(plan)

    def digest(self, keys, partition, inputs, extra) -> str:
        upstream = [(a, p, data_version(self.instance, a, p)) for a, p in inputs]
        used = {k: v for k, v in self.settings.items() if k in resources_read(keys)}
        return fingerprint(step_code_version(keys), self.plan.run_config(keys)["ops"], used,
                           str(partition or ""), upstream, extra)

    def run(self, name: str, keys, partition=None, inputs=(), extra=None, outputs=()):
        """Materialize `keys` (one partition) unless done; return the stored outputs named."""
        with self.lock:
            digest = self.digest(keys, partition, inputs, extra) if self.ledger else ""
            done = bool(self.ledger) and self.ledger.done(name, digest)
        if done:
            stored = self.stored(keys, partition, outputs)
            if stored is not None:
                self.skipped.append(name)
                return stored
        if self.workers is not None:
            made = self.workers.submit(_run_in_worker, self.instance.get_ref(), self.plan,
                                       list(keys), partition, list(outputs)).result()
        else:
            result = run_assets(self.instance, self.plan, keys, partition)
            made = {k: result.output_for_node(k) for k in available(outputs)}
        if self.ledger:
            with self.lock:
                self.ledger.record(name, digest)
        return made

    def stored(self, keys, partition, outputs) -> dict | None:
        """Outputs of a step done earlier, or None when anything it made is gone."""
        slug = str(partition) if partition else None
        if any(not data_version(self.instance, k, slug) for k in available(keys)):
            return None
        try:
            return {k: read_manifest(manifest_stem(self.plan.home, [k], slug), self.plan.home)
                    for k in available(outputs)}
        except FileNotFoundError:
            return None


@kept_pools()  # the pass's data steps share one set of pool workers
def full_pass(instance: DagsterInstance, plan, log: Callable[[str], None] = print,
              ledger: StepLedger | None = None, overlap: bool | None = None) -> PassReport:
    """ranking -> persons -> study set -> variants -> classifiers and their audits -> report.

    With a ledger, steps done before under the same inputs and settings are skipped. With
    `overlap` (default: when the device is CUDA), a background's classifiers train (GPU pool
    `gpu`) while the next background's variant is built (CPU); see lanes.py. On the CPU alone
    both would share the same cores, so the default there is the plain sequential pass."""
    if overlap is None:
        overlap = resolve_device("auto").type == "cuda"
    report = PassReport()
    steps = Steps(instance, plan, ledger)
    started = mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        report.seconds[name] = time.perf_counter() - mark
        mark = time.perf_counter()

    ranking = run_assets(instance, plan, ["ranking"]).output_for_node("ranking")
    report.persons = register_persons(instance, ranking)
    names = dict(zip(ranking["person"], ranking["name"], strict=True))
    for done, person in enumerate(report.persons, start=1):
        extra = plan.inputs_of_person(person, names[person]) if ledger else None
        steps.run(f"person:{person}", PERSON_ASSETS, person, extra=extra)
        progress.emit("persons (photos, faces)", done, len(report.persons), person)
    log(f"photos and faces ready for {len(report.persons)} persons")
    lap("ingest_and_faces")
    steps.run("fairface_faces", ["fairface_faces"],
              extra=plan.inputs_of_fairface() if ledger else None)
    transfer = transfer_wanted(plan, steps)
    if transfer:
        steps.run("transfer_faces", ["transfer_faces"],
                  extra=plan.inputs_of_transfer() if ledger else None)
    steps.run("face_dataset", ["face_dataset"], inputs=[
        ("ranking", None), ("fairface_faces", None),
        *(("celebrity_faces", p) for p in report.persons)])
    steps.run("fairface_backbone", ["fairface_backbone"], inputs=[("face_dataset", None)])
    lap("dataset_and_backbone")
    variants_done, trained = [], [(m, b) for m in plan.models for b in plan.backgrounds]
    finished: dict[tuple[str, str], dict] = {}

    def variant(background: str) -> None:
        steps.run(f"variant:{background}", ["face_dataset_variant"], background,
                  inputs=[("face_dataset", None)])
        variants_done.append(background)
        progress.emit("background variants", len(variants_done), len(plan.backgrounds), background)
        if len(variants_done) == len(plan.backgrounds):
            log(f"study set, backbone and {len(plan.backgrounds)} background variants ready")

    def classifiers(background: str) -> None:
        for model in plan.models:
            key = MultiPartitionKey({"model": model, "background": background})
            outputs = steps.run(f"model:{model}/{background}", PER_MODEL_ASSETS, key, inputs=[
                ("face_dataset_variant", background), ("fairface_backbone", None),
                *((("transfer_faces", None),) if transfer else ())], outputs=PER_MODEL_ASSETS)
            finished[(model, background)] = outputs
            progress.emit("models x backgrounds", len(finished), len(trained),
                          f"{model}/{background}")
            log(f"{model}/{background}: test accuracy "
                f"{outputs['classifier']['history'][-1]['test_accuracy']:.3f}")

    steps.workers = lane_workers(instance, len(plan.backgrounds) + 1) if overlap else None
    try:
        overlapped(plan.backgrounds, variant, classifiers, overlap and steps.workers is not None,
                   pool_is_limited(instance, GPU_POOL))
    except KeyboardInterrupt:
        if steps.workers is not None:
            interrupt_workers(steps.workers)
        raise
    finally:
        if steps.workers is not None:
            steps.workers.shutdown(wait=True, cancel_futures=True)
        steps.workers = None
    for model, background in trained:  # the report's order does not depend on who finished first
        report.partitions[f"{model}/{background}"] = finished[(model, background)]
    lap("training_and_audit")
    if available(["study_report"]):
        report.partitions["study_report"] = run_assets(
            instance, plan, ["study_report"]).output_for_node("study_report")
    lap("report")
    report.seconds["total"] = time.perf_counter() - started
    report.skipped = steps.skipped
    return report


def transfer_wanted(plan, steps: Steps) -> bool:
    """Run transfer_faces when the plan has transfer folders, or to empty a transfer set an
    earlier run left (an audit must not score a set this run was not given)."""
    if getattr(plan, "transfer_dirs", ()):
        return True
    return bool(data_version(steps.instance, "transfer_faces", None))
