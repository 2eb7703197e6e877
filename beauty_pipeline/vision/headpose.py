"""Head pose (yaw, pitch, roll in degrees) for the frontal filter: PnP offline, HopeNet optional."""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

# A generic adult face in millimetres, from textbook anthropometry: pupils 64 mm apart and 30 mm
# behind the nose tip; mouth corners 50 mm apart and 27 mm behind it. Axes follow the camera: x
# right, y down, z away. Order = YuNet's landmarks: right eye, left eye, nose tip, right mouth
# corner, left mouth corner. Vertically, YuNet's "nose tip" is not the anatomical pronasale but a
# point 2.5 mm lower (37.5 mm below the pupils, 29.5 mm above the mouth corners; anthropometry alone
# gave 35 / 32): the one constant calibrated (least pitch MAE, 0.5 mm grid), on the even-numbered
# half of the AFLW2000 subset in ../shared, the odd half held out (bench/bench_headpose.py).
NOSE_DROP_MM = 2.5
GENERIC_FACE_MM = np.array([
    [-32.0, -35.0 - NOSE_DROP_MM, 30.0],
    [32.0, -35.0 - NOSE_DROP_MM, 30.0],
    [0.0, 0.0, 0.0],
    [-25.0, 32.0 - NOSE_DROP_MM, 27.0],
    [25.0, 32.0 - NOSE_DROP_MM, 27.0],
])


@dataclass(frozen=True)
class HeadPose:
    """Angles in degrees, AFLW2000 / HopeNet signs: yaw > 0 turns the face towards the image's
    left, pitch > 0 tilts it up (chin raised), roll > 0 tilts it clockwise in the image."""

    yaw: float
    pitch: float
    roll: float

    def is_frontal(self, max_yaw: float, max_pitch: float) -> bool:
        return abs(self.yaw) <= max_yaw and abs(self.pitch) <= max_pitch


def rotation_to_angles(rotation: np.ndarray) -> HeadPose:
    """Split R = Rx(pitch) @ Ry(yaw) @ Rz(roll) into degrees."""
    yaw = np.arcsin(np.clip(rotation[0, 2], -1.0, 1.0))
    pitch = np.arctan2(-rotation[1, 2], rotation[2, 2])
    roll = np.arctan2(-rotation[0, 1], rotation[0, 0])
    return HeadPose(*(float(np.degrees(a)) for a in (yaw, pitch, roll)))


def pose_from_landmarks(landmarks: np.ndarray, image_size: tuple[int, int],
                        model: np.ndarray = GENERIC_FACE_MM) -> HeadPose:
    """Head pose from five 2-D landmarks by PnP against a generic face, relative to the line of
    sight: a face that looks into the lens counts as frontal wherever it sits in the frame."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    height, width = image_size
    focal = float(max(height, width))  # a ~53 degree field of view: typical for photos
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    eye_px = max(float(np.linalg.norm(points[1] - points[0])), 1.0)
    depth = focal * float(np.linalg.norm(model[1] - model[0])) / eye_px
    centre = points.mean(axis=0)
    tvec = np.array([[(centre[0] - width / 2) * depth / focal],
                     [(centre[1] - height / 2) * depth / focal], [depth]])
    ok, rvec, tvec = cv2.solvePnP(model, points, camera, None, rvec=np.zeros((3, 1)), tvec=tvec,
                                  useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return HeadPose(float("nan"), float("nan"), float("nan"))
    rotation, _ = cv2.Rodrigues(rvec)
    face_centre = rotation @ model.mean(axis=0).reshape(3, 1) + tvec  # not the nose tip: it
    camera_pose = rotation_to_angles(line_of_sight(face_centre).T @ rotation)  # swings with yaw
    # Camera axes have y down, so a positive rotation about x lowers the chin: AFLW's pitch < 0.
    return HeadPose(camera_pose.yaw, -camera_pose.pitch, camera_pose.roll)


def line_of_sight(tvec: np.ndarray) -> np.ndarray:
    """The rotation that turns the optical axis onto the ray to the face (identity at the centre),
    so an off-centre face is judged by how it faces the lens, not the optical axis."""
    ray = np.asarray(tvec, dtype=np.float64).ravel()
    ray = ray / np.linalg.norm(ray)
    axis = np.cross([0.0, 0.0, 1.0], ray)
    sine = float(np.linalg.norm(axis))
    if sine < 1e-12:
        return np.eye(3)
    rotation, _ = cv2.Rodrigues(axis / sine * np.arctan2(sine, ray[2]))
    return rotation


class HopeNetPose:
    """HopeNet (ResNet-50, three 66-bin heads) for users who have its weights file."""

    BINS = 66
    INPUT = 224

    def __init__(self, weights_path: str | os.PathLike, device: str = "cpu"):
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.model = build_hopenet()
        from beauty_pipeline.modelfiles import ModelFileError, hopenet_state

        try:
            self.model.load_state_dict(hopenet_state(weights_path), strict=True)
        except RuntimeError as error:
            raise ModelFileError(f"HopeNet weights {weights_path} do not fit HopeNet's ResNet-50 "
                                 f"({str(error).splitlines()[0][:120]}); set hopenet_weights to "
                                 "the hopenet_robust_alpha1.pkl state dict") from error
        self.model.eval().to(self.device)
        self._mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self._std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        self._idx = torch.arange(self.BINS, dtype=torch.float32)

    def preprocess(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """HopeNet's input: the face box widened by half its size each side, 224x224 RGB."""
        from beauty_pipeline.vision.crop import square_crop

        crop, _ = square_crop(image, box, margin=0.5, size=self.INPUT)
        return crop

    def predict(self, crops: list[np.ndarray]) -> list[HeadPose]:
        """Angles for a batch of 224x224 RGB face crops."""
        torch = self._torch
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
        batch = ((batch - self._mean) / self._std).to(self.device)
        with torch.inference_mode():
            heads = self.model(batch)
        angles = [(torch.softmax(h.float().cpu(), dim=1) * self._idx).sum(1) * 3 - 99
                  for h in heads]
        return [HeadPose(float(y), float(p), float(r)) for y, p, r in zip(*angles, strict=True)]


def build_hopenet():
    """HopeNet's network: torchvision ResNet-50 trunk, fc_yaw / fc_pitch / fc_roll heads."""
    import torch
    from torchvision.models import resnet50

    class HopeNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            trunk = resnet50(weights=None)
            for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                         "layer4", "avgpool"):
                setattr(self, name, getattr(trunk, name))
            features = trunk.fc.in_features
            self.fc_yaw = torch.nn.Linear(features, HopeNetPose.BINS)
            self.fc_pitch = torch.nn.Linear(features, HopeNetPose.BINS)
            self.fc_roll = torch.nn.Linear(features, HopeNetPose.BINS)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            x = torch.flatten(self.avgpool(x), 1)
            return self.fc_yaw(x), self.fc_pitch(x), self.fc_roll(x)

    return HopeNet()
