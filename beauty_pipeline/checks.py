"""Asset checks: balance, leakage, above-chance accuracy, face attention, shortcuts (WARN)."""

import math

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec

from beauty_pipeline.data.demographics import ATTRIBUTES, MAX_MIX_GAP_POINTS, mix_gap_points
from beauty_pipeline.data.parity import MAX_GAP_POINTS, frontal_gap_points, padded_gap_points
from beauty_pipeline.data.quality import (
    MAX_P,
    MIN_RELATIVE_GAP,
    MIN_SMD,
    describe_parity,
    flat_metadata,
)
from beauty_pipeline.explain.verdict import THRESHOLDS

MIN_TEST_ACCURACY = 0.6


def spec(name: str, asset: str, description: str) -> AssetCheckSpec:
    return AssetCheckSpec(name, asset=asset, description=description)


DATASET_CHECKS = [
    spec("class_balance", "face_dataset", "Both classes have the same count in train and in test."),
    spec("no_identity_leakage", "face_dataset",
         "No person and no near-duplicate group is on both sides of the split."),
    spec("frontal_filter_parity", "face_dataset",
         f"The frontal filter drops celebrity and ordinary faces at rates within "
         f"{MAX_GAP_POINTS:g} points of each other."),
    spec("padding_parity", "face_dataset",
         f"The shares of crops padded past the photo's border differ by at most "
         f"{MAX_GAP_POINTS:g} points between the classes."),
    spec("quality_parity", "face_dataset",
         f"No source quality cue (face resolution, JPEG quality, sharpness, face share) separates "
         f"the classes: |SMD| > {MIN_SMD:g}, means {MIN_RELATIVE_GAP:.0%} apart and person-level "
         f"Mann-Whitney p < {MAX_P:g}."),
    spec("attribute_mix_parity", "face_dataset",
         f"The classes' gender, age-group and race mixes differ by at most {MAX_MIX_GAP_POINTS:g} "
         "points (total variation distance) in the whole set and in every split; an attribute "
         "unknown for a class is not compared, and the description names it."),
]
CLASSIFIER_CHECKS = [spec("above_chance", "classifier",
                          f"Final test accuracy is at least {MIN_TEST_ACCURACY:.0%} (chance is 50%).")]
GRADCAM_CHECKS = [spec("face_attention", "gradcam",
                       f"FaceMass lift above {THRESHOLDS.face_mass_lift}: more contrastive Grad-CAM "
                       "heat on the face than a uniform map would put there.")]
AUDIT_CHECKS = [
    spec("background_shortcut", "shortcut_audit",
         f"BG-gap (mixed-same - mixed-other) interval not wholly above "
         f"{THRESHOLDS.controlled_effect} and background-only accuracy not wholly above "
         f"{THRESHOLDS.background_only}."),
    spec("shortcut_verdict", "shortcut_audit",
         "Verdict 'face': no tested shortcut family named, face-only accuracy holds."),
]

def class_balance(study: pd.DataFrame) -> AssetCheckResult:
    counts = study.groupby(["split", "looks"]).size().unstack(fill_value=0)
    balanced = bool((counts.nunique(axis=1) == 1).all()) and counts.shape[1] == 2
    return AssetCheckResult(check_name="class_balance", passed=balanced,
                            metadata={"counts": {f"{s}/{c}": int(counts.at[s, c]) for s in counts.index
                                                 for c in counts.columns}})


def no_identity_leakage(study: pd.DataFrame) -> AssetCheckResult:
    both = sorted(p for p, n in study.groupby("person")["split"].nunique().items() if n > 1)
    groups = study.groupby("leak_group")["split"].nunique() if "leak_group" in study else pd.Series()
    return AssetCheckResult(check_name="no_identity_leakage", passed=not both and not (groups > 1).any(),
                            metadata={"persons_on_both_sides": both[:20],
                                      "duplicate_groups_on_both_sides": int((groups > 1).sum())})


def _class_parity(check_name: str, gap: float | None, per_class: dict[str, dict], missing: str,
                  measured: str, risk: str) -> AssetCheckResult:
    """WARN when a per-class share differs between the classes by more than MAX_GAP_POINTS."""
    ok = gap is None or gap <= MAX_GAP_POINTS
    message = missing if gap is None else \
        f"{measured} differ by {gap:.1f} points" + ("" if ok else f": {risk}")
    return AssetCheckResult(check_name=check_name, passed=ok, severity=AssetCheckSeverity.WARN,
                            description=message,
                            metadata={"gap_points": gap, "max_gap_points": MAX_GAP_POINTS,
                                      **{f"{name}_{k}": v for name, r in per_class.items()
                                         for k, v in r.items()}})


