"""MLflow tracking: the SQLite store in the data root by default, or a tracking server."""

from __future__ import annotations

import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import mlflow
from dagster import ConfigurableResource, Failure
from pydantic import Field

from beauty_pipeline.settings import data_root, default_mlflow_uri

EXPERIMENT = "beauty-pipeline"


class MlflowTracking(ConfigurableResource):
    """Opens one MLflow run per training partition; checks a server is up before any work."""

    tracking_uri: str = Field(default_factory=lambda: default_mlflow_uri(data_root()),
                              description="sqlite:///... or http(s)://host:port")
    experiment: str = EXPERIMENT
    artifact_location: str = Field(
        default="", description="Where new experiments store artifacts (default: beside the db).")

    def ensure_reachable(self, timeout_s: float = 5.0) -> None:
        """Fail fast, before training, when a tracking server does not answer."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return
        url = self.tracking_uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                if response.status != 200:
                    raise OSError(f"HTTP {response.status}")
        except (OSError, urllib.error.URLError) as error:
            raise Failure(
                description=f"MLflow tracking server {self.tracking_uri} is not reachable "
                            f"({error}); start it or set BEAUTY_PIPELINE_MLFLOW_URI. "
                            "No training was started.") from error

    def _experiment_id(self) -> str:
        mlflow.set_tracking_uri(self.tracking_uri)
        found = mlflow.get_experiment_by_name(self.experiment)
        if found:
            return found.experiment_id
        location = self.artifact_location or None
        if location is None and self.tracking_uri.startswith("sqlite:///"):
            db_path = self.tracking_uri.removeprefix("sqlite:///")
            location = (Path(db_path).resolve().parent / "mlartifacts").as_uri()
        return mlflow.create_experiment(self.experiment, artifact_location=location)

    @contextmanager
    def run(self, name: str, tags: dict[str, str], run_id: str | None = None):
        """Start (or resume, given run_id) the partition's run; ends it FAILED on an exception."""
        experiment_id = self._experiment_id()
        with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id,
                              run_name=None if run_id else name, tags=tags) as active:
            yield active
