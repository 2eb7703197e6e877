"""The face stage's settings, one resource so both classes get the same preprocessing."""

import os

from dagster import ConfigurableResource
from pydantic import Field

YUNET_ENV = "BEAUTY_PIPELINE_YUNET_MODEL"


class FacePreprocessing(ConfigurableResource):
    """One face stage for both classes: detector, crop margin and size, frontal filter, dedup."""

    detector_model_path: str = Field(default_factory=lambda: os.environ.get(YUNET_ENV, ""),
                                     description="Local YuNet ONNX (else downloaded, sha256-checked)")
    margin: float = 0.25
    crop_size: int = 300
    min_face_px: int = 80
    max_yaw: float = 20.0
    max_pitch: float = 20.0
    max_roll: float = 45.0
    dedup_threshold: int = 4  # pHash bits; 6 already matched two different people's crops
    pose_backend: str = "pnp"
    hopenet_weights: str = ""
    workers: int = 0

    def face_config(self, preprocessing: str = "uniform"):
        """The domain FaceConfig; 'study' leaves FairFace's aligned crops as they are."""
        from beauty_pipeline.vision.faces import FaceConfig

        return FaceConfig(margin=self.margin, crop_size=self.crop_size,
                          min_face_px=self.min_face_px, max_yaw=self.max_yaw,
                          max_pitch=self.max_pitch, max_roll=self.max_roll,
                          dedup_threshold=self.dedup_threshold,
                          preprocessing=preprocessing, pose_backend=self.pose_backend,
                          hopenet_weights=self.hopenet_weights or None,
                          detector_model_path=self.detector_model_path or None,
                          workers=self.workers)
