"""Face detection with OpenCV's YuNet: boxes, five landmarks and a score per face."""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from beauty_pipeline.modelfiles import YUNET, ModelFileError, obtain_model_file


@dataclass(frozen=True)
class Face:
    """One detected face in image pixels; landmarks are YuNet's order (see LANDMARKS)."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    landmarks: np.ndarray                   # (5, 2) float32
    score: float

    @property
    def side(self) -> float:
        """Larger side of the box: the face size the min-size rule uses."""
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


# The subject's right eye is on the image's left in a frontal photo.
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "right_mouth", "left_mouth")


def _load_yunet(path, score_threshold: float, nms_threshold: float):
    """YuNet from an ONNX file, probed once: a corrupt or wrong model fails here, by name."""
    how = (f"set {YUNET.option} (or BEAUTY_PIPELINE_YUNET_MODEL) to a valid YuNet ONNX file, or "
           "delete the cached copy so it is downloaded again")
    try:
        net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold,
                                        nms_threshold, 5000)
        net.setInputSize((64, 64))
        _, rows = net.detect(np.zeros((64, 64, 3), np.uint8))
    except cv2.error as error:
        detail = str(error).strip().splitlines()[-1][:120]
        raise ModelFileError(f"{YUNET.name} model {path} cannot be used by OpenCV ({detail}); "
                             f"{how}") from error
    if rows is not None and np.asarray(rows).ndim == 2 and np.asarray(rows).shape[1] != 15:
        raise ModelFileError(f"{YUNET.name} model {path} gives {np.asarray(rows).shape[1]} values "
                             f"per face, not YuNet's 15: a different network; {how}")
    return net


class FaceDetector:
    """YuNet wrapper that handles any image size and small, tightly cropped faces."""

    def __init__(self, model_path: str | os.PathLike | None = None, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, max_side: int = 1280, pad_fraction: float = 0.0):
        path = obtain_model_file(YUNET, local_path=model_path)
        self.score_threshold = score_threshold
        self.max_side = max_side
        self.pad_fraction = pad_fraction
        self._net = _load_yunet(path, score_threshold, nms_threshold)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, largest first."""
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else cv2.cvtColor(
            image, cv2.COLOR_GRAY2BGR)
        height, width = bgr.shape[:2]
        # A grey border lets YuNet see a face that fills the whole frame (aligned crops).
        pad = int(round(self.pad_fraction * max(height, width)))
        framed = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                    value=(127, 127, 127))
        scale = min(1.0, self.max_side / max(framed.shape[:2]))
        if scale < 1.0:
            framed = cv2.resize(framed, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        self._net.setInputSize((framed.shape[1], framed.shape[0]))
        _, rows = self._net.detect(framed)
        faces = []
        for row in rows if rows is not None else []:
            values = row[:14].astype(np.float64) / scale
            x, y, w, h = values[0] - pad, values[1] - pad, values[2], values[3]
            points = values[4:14].reshape(5, 2) - pad
            box = (max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            faces.append(Face(box=box, landmarks=points.astype(np.float32),
                              score=float(row[14])))
        return sorted(faces, key=lambda face: face.area, reverse=True)
