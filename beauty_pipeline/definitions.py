"""The code location: every asset, check, resource, sensor and schedule of the study."""

from dagster import Definitions, load_assets_from_modules

from beauty_pipeline.assets import audit, dataset, faces, ingest, models, report, transfer
from beauty_pipeline.automation import ranking_sensor, study_automation
from beauty_pipeline.executors import configured_executor
from beauty_pipeline.resources import (
    DemoDataResource,
    FacePreprocessing,
    ManifestIOManager,
    MlflowTracking,
    PhotoSourceResource,
    StudyStorage,
)

ASSET_MODULES = [ingest, faces, transfer, dataset, models, audit, report]


def build_resources() -> dict:
    """Resources with defaults from the environment (BEAUTY_PIPELINE_HOME and friends)."""
    return {"io_manager": ManifestIOManager(), "storage": StudyStorage(),
            "photo_source": PhotoSourceResource(), "demo_data": DemoDataResource(),
            "mlflow_tracking": MlflowTracking(), "face_stage": FacePreprocessing()}


all_assets = load_assets_from_modules(ASSET_MODULES)

defs = Definitions(assets=all_assets, resources=build_resources(),
                   sensors=[ranking_sensor, study_automation], executor=configured_executor())
