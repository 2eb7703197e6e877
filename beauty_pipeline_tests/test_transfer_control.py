"""The transfer control: the model's own test photos made as hard to see as the transfer photos,
and the rule that keeps `source` unnamed when the control falls too (fast, no training)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from beauty_pipeline.data.families import noise_sigma, sharpness
from beauty_pipeline.demo.synthetic import RENDERERS, DemoSpec, demo_person_photos, person_name
from beauty_pipeline.explain.audit import TrainedModel
from beauty_pipeline.explain.stats import Estimate
from beauty_pipeline.explain.transfer import (
    CONTROL_SHARPNESS_BAND,
    TransferControl,
    apply_to_audit,
    as_hard_to_see,
    explained_by_difficulty,
    harder_than_study,
    quality_profile,
    score_transfer_controls,
    transfer_control_metrics,
    with_source,
)
from beauty_pipeline.explain.verdict import Verdict
from beauty_pipeline.storage import ImageStore
from beauty_pipeline.training.checkpoints import save_state
from beauty_pipeline.training.models import build_model

HIGH = Estimate(0.97, 0.94, 0.99)
FALLEN = Estimate(0.10, 0.02, 0.25)
FACE = Verdict("face", (), ("no tested family changes the predictions",))
SOFTER = ("quality",)


def control(value: float, low: float, high: float, moves=SOFTER) -> TransferControl:
    return TransferControl(Estimate(value, low, high), moves)


def faces(count: int = 12, start: int = 0) -> np.ndarray:
    """Synthetic 48 px photos of a few demo persons (clean, as the zoo renders them)."""
    spec = DemoSpec(image_size=48, photos_per_person=4, planted="none")
    out = []
    for index in range(start, start + count // 4):
        out += [f.image for f in demo_person_photos(spec, person_name(index))[1]]
    return np.stack(out)


def test_a_control_that_falls_too_keeps_source_unnamed_and_says_why():
    fallen = control(0.20, 0.08, 0.35)  # the model's own photos, as hard to see: fall as well
    assert explained_by_difficulty(HIGH, FALLEN, fallen.estimate)
    after = with_source(FACE, HIGH, {"celebrity": FALLEN}, controls={"celebrity": fallen})
    assert after.label == "face" and after.named == ()
    assert after.reasons[-1].startswith("transfer untestable: celebrity photos from another source")
    assert "(the transfer photos' sharpness) are called celebrity only 0.20 [0.08, 0.35]" in \
        after.reasons[-1]
    # a control that stays high: the fall is the source's, and the reason shows the control
    held = control(0.92, 0.85, 0.97, moves=())
    assert not explained_by_difficulty(HIGH, FALLEN, held.estimate)
    named = with_source(FACE, HIGH, {"celebrity": FALLEN}, controls={"celebrity": held})
    assert named.label == "source" and named.named == ("source",)
    assert "control (no harder to see than the study's own photos: unchanged) 0.92 [0.85, 0.97]" \
        in named.reasons[-1]
    # no control given: the rule as before (source named on the fall alone)
    assert with_source(FACE, HIGH, {"celebrity": FALLEN}).label == "source"


def test_a_transfer_set_not_clearly_below_its_control_is_untestable():
    transfer = Estimate(0.45, 0.30, 0.60)
    control = Estimate(0.60, 0.62, 0.70)  # above chance, but only 0.15 above the transfer set
    assert explained_by_difficulty(HIGH, transfer, control)
    assert explained_by_difficulty(HIGH, FALLEN, Estimate(math.nan, math.nan, math.nan))
    assert not explained_by_difficulty(HIGH, transfer, Estimate(0.90, 0.80, 0.97))
    mixed = with_source(Verdict("background", ("background",)), HIGH,
                        {"celebrity": FALLEN, "ordinary": transfer},
                        controls={"celebrity": TransferControl(Estimate(0.9, 0.8, 1.0), ()),
                                  "ordinary": TransferControl(control, SOFTER)})
    assert mixed.label == "background+source"
    assert [r.split(":")[0] for r in mixed.reasons] == ["transfer untestable", "source"]
    # a transfer set that holds is untouched whatever its control says
    assert with_source(FACE, HIGH, {"celebrity": HIGH},
                       controls={"celebrity": TransferControl(FALLEN, SOFTER)}) == FACE


def test_apply_to_audit_passes_the_controls_and_keeps_the_rules_verdict():
    audit = {"verdict": "face", "named_families": [], "verdict_reasons": ["ok"],
             "acc_original": 0.97, "acc_original_ci_low": 0.94, "acc_original_ci_high": 0.99}
    after = apply_to_audit(audit, {"celebrity": FALLEN}, controls={"celebrity": control(0.3, 0.1, 0.5)})
    assert after["verdict"] == "face" and after["verdict_before_transfer"] == "face"
    assert after["named_families"] == [] and after["verdict_reasons"][-1].startswith(
        "transfer untestable")
    metrics = transfer_control_metrics({"celebrity": control(0.3, 0.1, 0.5)})
    assert metrics == {"transfer_control_acc_celebrity": 0.3,
                       "transfer_control_acc_celebrity_ci_low": 0.1,
                       "transfer_control_acc_celebrity_ci_high": 0.5,
                       "transfer_control_moves_celebrity": 1}


def test_the_control_is_as_hard_to_see_as_the_transfer_photos():
    clean = faces(12)
    webcam = np.stack([RENDERERS["webcam"](im, np.random.default_rng(i))
                       for i, im in enumerate(faces(12, start=10))])
    profile = quality_profile(webcam)
    hard = as_hard_to_see(clean, profile, seed=3)
    assert hard.shape == clean.shape and hard.dtype == np.uint8
    assert np.array_equal(hard, as_hard_to_see(clean, profile, seed=3))  # seeded: bit-exact
    measured = quality_profile(hard)
    # clean photos are sharper and less noisy than webcam ones; the control brings both close
    assert quality_profile(clean).sharpness > CONTROL_SHARPNESS_BAND * profile.sharpness
    assert measured.sharpness == pytest.approx(profile.sharpness, rel=0.15)
    assert abs(measured.noise - profile.noise) < abs(quality_profile(clean).noise - profile.noise)
    assert abs(measured.noise - profile.noise) <= 1.0
    # photos from the profile's own set stay at the profile (each is moved only as far as its
    # own spread takes it from the median)
    again = as_hard_to_see(webcam, profile, seed=3)
    assert np.median([sharpness(im) for im in again]) == pytest.approx(profile.sharpness, rel=0.25)
    assert np.median([noise_sigma(im) for im in again]) == pytest.approx(profile.noise, abs=1.0)


def constant_model(tmp_path, label: int) -> TrainedModel:
    """A resnet18 that calls every image `label` (zero head weights, a bias for the class)."""
    model = build_model("resnet18")
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([1.0 - label, float(label)]))
    return TrainedModel("resnet18", (str(save_state(tmp_path / f"m{label}.pt",
                                                    model.state_dict())),), 48)


def test_score_transfer_controls_scores_the_classes_own_test_photos(tmp_path):
    store = ImageStore(tmp_path / "images")
    own, other = faces(8), faces(8, start=4)
    keys = [store.put_array(im) for im in (*own, *other)]
    manifest = pd.DataFrame({
        "variant_image_key": keys, "looks": [1] * 8 + [0] * 8,
        "split": ["test"] * 4 + ["train"] * 4 + ["test"] * 8,
        "person": [f"c{i // 2}" for i in range(8)] + [f"o{i}" for i in range(8)]})
    transfer = faces(8, start=20)
    transfer_keys = [store.put_array(RENDERERS["webcam"](im, np.random.default_rng(0)))
                     for im in transfer]
    transfer_set = pd.DataFrame({"looks": [1] * 8, "person": [f"t{i // 4}" for i in range(8)]})
    always = {label: constant_model(tmp_path, label) for label in (0, 1)}
    called = score_transfer_controls(always[1], manifest, transfer_set, transfer_keys, store,
                                     tmp_path / "cache", device="cpu")
    assert set(called) == {"celebrity"}  # only classes with transfer photos get a control
    assert called["celebrity"].estimate.value == 1.0
    assert called["celebrity"].moves == ("quality", "compression")  # webcam: softer, blockier
    missed = score_transfer_controls(always[0], manifest, transfer_set, transfer_keys, store,
                                     tmp_path / "cache", device="cpu")
    assert missed["celebrity"].estimate.value == 0.0
    no_test = manifest.assign(split=np.where(manifest["looks"] == 1, "train", "test"))
    unmeasured = score_transfer_controls(always[1], no_test, transfer_set, transfer_keys, store,
                                         tmp_path / "cache", device="cpu")
    assert math.isnan(unmeasured["celebrity"].estimate.value)
    assert score_transfer_controls(always[1], manifest, transfer_set.iloc[:0], [], store,
                                   tmp_path / "cache", device="cpu") == {}


def test_only_a_transfer_set_harder_than_every_class_of_the_study_moves_the_control():
    clean = faces(12)
    rng = np.random.default_rng(0)
    studio = np.stack([RENDERERS["studio"](im, rng) for im in clean])
    phone = np.stack([RENDERERS["phone"](im, rng) for im in faces(12, start=3)])
    study = [quality_profile(phone), quality_profile(studio)]
    webcam = quality_profile(np.stack([RENDERERS["webcam"](im, rng) for im in faces(12, 10)]))
    press = quality_profile(np.stack([RENDERERS["press"](im, rng) for im in faces(12, 10)]))
    assert "quality" in harder_than_study(webcam, study)  # softer than the softest class
    assert harder_than_study(press, study) == ()  # inside the range the model learned on
    assert harder_than_study(quality_profile(phone), study) == ()
    assert "compression" in harder_than_study(quality_profile(studio), [quality_profile(phone)])
    assert "noise" in harder_than_study(quality_profile(phone), [quality_profile(studio)])
    untouched = as_hard_to_see(studio, webcam, moves=())
    assert np.array_equal(untouched, studio)  # no move: the control is the test photos as they are
