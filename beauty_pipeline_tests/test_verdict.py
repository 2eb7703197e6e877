"""The verdict rule, branch by branch, on hand-made estimates."""

from __future__ import annotations

from beauty_pipeline.explain.stats import Estimate
from beauty_pipeline.explain.verdict import THRESHOLDS, ProbeEffect, decide

GOOD = Estimate(0.9, 0.85, 0.95)
FACE_HOLDS = Estimate(0.88, 0.82, 0.93)
NO_BACKGROUND = Estimate(0.5, 0.45, 0.55)


def probe(family: str, value: float, low: float, high: float, controlled: bool = True):
    return ProbeEffect(family, "profile_swap" if controlled else "blur", controlled,
                       Estimate(value, low, high), flip_rate=max(0.0, value))


def clean():
    return [probe(f, 0.0, -0.03, 0.04) for f in ("background", "quality", "geometry", "colour")]


def test_chance_comes_first_even_with_a_flagged_family():
    result = decide(Estimate(0.6, 0.52, 0.68), FACE_HOLDS, NO_BACKGROUND,
                    [probe("background", 0.5, 0.4, 0.6)])
    assert result.label == "chance" and result.named == ()


def test_face_when_nothing_is_flagged_and_the_face_holds():
    result = decide(GOOD, FACE_HOLDS, NO_BACKGROUND, clean(), face_mass_lift=1.6)
    assert result.label == "face"


def test_every_flagged_family_is_named_in_a_fixed_order():
    probes = clean() + [probe("colour", 0.4, 0.3, 0.5), probe("background", 0.3, 0.2, 0.4)]
    result = decide(GOOD, FACE_HOLDS, NO_BACKGROUND, probes)
    assert result.label == "background+colour" and result.named == ("background", "colour")
    assert len(result.reasons) == 2


def test_background_only_accuracy_names_the_background():
    result = decide(GOOD, FACE_HOLDS, Estimate(0.8, 0.7, 0.9), clean())
    assert result.label == "background"
    just_over = decide(GOOD, FACE_HOLDS, Estimate(0.7, 0.6, 0.8), clean(), face_mass_lift=2.0)
    assert just_over.label == "face"  # its interval is not wholly above 0.65


def test_a_straddling_interval_is_inconclusive():
    limit = THRESHOLDS.controlled_effect
    result = decide(GOOD, FACE_HOLDS, NO_BACKGROUND,
                    clean() + [probe("quality", limit, limit - 0.05, limit + 0.05)])
    assert result.label == "inconclusive" and "straddles" in result.reasons[0]


def test_matched_probes_are_reported_not_judged():
    result = decide(GOOD, FACE_HOLDS, NO_BACKGROUND,
                    clean() + [probe("quality", 0.3, 0.2, 0.4, controlled=False)], 1.5)
    assert result.label == "face"


def test_face_only_that_does_not_hold_is_inconclusive():
    low = decide(GOOD, Estimate(0.55, 0.45, 0.65), NO_BACKGROUND, clean())
    assert low.label == "inconclusive" and "face-only" in low.reasons[0]
    dropped = decide(GOOD, Estimate(0.7, 0.62, 0.78), NO_BACKGROUND, clean())  # -0.20
    assert dropped.label == "inconclusive"


def test_gradcam_must_agree_before_face_is_said():
    result = decide(GOOD, FACE_HOLDS, NO_BACKGROUND, clean(), face_mass_lift=0.9)
    assert result.label == "inconclusive" and "Grad-CAM" in result.reasons[0]
