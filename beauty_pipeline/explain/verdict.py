"""The verdict: one rule over controlled effects with 95% intervals, thresholds in one place.

Order (DESIGN.md §2):
1. `chance` when original accuracy is not clearly above 50% (interval's low end <= chance_ci_low).
2. Every family with a controlled probe (effect = acc(control) - acc(probe)) whose interval lies
   wholly above the threshold is named, e.g. `background`, `background+quality`; so is the
   background when background-only accuracy clearly exceeds its limit. Matched transforms have no
   class control and are reported beside the verdict, not used by it.
3. `inconclusive` when a controlled probe's interval straddles the threshold, when face-only
   accuracy does not hold, or when Grad-CAM puts no more heat on the face than a uniform map.
4. `face` otherwise. It means "no tested shortcut found and the face alone carries the decision",
   for the families tested, not proof that nothing else is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from beauty_pipeline.data.families import FAMILIES
from beauty_pipeline.explain.stats import Estimate

VERDICTS = ("chance", "face", "inconclusive")  # or the '+'-joined names of flagged families


@dataclass(frozen=True)
class Thresholds:
    """Every limit the verdict and the asset checks use (effects are accuracy points, 0-1)."""

    chance_ci_low: float = 0.55  # accuracy's interval must clear this to be above chance
    controlled_effect: float = 0.10  # probe vs its control (BG-gap, profile swaps)
    background_only: float = 0.65  # background alone predicting the class this well
    face_only_drop: float = 0.15  # face-only may lose at most this much and still "hold"
    face_mass_lift: float = 1.0  # Grad-CAM heat on the face vs a uniform map's share
    # source transfer (explain/transfer.py): in-source accuracy this high, while accuracy on the
    # same class from another source falls to chance (interval's low end at or below
    # transfer_chance, and at least transfer_drop below in-source), names `source`
    transfer_in_source: float = 0.80
    transfer_chance: float = 0.60
    transfer_drop: float = 0.20


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class ProbeEffect:
    """One probe of one family: accuracy lost against its control, and predictions flipped."""

    family: str
    probe: str
    controlled: bool
    effect: Estimate
    flip_rate: float

    def threshold(self, thresholds: Thresholds = THRESHOLDS) -> float | None:
        """The limit a controlled probe is judged by; matched probes are reported only."""
        return thresholds.controlled_effect if self.controlled else None


@dataclass(frozen=True)
class Verdict:
    label: str
    named: tuple[str, ...]
    reasons: tuple[str, ...] = field(default=())


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def clears(estimate: Estimate, threshold: float) -> bool:
    """The whole interval lies above the threshold."""
    return _finite(estimate.low) and estimate.low > threshold


def straddles(estimate: Estimate, threshold: float) -> bool:
    return _finite(estimate.low, estimate.high) and estimate.low <= threshold < estimate.high


def decide(acc_original: Estimate, acc_face_only: Estimate | None, acc_background_only: Estimate | None,
           probes: list[ProbeEffect], face_mass_lift: float | None = None,
           thresholds: Thresholds = THRESHOLDS) -> Verdict:
    """The verdict for one model from its estimates (see the module docstring for the rule)."""
    if not clears(acc_original, thresholds.chance_ci_low):
        return Verdict("chance", (), (f"accuracy {acc_original.value:.2f} "
                                      f"[{acc_original.low:.2f}, {acc_original.high:.2f}] not "
                                      f"clearly above chance (low end <= {thresholds.chance_ci_low})",))
    named, reasons, unsure = [], [], []
    for probe in probes:
        limit = probe.threshold(thresholds)
        if limit is None:
            continue
        text = (f"{probe.family}/{probe.probe}: {probe.effect.value:+.2f} "
                f"[{probe.effect.low:+.2f}, {probe.effect.high:+.2f}] vs {limit:.2f}")
        if clears(probe.effect, limit):
            if probe.family not in named:
                named.append(probe.family)
            reasons.append(text)
        elif straddles(probe.effect, limit):
            unsure.append(text)
    if acc_background_only is not None and clears(acc_background_only, thresholds.background_only):
        if "background" not in named:
            named.append("background")
        reasons.append(f"background-only accuracy {acc_background_only.value:.2f} "
                       f"[{acc_background_only.low:.2f}, {acc_background_only.high:.2f}] > "
                       f"{thresholds.background_only}")
    if named:
        ordered = tuple(f for f in FAMILIES if f in named)
        return Verdict("+".join(ordered), ordered, tuple(reasons))
    if unsure:
        return Verdict("inconclusive", (), tuple(f"interval straddles: {u}" for u in unsure))
    if acc_face_only is not None:
        drop = acc_original.value - acc_face_only.value
        if not clears(acc_face_only, thresholds.chance_ci_low) or drop > thresholds.face_only_drop:
            return Verdict("inconclusive", (), (
                f"face-only accuracy {acc_face_only.value:.2f} [{acc_face_only.low:.2f}, "
                f"{acc_face_only.high:.2f}] does not hold (drop {drop:+.2f}, limit "
                f"{thresholds.face_only_drop}): the model needs something outside the person "
                "that no tested family names",))
    if _finite(face_mass_lift) and face_mass_lift <= thresholds.face_mass_lift:
        return Verdict("inconclusive", (), (
            f"Grad-CAM puts no more heat on the face than a uniform map (lift "
            f"{face_mass_lift:.2f} <= {thresholds.face_mass_lift})",))
    return Verdict("face", (), ("no tested family changes the predictions; face-only accuracy "
                                "holds",))
