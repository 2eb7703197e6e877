"""The verdict rule, branch by branch, on hand-made estimates: `face` needs positive face evidence
in each class and per-class Grad-CAM lifts; a costly control makes its family untestable."""

from __future__ import annotations

from beauty_pipeline.data.families import FAMILIES
from beauty_pipeline.explain.stats import Estimate
from beauty_pipeline.explain.verdict import THRESHOLDS, FaceEvidence, ProbeEffect, decide

GOOD = Estimate(0.9, 0.85, 0.95)
FACE_HOLDS = Estimate(0.88, 0.82, 0.93)
NO_BACKGROUND = Estimate(0.5, 0.45, 0.55)
LIFTS = {"celebrity": 1.6, "ordinary": 1.4}
COLLAPSE = FaceEvidence(Estimate(0.4, 0.3, 0.5), Estimate(0.01, -0.04, 0.06))
EVIDENCE = {"all classes, features removed": COLLAPSE,
            "celebrity, inner face from the other class": COLLAPSE,
            "ordinary, inner face from the other class": COLLAPSE}
CHEAP = Estimate(0.02, -0.02, 0.06)


def probe(family: str, value: float, low: float, high: float, controlled: bool = True,
          cost: Estimate | None = CHEAP):
    return ProbeEffect(family, "profile_swap" if controlled else "blur", controlled,
                       Estimate(value, low, high), flip_rate=max(0.0, value),
                       control_cost=cost if controlled else None)


def clean():
    return [probe(f, 0.0, -0.03, 0.04) for f in FAMILIES]


def face(probes=None, face_only=FACE_HOLDS, background_only=NO_BACKGROUND, lifts=LIFTS,
         evidence=EVIDENCE):
    return decide(GOOD, face_only, background_only, clean() if probes is None else probes, lifts,
                  THRESHOLDS, evidence)


def test_chance_comes_first_even_with_a_flagged_family():
    result = decide(Estimate(0.6, 0.52, 0.68), FACE_HOLDS, NO_BACKGROUND,
                    [probe("background", 0.5, 0.4, 0.6)], LIFTS, THRESHOLDS, EVIDENCE)
    assert result.label == "chance" and result.named == ()


def test_face_with_positive_evidence_in_each_class_and_reasons_say_what_was_tested():
    result = face()
    assert result.label == "face"
    reason = result.reasons[0]
    for family in FAMILIES:
        assert family in reason
    assert "eyes, nose and mouth" in reason and "celebrity" in reason and "ordinary" in reason


def test_no_face_without_face_evidence():
    result = face(evidence=None)
    assert result.label == "inconclusive" and "no face evidence" in result.reasons[0]


def test_weak_face_evidence_in_one_class_is_inconclusive():
    weak = FaceEvidence(Estimate(0.12, 0.02, 0.22), Estimate(0.0, -0.05, 0.05))
    result = face(evidence={**EVIDENCE, "ordinary, inner face from the other class": weak})
    assert result.label == "inconclusive"
    assert result.reasons == (result.reasons[0],) and "ordinary" in result.reasons[0]
    # the control collapsing as much as the features: the person, not the face, decides
    both = FaceEvidence(Estimate(0.4, 0.3, 0.5), Estimate(0.35, 0.25, 0.45))
    assert face(evidence={**EVIDENCE, "all classes, features removed": both}).label == \
        "inconclusive"


def test_a_swap_whose_control_changed_too_few_pixels_proves_nothing():
    """A tight crop leaves little of the person outside the face: a control that changed only
    half the swap's pixels cannot show that the face, not any area, decides."""
    short = FaceEvidence(COLLAPSE.features, COLLAPSE.control, control_area_share=0.5)
    assert not short.holds()
    result = face(evidence={**EVIDENCE, "celebrity, inner face from the other class": short})
    assert result.label == "inconclusive" and "changed only 50% of the test's pixels" in \
        result.reasons[0]
    assert FaceEvidence(COLLAPSE.features, COLLAPSE.control, control_area_share=0.95).holds()