def frontal_filter_parity(rates: dict[str, dict]) -> AssetCheckResult:
    return _class_parity("frontal_filter_parity", frontal_gap_points(rates), rates,
                         "a class was not judged by the frontal filter", "drop rates",
                         "the filter selects photos by camera angle differently per class")


def padding_parity(shares: dict[str, dict]) -> AssetCheckResult:
    return _class_parity("padding_parity", padded_gap_points(shares), shares,
                         "a class has no crops made here", "padded shares",
                         "padded borders could tell the classes apart")


def quality_parity(table: dict[str, dict], matched: bool) -> AssetCheckResult:
    """WARN when a quality cue of what trains tells the classes apart (data/quality.py)."""
    separating = [cue for cue, row in table.items() if row["separates"]]
    prefix = "after match_quality: " if matched else ""
    return AssetCheckResult(check_name="quality_parity", passed=not separating,
                            severity=AssetCheckSeverity.WARN,
                            description=(prefix + describe_parity(table))[:1000],
                            metadata={"match_quality": matched, "min_smd": MIN_SMD, "max_p": MAX_P,
                                      "min_relative_gap": MIN_RELATIVE_GAP,
                                      "separating_cues": separating, **flat_metadata(table)})


def attribute_mix_parity(mixes: dict[str, dict]) -> AssetCheckResult:
    """WARN when a demographic attribute's mix differs between the classes in the whole set or in
    any split (mixes: name -> attribute_mix): a class told apart by proxy."""
    gaps = {a: {name: mix_gap_points(mix, a) for name, mix in mixes.items()} for a in ATTRIBUTES}
    worst = {a: max(((g, n) for n, g in by.items() if g is not None), default=None)
             for a, by in gaps.items()}
    wide = [a for a, w in worst.items() if w is not None and w[0] > MAX_MIX_GAP_POINTS]
    parts = [f"{a}: {w[0]:.1f} points (worst: {w[1]})" if w is not None else
             f"{a}: not compared (unknown for a class)" for a, w in worst.items()]
    message = "; ".join(parts) + (f" - {', '.join(wide)} could tell the classes apart" if wide
                                  else "")
    return AssetCheckResult(check_name="attribute_mix_parity", passed=not wide,
                            severity=AssetCheckSeverity.WARN, description=message,
                            metadata={"max_gap_points": MAX_MIX_GAP_POINTS,
                                      "not_compared": [a for a, w in worst.items() if w is None],
                                      **{f"{a}_gap_points": None if w is None else w[0]
                                         for a, w in worst.items()},
                                      **{f"{a}_gap_points_{n}": g for a, by in gaps.items()
                                         for n, g in by.items()}})


def above_chance(test_accuracy: float) -> AssetCheckResult:
    return AssetCheckResult(check_name="above_chance", passed=test_accuracy >= MIN_TEST_ACCURACY,
                            severity=AssetCheckSeverity.WARN,
                            metadata={"test_accuracy": test_accuracy})


def face_attention(result: dict) -> AssetCheckResult:
    lift = result["face_mass_lift"]
    ok = math.isfinite(lift) and lift > THRESHOLDS.face_mass_lift
    message = "more heat on the face than chance" if ok else \
        "no more Grad-CAM heat on the face than a uniform map: the model looks elsewhere"
    return AssetCheckResult(check_name="face_attention", passed=ok, severity=AssetCheckSeverity.WARN,
                            description=message,
                            metadata={k: result[k] for k in (
                                "face_mass", "face_mass_ci_low", "face_mass_ci_high",
                                "face_mass_lift", "face_area_ratio", "face_mass_celebrity",
                                "face_mass_ordinary")} | {"threshold": THRESHOLDS.face_mass_lift})


def background_shortcut(result: dict) -> AssetCheckResult:
    ok = "background" not in result["named_families"]
    message = "no background shortcut" if ok else "this model uses the background as a shortcut"
    keys = [k for k in result if k.startswith(("bg_gap", "acc_background_only", "acc_mixed_",
                                               "composite_cost"))]
    return AssetCheckResult(check_name="background_shortcut", passed=ok,
                            severity=AssetCheckSeverity.WARN, description=message,
                            metadata={k: result[k] for k in keys})


def shortcut_verdict(result: dict) -> AssetCheckResult:
    ok = result["verdict"] == "face"
    message = f"verdict {result['verdict']}: " + "; ".join(result["verdict_reasons"])
    keys = [k for k in result if k.startswith("family_") and k.endswith(("_drop", "_low", "_high"))]
    return AssetCheckResult(check_name="shortcut_verdict", passed=ok,
                            severity=AssetCheckSeverity.WARN, description=message[:1000],
                            metadata={"verdict": result["verdict"],
                                      **{k: result[k] for k in keys}})
