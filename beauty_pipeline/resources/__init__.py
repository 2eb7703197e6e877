"""Dagster resources: storage under the data root, MLflow tracking, photo sources, demo data."""

from beauty_pipeline.resources.demo_data import DemoDataResource
from beauty_pipeline.resources.face_stage import FacePreprocessing
from beauty_pipeline.resources.io import ManifestIOManager
from beauty_pipeline.resources.photos import PhotoSourceResource
from beauty_pipeline.resources.storage import StudyStorage
from beauty_pipeline.resources.tracking import MlflowTracking

__all__ = ["DemoDataResource", "FacePreprocessing", "ManifestIOManager", "MlflowTracking",
           "PhotoSourceResource", "StudyStorage"]
