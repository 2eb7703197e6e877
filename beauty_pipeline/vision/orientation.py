"""Is a detected face upright? Sideways or upside-down photos must not pass as frontal."""

from __future__ import annotations

import math

import numpy as np

from beauty_pipeline.vision.crop import square_crop

# YuNet keeps answering with an upright landmark template on a face turned 90 or 180 degrees
# (same order, small roll, score 0.75-0.9), so landmarks alone cannot tell. What does tell: it is
# most confident in the upright orientation (on 179 upright FairFace faces, 98.9% scored highest
# unturned; of the turned ones, 1% at 90 degrees and none at 180).
DEFAULT_MAX_ROLL = 45.0  # in-plane tilt from the eye line beyond which a face is turned, not tilted
QUARTER_TURNS = (1, 2, 3)
PROBE_SIZE = 192      # the face region is resized to this square before the four detections
PROBE_MARGIN = 0.5    # context around the face box, as a fraction of its side
TIE = 0.02            # a turned version must score this much higher: ties stay upright (one of
                      # 540 wide FairFace photos tied at 0.89 / 0.89; turned faces lose by 0.1-0.2)


def landmarks_upright(landmarks: np.ndarray) -> bool:
    """Eyes above the nose above the mouth, the subject's right eye and mouth corner on the
    image's left: YuNet's order (right eye, left eye, nose, right mouth, left mouth)."""
    right_eye, left_eye, nose, right_mouth, left_mouth = np.asarray(landmarks, float).reshape(5, 2)
    eyes_y = (right_eye[1] + left_eye[1]) / 2
    mouth_y = (right_mouth[1] + left_mouth[1]) / 2
    return bool(eyes_y < nose[1] < mouth_y and right_eye[0] < left_eye[0]
                and right_mouth[0] < left_mouth[0])


def landmark_roll(landmarks: np.ndarray) -> float:
    """In-plane rotation in degrees, from the subject's right eye to the left eye (0 = upright)."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    dx, dy = points[1] - points[0]
    return float(math.degrees(math.atan2(dy, dx)))


def orientation_problem(landmarks: np.ndarray, max_roll: float = DEFAULT_MAX_ROLL) -> str:
    """Why the landmarks are not an upright face ('' when they are): roll, or their order in the
    face's own frame (eyes above nose above mouth)."""
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


def quarter_turn_scores(image: np.ndarray, box, detector) -> list[float]:
    """The detector's best score for a face at the centre of the face region, turned by 0, 90,
    180 and 270 degrees (counter-clockwise)."""
    crop, _ = square_crop(image, box, PROBE_MARGIN, PROBE_SIZE)
    centre = PROBE_SIZE / 2
    scores = []
    for turns in (0, *QUARTER_TURNS):
        turned = np.ascontiguousarray(np.rot90(crop, turns))
        found = [face.score for face in detector.detect(turned)
                 if face.box[0] < centre < face.box[2] and face.box[1] < centre < face.box[3]]
        scores.append(max(found, default=0.0))
    return scores


def is_upright(image: np.ndarray, face, roll: float, detector,
               max_roll: float = DEFAULT_MAX_ROLL) -> tuple[bool, str]:
    """(upright?, why not): roll within max_roll, landmarks in upright order, and the detector
    most confident with the face as it is rather than turned by a quarter or half turn."""
    if not np.isfinite(roll) or abs(roll) > max_roll:
        return False, f"roll {roll:.1f} beyond {max_roll:g}"
    if not landmarks_upright(face.landmarks):
        return False, "landmarks not in upright order"
    scores = quarter_turn_scores(image, face.box, detector)
    best_turn = int(np.argmax(scores))
    if best_turn != 0 and scores[best_turn] > scores[0] + TIE:
        how = "upside down" if best_turn == 2 else "sideways"
        return False, (f"face is {how}: detector prefers it turned {90 * best_turn} degrees "
                       f"(score {scores[best_turn]:.2f} vs {scores[0]:.2f} as is)")
    return True, ""


def upright_problem(detector, image: np.ndarray, face, max_roll: float = DEFAULT_MAX_ROLL) -> str:
    """'' for an upright face, else why not: the landmark check, then the quarter-turn check."""
    if problem := orientation_problem(face.landmarks, max_roll):
        return problem
    return is_upright(image, face, landmark_roll(face.landmarks), detector, max_roll)[1]
