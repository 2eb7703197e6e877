"""The shortcut zoo inside the suite: the background world must be called `background` and
nothing else, the clean negative control `face` on positive face evidence in each class, and
FaceMass must rank the two correctly."""

from __future__ import annotations

import json

import pytest

from beauty_pipeline.cli import main
from beauty_pipeline.data.families import PROFILE_FAMILIES
from beauty_pipeline.demo.zoo import WORLDS, planted_correctly
from beauty_pipeline.explain.verdict import THRESHOLDS


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    home = tmp_path_factory.mktemp("zoo")
    code = main(["zoo", "--home", str(home), "--worlds", "background", "none"])
    payload = json.loads((home / "zoo.json").read_text())
    return code, {w["world"]: w for w in payload["worlds"]}


@pytest.mark.slow
def test_every_world_answered_as_planted(zoo):
    code, worlds = zoo
    assert code == 0
    assert worlds["background"]["named"] == ["background"]
    assert worlds["background"]["verdict"] == "background"
    assert worlds["none"]["named"] == [] and worlds["none"]["verdict"] == "face"
    for world in worlds.values():
        assert world["correct"] is True
        assert world["test_accuracy"] >= 0.8


@pytest.mark.slow
def test_effects_have_intervals_that_clear_or_miss_the_threshold(zoo):
    _, worlds = zoo
    background, clean = worlds["background"]["intervals"], worlds["none"]["intervals"]
    assert background["bg_gap_ci_low"] > 0.5  # the planted cue reverses when plates swap
    assert background["acc_mixed_same"] - background["acc_original"] < 0.1  # the control holds
    assert clean["bg_gap_ci_high"] < 0.1
    for family in PROFILE_FAMILIES:
        assert clean[f"family_{family}_drop_ci_high"] < 0.1, family
        assert background[f"family_{family}_drop_ci_high"] < 0.1, family  # nothing else named
        assert clean[f"family_{family}_control_cost"] <= THRESHOLDS.control_cost, family
    assert clean["acc_face_only_ci_low"] > 0.8


@pytest.mark.slow
def test_the_clean_world_is_face_on_positive_evidence_in_each_class(zoo):
    _, worlds = zoo
    clean, background = worlds["none"]["intervals"], worlds["background"]["intervals"]
    limit = THRESHOLDS.face_features_drop
    assert clean["face_features_drop_ci_low"] > limit  # no eyes, nose, mouth: the decision goes
    assert clean["face_features_control_drop"] < limit  # the same area elsewhere: it stays
    assert clean["face_features_drop_beyond_control_ci_low"] > limit  # features, not any area
    assert clean["face_swap_control_area_share"] >= THRESHOLDS.control_area_share
    for name in ("celebrity", "ordinary"):  # the inner face from the other class: it goes
        assert clean[f"face_swap_drop_{name}_ci_low"] > limit, name
        assert clean[f"face_swap_control_drop_{name}"] < limit, name
        assert clean[f"face_swap_drop_beyond_control_{name}_ci_low"] > limit, name
    # the background model keeps its decision without the facial features
    assert background["face_features_drop"] < clean["face_features_drop"]


@pytest.mark.slow
def test_face_mass_ranks_the_face_model_above_the_background_model(zoo):
    _, worlds = zoo
    face, background = worlds["none"]["face_mass"], worlds["background"]["face_mass"]
    assert face["face_mass_ci_low"] > background["face_mass_ci_high"]
    assert face["face_mass_lift"] > 1.0 >= background["face_mass_lift"] - 0.1
    for name in ("celebrity", "ordinary"):
        assert face[f"face_mass_lift_{name}"] > THRESHOLDS.face_mass_lift_class, name


def test_every_family_has_a_world():
    from beauty_pipeline.data.families import FAMILIES

    assert {w["planted"] for w in WORLDS.values()} == {*FAMILIES, "none"}


def test_planted_correctly_rule():
    assert planted_correctly("none", [], "face")
    assert not planted_correctly("none", [], "inconclusive")
    assert planted_correctly("quality", ["quality"], "quality")
    assert not planted_correctly("quality", ["quality", "colour"], "quality+colour")
    assert not planted_correctly("quality", [], "face")
