"""Open MLflow's experiment safely: SQLite creation serialised, a moved data root recognised."""

from __future__ import annotations

from pathlib import Path

import mlflow

from beauty_pipeline.storage import file_lock


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// tracking URI, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def open_experiment(tracking_uri: str, experiment: str, artifact_location: str = "") -> str:
    """The experiment's id, creating store and experiment on first use.

    Several processes opening a fresh SQLite store at once race on its schema migration, so the
    first open takes a file lock beside the database."""
    db = sqlite_path(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    if db is None:
        return _find_or_create(experiment, artifact_location or None, moved_check=False)
    db.parent.mkdir(parents=True, exist_ok=True)
    location = artifact_location or (db.resolve().parent / "mlartifacts").as_uri()
    with file_lock(db):
        return _find_or_create(experiment, location, moved_check=not artifact_location)


def _find_or_create(experiment: str, location: str | None, moved_check: bool) -> str:
    found = mlflow.get_experiment_by_name(experiment)
    if found and moved_check and found.artifact_location != location:
        # The data root moved: keep the old runs under a renamed experiment and write new
        # artifacts beside the store where it is now, never under the old location.
        mlflow.MlflowClient().rename_experiment(
            found.experiment_id, f"{experiment} (artifacts at {found.artifact_location})")
        found = None
    if found:
        return found.experiment_id
    return mlflow.create_experiment(experiment, artifact_location=location)
