"""beauty-pipeline: a rerunnable, auditable study of what face-ranking classifiers really look at."""

import os

__version__ = "0.1.0"

# Offline and air-gapped deployments send nothing: MLflow's usage telemetry is off, as Dagster's is
# (dagster.yaml). BEAUTY_PIPELINE_MLFLOW_TELEMETRY=1 leaves MLflow's own setting alone.
if os.environ.get("BEAUTY_PIPELINE_MLFLOW_TELEMETRY", "").strip().lower() not in ("1", "true"):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
