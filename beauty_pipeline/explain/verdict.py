"""One rule, shared by asset checks and report, for "does this model look at the background?"."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ShortcutThresholds:
    """Limits past which a partition is flagged as using the background (WARN, not failure)."""

    face_mass_min: float = 0.5  # less than half the Grad-CAM energy on the face
    bg_gap_max: float = 0.10  # swapping backgrounds costs more than 10 accuracy points
    background_only_max: float = 0.65  # background alone predicts the class well above chance
    accuracy_min: float = 0.6  # below this the model learned neither faces nor backgrounds


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def shortcut_reasons(
    face_mass: float | None,
    bg_gap: float | None,
    acc_background_only: float | None = None,
    thresholds: ShortcutThresholds = ShortcutThresholds(),
) -> list[str]:
    """Human-readable reasons this partition looks at the background; empty when none apply."""
    reasons = []
    if _known(face_mass) and face_mass < thresholds.face_mass_min:
        reasons.append(f"FaceMass {face_mass:.2f} < {thresholds.face_mass_min:.2f}")
    if _known(bg_gap) and bg_gap > thresholds.bg_gap_max:
        reasons.append(f"BG-gap {bg_gap:.2f} > {thresholds.bg_gap_max:.2f}")
    if _known(acc_background_only) and acc_background_only > thresholds.background_only_max:
        reasons.append(f"background-only accuracy {acc_background_only:.2f} > "
                       f"{thresholds.background_only_max:.2f}")
    return reasons


def verdict(
    face_mass: float | None,
    bg_gap: float | None,
    acc_background_only: float | None = None,
    thresholds: ShortcutThresholds = ShortcutThresholds(),
    acc_original: float | None = None,
) -> str:
    """'background', 'face' or 'chance', decided by the counterfactual test sets when they exist.

    Moving people onto other backgrounds is causal evidence; Grad-CAM mass is not (a plain studio
    backdrop has no features, so a background-driven 'celebrity' heatmap still lands on the person).
    FaceMass decides only when no counterfactual accuracies are known; it is always reported, and
    its own asset check warns when it is low.
    """
    if _known(bg_gap):
        if shortcut_reasons(None, bg_gap, acc_background_only, thresholds):
            return "background"
        near_chance = _known(acc_original) and acc_original < thresholds.accuracy_min
        return "chance" if near_chance else "face"
    if _known(face_mass):
        return "background" if face_mass < thresholds.face_mass_min else "face"
    return "unknown"