def test_features_must_cost_clearly_more_than_the_equal_area_control():
    """With the paired estimate, a control whose interval reaches past the limit (few identities)
    does not block `face` when the features cost clearly more; a control that costs as much does."""
    wide_control = Estimate(0.02, -0.12, 0.16)
    clear = FaceEvidence(Estimate(0.5, 0.3, 0.7), wide_control, Estimate(0.48, 0.27, 0.68))
    assert not FaceEvidence(clear.features, wide_control).holds()  # unpaired: control unbounded
    assert clear.holds()
    assert face(evidence={k: clear for k in EVIDENCE}).label == "face"
    close = FaceEvidence(Estimate(0.5, 0.3, 0.7), Estimate(0.12, 0.0, 0.24),
                         Estimate(0.38, 0.12, 0.6))
    assert not close.holds()  # beyond the control only 0.12 at the low end: not clearly the face
    costly = FaceEvidence(Estimate(0.5, 0.3, 0.7), Estimate(0.2, 0.1, 0.3), Estimate(0.3, 0.2, 0.4))
    assert not costly.holds()  # the control itself collapses the decision


def test_every_flagged_family_is_named_in_a_fixed_order():
    probes = clean() + [probe("noise", 0.3, 0.2, 0.4), probe("colour", 0.4, 0.3, 0.5),
                        probe("background", 0.3, 0.2, 0.4)]
    result = face(probes)
    assert result.label == "background+colour+noise"
    assert result.named == ("background", "colour", "noise") and len(result.reasons) == 3


def test_background_only_accuracy_names_the_background():
    assert face(background_only=Estimate(0.8, 0.7, 0.9)).label == "background"
    just_over = face(background_only=Estimate(0.7, 0.6, 0.8))
    assert just_over.label == "face"  # its interval is not wholly above 0.65


def test_a_straddling_interval_is_inconclusive():
    limit = THRESHOLDS.controlled_effect
    result = face(clean() + [probe("quality", limit, limit - 0.05, limit + 0.05)])
    assert result.label == "inconclusive" and "straddles" in result.reasons[0]


def test_a_costly_control_makes_its_family_untestable_never_silent():
    costly = Estimate(0.2, 0.12, 0.28)
    result = face([probe(f, 0.0, -0.03, 0.04, cost=costly if f == "geometry" else CHEAP)
                   for f in FAMILIES])
    assert result.label == "inconclusive"
    assert result.reasons == ("geometry untestable: its control alone costs +0.20 [+0.12, +0.28] "
                              "> 0.10",)
    # a named family stays a finding; the untestable one is still reported beside it
    named = face([probe("geometry", 0.5, 0.4, 0.6, cost=costly),
                  probe("colour", 0.4, 0.3, 0.5)])
    assert named.label == "colour" and "geometry untestable" in named.reasons[-1]


def test_matched_probes_are_reported_not_judged():
    assert face(clean() + [probe("quality", 0.3, 0.2, 0.4, controlled=False)]).label == "face"


def test_face_only_that_does_not_hold_is_inconclusive():
    low = face(face_only=Estimate(0.55, 0.45, 0.65))
    assert low.label == "inconclusive" and "face-only" in low.reasons[0]
    assert face(face_only=Estimate(0.7, 0.62, 0.78)).label == "inconclusive"  # -0.20


def test_per_class_lift_cannot_hide_behind_the_other_class():
    result = face(lifts={"celebrity": 1.95, "ordinary": 0.45})
    assert result.label == "inconclusive"
    assert result.reasons == ("Grad-CAM puts too little heat on the face in ordinary (lift 0.45 "
                              "<= 0.8; a uniform map scores 1)",)
    assert face(lifts={"celebrity": 0.95, "ordinary": 1.37}).label == "face"  # the zoo's face model
    assert face(lifts=0.9).label == "inconclusive"  # a single pooled lift is still judged
