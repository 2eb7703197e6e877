"""MLflow tracking: the SQLite store in the data root by default, or a tracking server."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager

import mlflow
from dagster import ConfigurableResource, Failure
from pydantic import Field

from beauty_pipeline.mlflow_store import open_experiment
from beauty_pipeline.settings import data_root, default_mlflow_uri

EXPERIMENT = "beauty-pipeline"
# MLflow's own defaults retry a failing server for minutes (7 retries, factor 2, 120 s timeout);
# the reachability check already ran, so a later fault should end the step in seconds.
FAST_FAIL_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
REPLACED_TAG = "beauty_pipeline/replaces_run"
REASON_TAG = "beauty_pipeline/replacement_reason"
SYSTEM_METRICS_ENV = "BEAUTY_PIPELINE_SYSTEM_METRICS"
SYSTEM_METRICS_INTERVAL_ENV = "BEAUTY_PIPELINE_SYSTEM_METRICS_INTERVAL"
MLFLOW_UI_ENV = "BEAUTY_PIPELINE_MLFLOW_UI"


def _env_on(name: str, default: str = "1") -> bool:
    return os.environ.get(name, default).strip().lower() not in ("0", "false", "no", "off", "")


@contextmanager
def system_metrics(run_id: str, interval_s: float, resumed: bool):
    """MLflow's system metrics (CPU, memory, disk, network; GPU with nvidia-ml-py) for one run.

    MLflow's monitor logs only after a full interval, so a run shorter than one interval would
    have none: the samples taken are then published once when the run's work ends."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s,
                                   resume_logging=resumed)
    first_step = monitor._logging_step
    monitor.start()
    try:
        yield monitor
    finally:
        monitor.finish()
        if monitor._logging_step == first_step:  # nothing published yet
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()



class MlflowTracking(ConfigurableResource):
    """Opens one MLflow run per training partition; checks a server is up before any work."""

    tracking_uri: str = Field(default_factory=lambda: default_mlflow_uri(data_root()),
                              description="sqlite:///... or http(s)://host:port")
    experiment: str = EXPERIMENT
    artifact_location: str = Field(
        default="", description="Where new experiments store artifacts (default: beside the db).")
    system_metrics: bool = Field(default_factory=lambda: _env_on(SYSTEM_METRICS_ENV),
                                 description="Log MLflow system metrics for training runs")
    system_metrics_interval_s: float = Field(
        default_factory=lambda: float(os.environ.get(SYSTEM_METRICS_INTERVAL_ENV, "5")), gt=0)
    ui_url: str = Field(default_factory=lambda: os.environ.get(MLFLOW_UI_ENV, ""),
                        description="MLflow UI address for links (default: the server, or "
                                    "http://127.0.0.1:5000 where README's `mlflow ui` listens)")

    def ui_base(self) -> str:
        """Where a person opens this store's MLflow UI."""
        if self.ui_url:
            return self.ui_url.rstrip("/")
        if self.tracking_uri.startswith(("http://", "https://")):
            return self.tracking_uri.rstrip("/")
        return "http://127.0.0.1:5000"

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """The MLflow UI page of one run."""
        return f"{self.ui_base()}/#/experiments/{experiment_id}/runs/{run_id}"

    def ensure_reachable(self, timeout_s: float = 5.0) -> None:
        """Fail fast, before any work, unless the store answers a real API call."""
        for name, value in FAST_FAIL_ENV.items():
            os.environ.setdefault(name, value)
        if not self.tracking_uri.startswith(("http://", "https://")):
            try:
                self._experiment_id()  # opens (and on first use creates) the store
            except Exception as error:
                raise Failure(description=f"MLflow store {self.tracking_uri} cannot be opened "
                                          f"({type(error).__name__}: {str(error)[:200]}); fix or "
                                          "move it, or set BEAUTY_PIPELINE_MLFLOW_URI. No work "
                                          "was started.") from error
            return
        query = urllib.parse.urlencode({"experiment_name": self.experiment})
        url = f"{self.tracking_uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?{query}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                response.read(1 << 16)
        except urllib.error.HTTPError as error:
            if error.code == 404 and b"RESOURCE_DOES_NOT_EXIST" in error.read(1 << 16):
                return  # the API answered: the experiment is simply not created yet
            raise self._unreachable(f"its API answered HTTP {error.code}") from error
        except (OSError, urllib.error.URLError) as error:
            raise self._unreachable(str(error)) from error

    def _unreachable(self, why: str) -> Failure:
        return Failure(description=f"MLflow tracking server {self.tracking_uri} is not reachable "
                                   f"or not usable ({why}); start or repair it, or set "
                                   "BEAUTY_PIPELINE_MLFLOW_URI. No training was started and no "
                                   "audit work was done.")

    def _experiment_id(self) -> str:
        """The experiment's id, creating the store and experiment once (serialised on SQLite)."""
        return open_experiment(self.tracking_uri, self.experiment, self.artifact_location)

    def _missing_reason(self, run_id: str, experiment_id: str) -> str:
        """Why an existing run id cannot be resumed ('' when it can)."""
        try:
            run = mlflow.MlflowClient().get_run(run_id)
        except mlflow.exceptions.MlflowException as error:
            if "RESOURCE_DOES_NOT_EXIST" in str(error.error_code) or "not found" in str(error):
                return f"run {run_id} no longer exists in {self.tracking_uri}"
            raise
        if run.info.lifecycle_stage == "deleted":
            return f"run {run_id} was deleted"
        if run.info.experiment_id != experiment_id:
            return f"run {run_id} belongs to a moved data root's experiment"
        return ""

    @contextmanager
    def run(self, name: str, tags: dict[str, str], run_id: str | None = None,
            log_system_metrics: bool = False):
        """Start (or resume, given run_id) the partition's run; ends it FAILED on an exception.

        A run id that no longer exists (deleted, or a store rebuilt) gets a new run, tagged with
        the id it replaces and why, instead of failing the partition for ever."""
        experiment_id = self._experiment_id()
        if run_id and (reason := self._missing_reason(run_id, experiment_id)):
            tags = {**tags, REPLACED_TAG: run_id, REASON_TAG: reason}
            name, run_id = name or f"replaces {run_id[:8]}", None
        with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id,
                              run_name=None if run_id else name, tags=tags,
                              log_system_metrics=False) as active:
            if log_system_metrics and self.system_metrics:
                with system_metrics(active.info.run_id, self.system_metrics_interval_s,
                                    resumed=run_id is not None):
                    yield active
            else:
                yield active

