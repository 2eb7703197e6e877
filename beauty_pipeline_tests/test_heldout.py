"""Held-out worlds: each cue changes only celebrity-style photos and only where it claims to; the
acceptance and the matrix read per-seed verdicts; a small subset runs end to end (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from beauty_pipeline.cli import main
from beauty_pipeline.demo.heldout import HELD_OUT_WORLDS, acceptance, heldout_matrix, run_heldout
from beauty_pipeline.demo.synthetic import HELD_OUT_CUES, DemoSpec, random_identity, render_face
from beauty_pipeline.errors import PipelineError


def rendered(seed: int = 3, size: int = 48):
    rng = np.random.default_rng(seed)
    return render_face(rng, random_identity(rng), glamour=False, studio=True, size=size)


@pytest.mark.parametrize("cue", sorted(set(HELD_OUT_CUES) - {"chroma"}))
def test_only_celebrity_style_photos_change(cue):
    face = rendered()
    plain = HELD_OUT_CUES[cue](face, False, np.random.default_rng(0))
    assert plain is face
    styled = HELD_OUT_CUES[cue](face, True, np.random.default_rng(0))
    assert np.abs(styled.image.astype(int) - face.image).mean() > 0.3  # short hair: a little


def test_person_cues_leave_the_face_alone_and_placement_moves_the_box():
    face = rendered()
    inside = face.face_mask > 250
    for cue in ("shirt", "hair"):
        styled = HELD_OUT_CUES[cue](face, True, np.random.default_rng(0))
        change = np.abs(styled.image.astype(int) - face.image).max(-1)
        changed = change > 0
        assert change.mean() > 0.3 and change[inside].max() <= 1  # rounding at the face's edge
        assert (changed <= (face.person_mask > 0)).all()  # only the person's pixels
    moved = HELD_OUT_CUES["placement"](face, True, np.random.default_rng(0))
    assert moved.face_box[0] == pytest.approx(face.face_box[0] - 4.8)
    assert moved.face_box[1] == pytest.approx(face.face_box[1] - 3.84)
    assert moved.face_mask.sum() > 0.8 * face.face_mask.sum()


def test_chroma_reencodes_both_styles_differently():
    face = rendered(size=64)
    low = HELD_OUT_CUES["chroma"](face, True, np.random.default_rng(0)).image.astype(int)
    high = HELD_OUT_CUES["chroma"](face, False, np.random.default_rng(0)).image.astype(int)
    assert np.abs(low - face.image).mean() > np.abs(high - face.image).mean() > 0


def test_held_out_cues_are_plantable_and_unknown_ones_refused():
    assert DemoSpec(planted="logo").planted == "logo"
    with pytest.raises(ValueError, match="held-out cue"):
        DemoSpec(planted="sparkle")
    with pytest.raises(PipelineError, match="unknown held-out worlds"):
        run_heldout("/nonexistent", ["sparkle"])
    assert {w["planted"] for w in HELD_OUT_WORLDS.values()} == {*HELD_OUT_CUES, "none"}


def fake(world: str, cue: str, seeds: list[str]) -> dict:
    named = [[] if v in ("face", "inconclusive", "chance") else v.split("+") for v in seeds]
    return {"world": world, "cue": cue, "where": "x", "verdict": seeds[0],
            "verdict_per_seed": seeds, "named_per_seed": named,
            "intervals": {"acc_original": 0.9, "acc_original_ci_low": 0.8,
                          "acc_original_ci_high": 0.95},
            "wrong_face_seeds": 0 if cue == "none" else seeds.count("face"),
            "face_seeds": seeds.count("face")}


def test_acceptance_and_matrix_read_every_seed():
    good = [fake("clean", "none", ["face", "face", "inconclusive"]),
            fake("logo", "logo", ["background", "inconclusive", "background"])]
    assert acceptance(good) == {"wrong_face_worlds": [], "clean_face_seeds": [2], "passed": True}
    bad = [fake("clean", "none", ["face", "inconclusive", "inconclusive"]),
           fake("shirt", "shirt", ["inconclusive", "face", "colour"])]
    verdict = acceptance(bad)
    assert verdict["wrong_face_worlds"] == ["shirt"] and not verdict["passed"]
    text = heldout_matrix(good + bad)
    assert "2/3" in text and "face,face,inconclusive" in text and "WRONG" in text
    assert text.count("NO") == 1
    long = heldout_matrix([fake("logo", "logo", ["inconclusive"] * 3)] + good)
    rows = long.splitlines()
    verdict_at = rows[0].index("verdict")  # the combined verdict stays in its column
    assert rows[2][verdict_at - 2:verdict_at] == "  " and rows[2][verdict_at:].startswith("incon")


@pytest.mark.slow
def test_small_held_out_subset_has_no_wrong_face(tmp_path):
    """Two cue worlds (the whole photo; the person's clothes), two seeds, small worlds."""
    code = main(["zoo", "--held-out", "--held-out-worlds", "vignette", "shirt", "--seeds", "2",
                 "--home", str(tmp_path), "--persons", "25", "--ordinary", "150",
                 "--epochs", "5"])
    payload = json.loads((tmp_path / "heldout.json").read_text())
    worlds = {w["world"]: w for w in payload["worlds"]}
    assert set(worlds) == {"vignette", "shirt"}
    for world in worlds.values():
        assert len(world["verdict_per_seed"]) == 2
        assert "face" not in world["verdict_per_seed"], world["reasons"]
        assert world["test_identities_per_class"]["celebrity"] >= 5
    assert payload["acceptance"]["wrong_face_worlds"] == []
    assert code == 0
