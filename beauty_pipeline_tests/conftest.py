"""Shared test helpers: where ../shared (fixtures for real-data tests) lives, skip when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_ENV = "BEAUTY_PIPELINE_SHARED"


def shared_dir() -> Path | None:
    """../shared next to the repository (or $BEAUTY_PIPELINE_SHARED), None when it is absent."""
    explicit = os.environ.get(SHARED_ENV)
    candidate = Path(explicit) if explicit else Path(__file__).resolve().parents[2] / "shared"
    return candidate if (candidate / "data").is_dir() else None


def require_shared(*parts: str) -> Path:
    """A path inside ../shared, or skip the test saying what is missing."""
    root = shared_dir()
    if root is None:
        pytest.skip(f"../shared test fixtures not found (set {SHARED_ENV} to their folder)")
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared fixture {path} not found")
    return path


@pytest.fixture(scope="session")
def yunet_model() -> Path:
    """The YuNet ONNX test fixture from ../shared/models."""
    return require_shared("models", "face_detection_yunet_2026may.onnx")


@pytest.fixture(scope="session")
def deploy_stack(tmp_path_factory):
    """The docker/ services as local processes (Postgres, MLflow server, Dagster code location,
    webserver, daemon), started once per session for the deployment and browser tests and stopped
    by PID at the end; skipped when PostgreSQL is not installed and cannot be."""
    import deploy_support

    try:
        stack = deploy_support.acquire_stack(tmp_path_factory.mktemp("deployment"))
    except deploy_support.DeploymentUnavailable as reason:
        pytest.skip(f"the deployment stack needs PostgreSQL from Debian packages: {reason}")
    try:
        yield stack
    finally:
        deploy_support.release_stack()


@pytest.fixture(scope="session")
def real_study(tmp_path_factory):
    """The real study of real_study_support.py, run once for every module that reads it."""
    from real_study_support import run_real_study

    return run_real_study(tmp_path_factory.mktemp("real_study"))


def pytest_collection_modifyitems(config, items):
    """Browser tests last (stable order otherwise): they reuse the deployment tests' runs on the
    shared stack instead of training their own."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def asset_runner(instance, resources):
    """run(keys, partition, ops): materialize a selection of the real graph on one instance."""
    from dagster import AssetKey, materialize

    from beauty_pipeline.definitions import defs

    def run(keys, partition=None, ops=None):
        return materialize(list(defs.assets), selection=[AssetKey(k) for k in keys],
                           instance=instance, resources=resources, partition_key=partition,
                           run_config={"ops": ops or {}})
    return run


def materialize_persons(run, instance, location: str, detector: str | None = None) -> list[str]:
    """The ranking, then each listed person's photos and faces, as the sensor and the UI would."""
    ranking = run(["ranking"], ops={"ranking": {"config": {"location": str(location)}}})
    persons = ranking.output_for_node("ranking")["person"].tolist()
    instance.add_dynamic_partitions("person", persons)
    faces_ops = {"celebrity_faces": {"config": {"detector": detector}}} if detector else None
    for person in persons:
        run(["celebrity_photos", "celebrity_faces"], person, faces_ops)
    return persons


def ranking_from_labels(labels, path: Path, list_name: str = "test") -> Path:
    """A ranking CSV of the identities in a celebrity labels.csv (gender M/F), in file order."""
    import pandas as pd

    people = labels.drop_duplicates("identity")
    pd.DataFrame({"name": people["identity"], "rank": range(1, len(people) + 1),
                  "gender": people["gender"].map({"M": "male", "F": "female"}),
                  "list": list_name, "year": 2024}).to_csv(path, index=False)
    return path
