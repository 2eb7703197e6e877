"""Head-pose accuracy on the AFLW2000 subset: yaw / pitch / roll MAE and bias, before vs now.

Also replays the one calibration behind the 3-D face model (NOSE_DROP_MM): a grid search on the
even-numbered rows only, so the odd rows stay a held-out check.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from beauty_pipeline.vision import headpose
from beauty_pipeline.vision.detection import FaceDetector

SHARED = Path(__file__).resolve().parents[2] / "shared"
BEFORE_MODEL = np.array([[-32.0, -35.0, 30.0], [32.0, -35.0, 30.0], [0.0, 0.0, 0.0],
                         [-25.0, 32.0, 27.0], [25.0, 32.0, 27.0]])


def before(landmarks, size):
    """The estimator as of b445b50: optical-axis pose, camera pitch sign, nose as anatomy says."""
    points = np.asarray(landmarks, float).reshape(5, 2)
    height, width = size
    focal = float(max(height, width))
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    depth = focal * 64.0 / max(float(np.linalg.norm(points[1] - points[0])), 1.0)
    centre = points.mean(axis=0)
    tvec = np.array([[(centre[0] - width / 2) * depth / focal],
                     [(centre[1] - height / 2) * depth / focal], [depth]])
    _, rvec, _ = cv2.solvePnP(BEFORE_MODEL, points, camera, None, rvec=np.zeros((3, 1)),
                              tvec=tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    return headpose.rotation_to_angles(cv2.Rodrigues(rvec)[0])


def model_with_nose_drop(drop: float) -> np.ndarray:
    model = BEFORE_MODEL.copy()
    model[[0, 1, 3, 4], 1] -= drop
    return model


def summary(truth: pd.DataFrame, poses: list, rows=slice(None)) -> dict:
    """MAE / bias over |yaw| <= 45, frontal keep rate and profiles kept, as in the test."""
    t = truth.assign(yaw=[p.yaw for p in poses], pitch=[p.pitch for p in poses],
                     roll=[p.roll for p in poses]).iloc[rows]
    moderate = t["yaw_deg"].abs() <= 45
    out = {"n": int(moderate.sum())}
    for angle in ("yaw", "pitch", "roll"):
        error = t.loc[moderate, angle] - t.loc[moderate, f"{angle}_deg"]
        out[f"{angle} MAE"], out[f"{angle} bias"] = error.abs().mean(), error.mean()
    frontal = (t["yaw_deg"].abs() <= 20) & (t["pitch_deg"].abs() <= 20)
    kept = (t["yaw"].abs() <= 20) & (t["pitch"].abs() <= 20)
    out["frontal kept"] = f"{int((frontal & kept).sum())}/{int(frontal.sum())}"
    out["profiles kept"] = int((kept & (t["yaw_deg"].abs() > 45)).sum())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "headpose_aflw2000_subset")
    parser.add_argument("--model", type=Path,
                        default=SHARED / "models" / "face_detection_yunet_2026may.onnx")
    parser.add_argument("--frontal-rates", action="store_true",
                        help="also: share kept by the pose rule on the FairFace / celebrity fixtures")
    args = parser.parse_args()
    truth = pd.read_csv(args.data / "pose.csv")
    detector = FaceDetector(args.model)
    landmarks = []
    for file in truth["file"]:
        image = np.asarray(Image.open(args.data / file).convert("RGB"))
        landmarks.append(detector.detect(image)[0].landmarks)
    size = (450, 450)

    even = slice(0, None, 2)
    search = {drop: summary(truth, [headpose.pose_from_landmarks(lm, size, model_with_nose_drop(
        drop)) for lm in landmarks], even)["pitch MAE"] for drop in np.arange(-4.0, 8.5, 0.5)}
    best = min(search, key=search.get)
    print(f"calibration on the even rows: nose drop {best:g} mm (pitch MAE {search[best]:.2f}); "
          f"the package uses {headpose.NOSE_DROP_MM:g} mm")

    rows = []
    for name, poses in (("before (b445b50)", [before(lm, size) for lm in landmarks]),
                        ("now", [headpose.pose_from_landmarks(lm, size) for lm in landmarks])):
        for part, selection in (("all", slice(None)), ("even (calibration)", even),
                                ("odd (held out)", slice(1, None, 2))):
            rows.append({"estimator": name, "rows": part, **summary(truth, poses, selection)})
    print(pd.DataFrame(rows).round(2).to_markdown(index=False))
    if args.frontal_rates:
        print(frontal_rates(detector))
    return 0


def frontal_rates(detector: FaceDetector) -> str:
    """Share of detected faces the 20/20 pose rule keeps, before vs now, on the real fixtures."""
    lines = ["| photos | faces | kept before | kept now |", "|---|---|---|---|"]
    for name, pattern in (("fairface_margin125 (wide FairFace crops)", "*.jpg"),
                          ("fairface_margin025 val (aligned FairFace)", "val/*.jpg"),
                          ("celebrity_crops_glint (aligned celebrities)", "*/*.png")):
        folder = SHARED / "data" / name.split()[0]
        kept = {"before": 0, "now": 0}
        faces = 0
        for path in sorted(folder.glob(pattern)):
            image = np.asarray(Image.open(path).convert("RGB"))
            found = detector.detect(image)
            if not found:
                continue
            faces += 1
            for label, pose in (("before", before(found[0].landmarks, image.shape[:2])),
                                ("now", headpose.pose_from_landmarks(found[0].landmarks,
                                                                     image.shape[:2]))):
                kept[label] += pose.is_frontal(20, 20)
        lines.append(f"| {name} | {faces} | {kept['before'] / faces:.1%} | "
                     f"{kept['now'] / faces:.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
