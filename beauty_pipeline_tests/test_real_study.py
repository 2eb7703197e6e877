"""The real study through `beauty-pipeline study` (real_study_support.py: public figures' local
web crops against FairFace, detection, the split, `original` and `white`, resnet18 and
fairface_resnet34, the audit); then a controlled experiment on the same data (the same training
with match_quality) that the audit's quality reading has to agree with."""

import pytest
from real_study_support import BACKGROUNDS, MODELS

from beauty_pipeline.data.families import FAMILIES
from beauty_pipeline.explain.verdict import THRESHOLDS, VERDICTS

pytestmark = pytest.mark.slow


def test_every_cell_trained_and_audited_with_sane_intervals(real_study):
    assert set(real_study["audits"]) == {f"{m}/{b}" for m in MODELS for b in BACKGROUNDS}
    for cell, audit in real_study["audits"].items():
        for metric in ("acc_original", "acc_face_only", "acc_background_only", "bg_gap",
                       *(f"family_{f}_drop" for f in FAMILIES)):
            low, value, high = (audit[f"{metric}_ci_low"], audit[metric], audit[f"{metric}_ci_high"])
            assert low <= value + 1e-9 and value <= high + 1e-9, (cell, metric)
        assert audit["test_identities"] >= 2 * 2 and audit["test_images"] >= 40
        assert audit["verdict"] in VERDICTS or set(audit["verdict"].split("+")) <= set(FAMILIES)
        # web crops vs FairFace is learnable from the pixels, whatever the cue turns out to be
        assert audit["acc_original_ci_low"] > 0.5, cell
    print({c: (round(a["acc_original"], 3), a["verdict"]) for c, a in real_study["audits"].items()})


def test_white_background_carries_no_class_information(real_study):
    """A control on the manipulation itself: with every background white, backgrounds alone
    cannot tell the classes apart, and swapping them cannot cost accuracy."""
    for model in MODELS:
        audit = real_study["audits"][f"{model}/white"]
        assert audit["acc_background_only_ci_low"] < THRESHOLDS.background_only, model
        assert "background" not in audit["named_families"], model


def test_split_by_identity_and_real_sources_recorded(real_study):
    study = real_study["study"]
    assert (study.groupby("person")["split"].nunique() == 1).all()
    test = study[study["split"] == "test"]
    assert test.groupby("looks")["person"].nunique().min() >= 2
    assert study["preprocessing"].str.startswith("yunet_crop").all()


def test_quality_differs_between_the_sources_and_matching_removes_resolution(real_study):
    """Web crops are smaller faces than FairFace's: the check must say so with its numbers, and
    match_quality must remove the resolution cue it is built for."""
    before, after = real_study["quality"], real_study["matched_quality"]
    assert not before.passed and "face_px separates the classes" in before.description
    assert before.metadata["face_px_smd"].value < -1  # celebrities' faces are smaller
    assert "face_px" not in after.metadata["separating_cues"].value
    assert after.description.startswith("after match_quality")


def test_the_audits_quality_reading_agrees_with_the_matched_quality_experiment(real_study):
    """If the audit does not name quality, removing the resolution and JPEG cues from the data
    must leave the classes learnable (accuracy still clearly above chance); if it names quality,
    matching must cost accuracy."""
    audit, matched = real_study["audits"]["resnet18/original"], real_study["matched_audit"]
    if "quality" in audit["named_families"]:
        assert matched["acc_original"] < audit["acc_original"] - THRESHOLDS.controlled_effect
    else:
        assert matched["acc_original_ci_low"] > 0.5
        assert matched["acc_original_ci_high"] >= audit["acc_original_ci_low"]
    print(f"\nresnet18/original: {audit['acc_original']:.3f} [{audit['acc_original_ci_low']:.3f}, "
          f"{audit['acc_original_ci_high']:.3f}] unmatched vs {matched['acc_original']:.3f} "
          f"[{matched['acc_original_ci_low']:.3f}, {matched['acc_original_ci_high']:.3f}] "
          f"with match_quality; audit quality drop {audit['family_quality_drop']:+.3f}")
