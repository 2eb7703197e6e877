"""Confounds in the verdict and the source post-step, on hand-made study sets and estimates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from beauty_pipeline.data.parity import MAX_GAP_POINTS
from beauty_pipeline.explain.confounds import (
    attribute_confounds,
    dataset_confounds,
    decorate,
    describe,
    frontal_confounds,
)
from beauty_pipeline.explain.stats import Estimate
from beauty_pipeline.explain.transfer import (
    apply_to_audit,
    fell_to_chance,
    transfer_accuracy,
    transfer_metrics,
    with_source,
)
from beauty_pipeline.explain.verdict import THRESHOLDS, Verdict


def study_set(face_px_celebrity: float, face_px_ordinary: float, race_celebrity: str,
              persons: int = 12, photos: int = 4, seed: int = 0) -> pd.DataFrame:
    """Celebrities with several photos, ordinary singletons; face_px and race per class."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(persons):
        for _ in range(photos):
            rows.append({"person": f"c{p}", "looks": 1, "split": "train" if p < 8 else "test",
                         "face_px": face_px_celebrity + rng.normal(0, 5), "race": race_celebrity,
                         "gender": "Male" if p % 2 else "Female", "pad_fraction": 0.0})
    for i in range(persons * photos):
        rows.append({"person": f"o{i}", "looks": 0, "split": "train" if i < 32 else "test",
                     "face_px": face_px_ordinary + rng.normal(0, 5),
                     "race": ("White", "Black", "East Asian", "Indian")[i % 4],
                     "gender": "Male" if i % 2 else "Female", "pad_fraction": 0.0})
    return pd.DataFrame(rows)


def test_a_clean_study_set_has_no_confounds_and_keeps_its_label():
    study = study_set(150, 150, "White")
    study["race"] = np.where(np.arange(len(study)) % 2, "White", "Black")
    assert dataset_confounds(study) == []
    assert decorate("face", []) == "face"
    assert describe([]) == "none"


def test_face_resolution_and_race_mix_are_named_with_their_size():
    study = study_set(100, 211, "White")
    found = dataset_confounds(study)
    cues = [c.cue for c in found]
    assert cues == ["face_px", "race mix"]
    face_px = found[0]
    assert face_px.check == "quality_parity"
    assert face_px.numbers["celebrity_median"] == pytest.approx(100, abs=5)
    assert face_px.numbers["ordinary_median"] == pytest.approx(211, abs=5)
    assert face_px.numbers["smd"] < -10
    race = found[1]
    assert race.check == "attribute_mix_parity"
    assert race.numbers["gap_points"] == pytest.approx(75.0)  # all White vs a quarter White
    assert decorate("face", found) == "face (source-confounded: face_px, race mix)"
    assert "median celebrity 100" in describe(found) and "75.0 points" in describe(found)
    assert decorate("chance", found) == "chance"  # nothing learned, nothing to qualify


def test_frontal_and_padding_gaps_warn_beyond_the_checks_limit():
    rates = {"celebrity": {"judged": 100, "dropped": 40, "rate": 0.4},
             "ordinary": {"judged": 100, "dropped": 5, "rate": 0.05}}
    [frontal] = frontal_confounds(rates)
    assert frontal.cue == "frontal drops" and frontal.numbers["gap_points"] == pytest.approx(35.0)
    close = {"celebrity": {"rate": 0.10}, "ordinary": {"rate": 0.10 + MAX_GAP_POINTS / 100 - 0.01}}
    assert frontal_confounds(close) == [] and frontal_confounds(None) == []
    study = study_set(150, 150, "White")
    study["race"] = "White"
    study.loc[study["looks"] == 0, "pad_fraction"] = 0.2  # every ordinary crop padded
    assert [c.cue for c in dataset_confounds(study, rates)] == ["frontal drops", "padding"]


def test_an_attribute_unknown_for_a_class_is_not_a_confound():
    study = study_set(150, 150, "")
    assert attribute_confounds({"all": __import__(
        "beauty_pipeline.data.demographics", fromlist=["attribute_mix"]).attribute_mix(study)}) == []


