"""Per-seed verdicts combined: `face` only when every seed says face, a family when most seeds
name it, and too few test identities per class make any verdict inconclusive."""

from __future__ import annotations

import pandas as pd
import pytest

from beauty_pipeline.explain.audit import TrainedModel
from beauty_pipeline.explain.seeds import (
    combine_verdicts,
    combined_reasons,
    identities_per_class,
    one_seed,
)
from beauty_pipeline.explain.verdict import MIN_IDENTITIES, Verdict, too_few_identities

FACE = Verdict("face", (), ("holds",))
UNSURE = Verdict("inconclusive", (), ("straddles",))
CHANCE = Verdict("chance", (), ("low",))


def named(*families: str) -> Verdict:
    return Verdict("+".join(families), families, ())


def test_face_needs_every_seed():
    assert combine_verdicts([FACE, FACE, FACE]).label == "face"
    assert combine_verdicts([FACE, FACE, UNSURE]).label == "inconclusive"
    assert combine_verdicts([FACE]).label == "face"
    assert "face,face,inconclusive" in combine_verdicts([FACE, FACE, UNSURE]).reasons[0]


def test_a_family_counts_when_most_seeds_name_it():
    verdict = combine_verdicts([named("background"), named("background", "quality"), FACE])
    assert verdict.label == "background" and verdict.named == ("background",)
    verdict = combine_verdicts([named("quality", "background"), named("background", "quality"),
                                UNSURE])
    assert verdict.label == "background+quality"  # the families' fixed order
    assert combine_verdicts([named("colour"), FACE, UNSURE]).label == "inconclusive"
    assert combine_verdicts([named("colour"), FACE]).label == "inconclusive"  # 1 of 2 is no majority
    assert combine_verdicts([CHANCE, CHANCE, FACE]).label == "chance"
    with pytest.raises(ValueError):
        combine_verdicts([])


def test_too_few_identities_overrides_everything():
    enough = {"ordinary": 40, "celebrity": MIN_IDENTITIES}
    assert too_few_identities(enough) is None
    assert combine_verdicts([FACE, FACE], enough).label == "face"
    few = {"ordinary": 40, "celebrity": MIN_IDENTITIES - 1}
    verdict = combine_verdicts([named("background")] * 3, few)
    assert verdict.label == "inconclusive" and verdict.named == ()
    assert verdict.reasons[0].startswith("too few identities") and "celebrity 4" in verdict.reasons[0]


def test_identities_counted_per_class_on_the_test_split_only():
    manifest = pd.DataFrame({"split": ["test"] * 5 + ["train"] * 2,
                             "looks": [1, 1, 1, 0, 0, 1, 0],
                             "person": ["a", "a", "b", "o1", "o2", "c", "o3"]})
    assert identities_per_class(manifest) == {"ordinary": 2, "celebrity": 2}


def test_one_seed_keeps_only_that_seeds_weights():
    trained = TrainedModel("resnet18", ("s0.pt", "s1.pt", "s2.pt"), 48)
    assert one_seed(trained, 1) == TrainedModel("resnet18", ("s1.pt",), 48)


def test_a_lone_seed_gives_its_own_reasons_and_several_seeds_give_each_one():
    assert combined_reasons(combine_verdicts([UNSURE]), [UNSURE]) == ["straddles"]
    few = {"ordinary": 40, "celebrity": 2}
    reasons = combined_reasons(combine_verdicts([FACE], few), [FACE])
    assert reasons[0].startswith("too few identities") and reasons[1:] == ["holds"]
    reasons = combined_reasons(combine_verdicts([FACE, UNSURE]), [FACE, UNSURE])
    assert reasons[1:] == ["seed 1: face: holds", "seed 2: inconclusive: straddles"]
    assert "face,inconclusive" in reasons[0]
