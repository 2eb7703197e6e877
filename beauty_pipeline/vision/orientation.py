"""Upright faces only: roll from the eye line, and eyes above nose above mouth in the face's frame.

Head-pose solvers started from a frontal guess can report roll near 0 for an upside-down face; the
five landmarks cannot: a 180-degree face puts the subject's right eye on the image's right."""

from __future__ import annotations

import math

import numpy as np

DEFAULT_MAX_ROLL = 25.0


def landmark_roll(landmarks: np.ndarray) -> float:
    """In-plane rotation in degrees, from the subject's right eye to the left eye (0 = upright)."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    dx, dy = points[1] - points[0]
    return float(math.degrees(math.atan2(dy, dx)))


def orientation_problem(landmarks: np.ndarray, max_roll: float = DEFAULT_MAX_ROLL) -> str:
    """Why a face is not upright ('' when it is): too much roll, or landmarks out of order."""
    roll = landmark_roll(landmarks)
    if not math.isfinite(roll):
        return "roll unknown: landmarks are not finite"
    if abs(roll) > max_roll:
        return (f"roll {roll:.0f} degrees (limit {max_roll:g}): the face is "
                f"{'upside down' if abs(roll) > 135 else 'sideways'}")
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    angle = math.radians(-roll)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    upright = (points - points.mean(axis=0)) @ rotation.T
    eyes, nose, mouth = upright[:2, 1].mean(), upright[2, 1], upright[3:, 1].mean()
    if not eyes < nose < mouth:
        return "landmarks out of order (eyes not above nose above mouth): upside down or misdetected"
    return ""


def turned_scores(detector, image: np.ndarray, box, size: int = 160) -> list[float]:
    """Detector confidence for the face's crop as is and turned by 90, 180 and 270 degrees."""
    from beauty_pipeline.vision.crop import square_crop

    crop, _ = square_crop(image, box, margin=0.5, size=size)
    scores = []
    for turns in range(4):
        faces = detector.detect(np.ascontiguousarray(np.rot90(crop, turns)))
        centred = [f.score for f in faces if abs((f.box[0] + f.box[2]) / 2 - size / 2) < size / 4
                   and abs((f.box[1] + f.box[3]) / 2 - size / 2) < size / 4]
        scores.append(max(centred, default=0.0))
    return scores


def upright_problem(detector, image: np.ndarray, face, max_roll: float = DEFAULT_MAX_ROLL,
                    tolerance: float = 0.02) -> str:
    """'' for an upright face; else why not (eye-line roll, or it reads better turned round).

    YuNet finds many upside-down faces but places their landmarks as if upright, so the landmark
    roll alone misses them; an upright face is the orientation the detector is most sure of."""
    if problem := orientation_problem(face.landmarks, max_roll):
        return problem
    scores = turned_scores(detector, image, face.box)
    best = int(np.argmax(scores))
    if best and scores[best] > scores[0] + tolerance:
        how = "upside down" if best == 2 else "sideways"
        return (f"face is {how}: detector score {scores[best]:.2f} when turned {best * 90} "
                f"degrees vs {scores[0]:.2f} as is")
    return ""