def test_transfer_accuracy_is_the_share_called_the_class_with_an_identity_interval():
    persons = np.repeat([f"p{i}" for i in range(10)], 5)
    predictions = np.ones((1, 50), int)
    predictions[0, :10] = 0  # two persons' photos all called ordinary
    estimate = transfer_accuracy(predictions, 1, persons)
    assert estimate.value == pytest.approx(0.8)
    assert estimate.low < 0.8 < estimate.high and estimate.high <= 1.0
    two_seeds = np.stack([predictions[0], np.ones(50, int)])
    assert transfer_accuracy(two_seeds, 1, persons).value == pytest.approx(0.9)
    metrics = transfer_metrics({"celebrity": estimate}, {"celebrity": 50}, {"celebrity": 10})
    assert set(metrics) == {"transfer_acc_celebrity", "transfer_acc_celebrity_ci_low",
                            "transfer_acc_celebrity_ci_high", "transfer_images_celebrity",
                            "transfer_identities_celebrity"}


HIGH = Estimate(0.97, 0.94, 0.99)


def test_source_is_named_when_transfer_falls_to_chance_and_in_source_is_high():
    fallen = Estimate(0.10, 0.02, 0.25)
    assert fell_to_chance(HIGH, fallen)
    assert fell_to_chance(HIGH, Estimate(0.55, 0.40, 0.70))  # at chance
    assert not fell_to_chance(HIGH, Estimate(0.93, 0.85, 0.98))  # the label transfers
    assert not fell_to_chance(Estimate(0.70, 0.6, 0.8), fallen)  # in-source not high
    # a wide interval reaching chance but a point estimate close to in-source: not a fall
    assert not fell_to_chance(HIGH, Estimate(0.85, THRESHOLDS.transfer_chance - 0.1, 0.95))
    face = Verdict("face", (), ("no tested family changes the predictions",))
    after = with_source(face, HIGH, {"celebrity": fallen})
    assert after.label == "source" and after.named == ("source",)
    assert after.reasons[-1].startswith("source: celebrity photos from another source")
    both = with_source(Verdict("background", ("background",)), HIGH, {"celebrity": fallen})
    assert both.label == "background+source"
    assert with_source(face, HIGH, {"celebrity": Estimate(0.95, 0.9, 1.0)}) == face
    assert with_source(Verdict("chance", ()), HIGH, {"celebrity": fallen}).label == "chance"


def test_apply_to_audit_keeps_the_rules_own_verdict():
    audit = {"verdict": "face", "named_families": [], "verdict_reasons": ["ok"],
             "acc_original": 0.97, "acc_original_ci_low": 0.94, "acc_original_ci_high": 0.99}
    after = apply_to_audit(audit, {"celebrity": Estimate(0.1, 0.0, 0.3)})
    assert after["verdict"] == "source" and after["verdict_before_transfer"] == "face"
    assert after["named_families"] == ["source"] and len(after["verdict_reasons"]) == 2
    kept = apply_to_audit(audit, {})
    assert kept["verdict"] == "face" and kept["verdict_before_transfer"] == "face"


def test_transfer_folders_from_flags_and_yaml(tmp_path):
    from beauty_pipeline.cli import parse_args
    from beauty_pipeline.data.transfer import folder_persons
    from beauty_pipeline.errors import PipelineError
    from beauty_pipeline.study_options import study_options

    for name in ("photos", "ff", "elsewhere/Barack_Obama", "elsewhere/Tina_Fey", "ordinary/x"):
        (tmp_path / name).mkdir(parents=True)
    base = ["study", "--photos", str(tmp_path / "photos"), "--fairface", str(tmp_path / "ff")]
    config = tmp_path / "study.yaml"
    config.write_text(f"transfer-photos: {tmp_path / 'elsewhere'}\n")
    chosen = study_options(parse_args([*base, "--config", str(config), "--transfer-ordinary",
                                       str(tmp_path / "ordinary")]))
    assert chosen.transfer_photos == str((tmp_path / "elsewhere").resolve())
    assert chosen.transfer_ordinary == str((tmp_path / "ordinary").resolve())
    assert folder_persons(chosen.transfer_photos) == {"barack-obama": "Barack_Obama",
                                                      "tina-fey": "Tina_Fey"}
    with pytest.raises(PipelineError, match="--transfer-photos .*no such folder"):
        study_options(parse_args([*base, "--transfer-photos", str(tmp_path / "missing")]))
    with pytest.raises(PipelineError, match="has no sub-folders"):
        folder_persons(tmp_path / "photos")
