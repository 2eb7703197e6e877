"""Demographics: class mixes, the matching sampler, the mix-parity check, FairFace estimates from a
checkpoint file, and accuracy within matched strata."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import asset_runner, materialize_persons, require_shared

from beauty_pipeline.checks import attribute_mix_parity
from beauty_pipeline.data.demographics import (
    attribute_mix,
    canonical_gender,
    estimate_attributes,
    match_ordinary,
    mix_gap_points,
    strata_accuracy,
    with_estimates,
    with_ranking_gender,
)
from beauty_pipeline.data.schema import FAIRFACE_AGES, FAIRFACE_GENDERS, FAIRFACE_RACES, conform
from beauty_pipeline.data.split import (
    SplitSettings,
    build_study_set,
    grouped_split,
    leakage_groups,
)
from beauty_pipeline.explain.stats import IdentityBootstrap
from beauty_pipeline.storage import ImageStore
from beauty_pipeline.training.backbone import load_official_backbone
from beauty_pipeline.training.checkpoints import save_state
from beauty_pipeline.training.loop import predict_logits, seeded
from beauty_pipeline.training.models import build_fairface_backbone


def rows(looks: int, person: str, n: int, gender="", age="", race="") -> list[dict]:
    return [{"image_key": f"{person}-{i}", "person": person, "looks": looks, "gender": gender,
             "age": age, "race": race} for i in range(n)]


def one_ethnicity_vs_everyone(seed: int = 0) -> pd.DataFrame:
    """Celebrities: White adults 20-39 of both genders; ordinary: every race and age group."""
    rng = np.random.default_rng(seed)
    records = []
    for p in range(8):
        records += rows(1, f"star-{p}", 5, FAIRFACE_GENDERS[p % 2], ("20-29", "30-39")[p // 4],
                        "White")
    for i in range(600):
        records += rows(0, f"ordinary-{i}", 1, str(rng.choice(FAIRFACE_GENDERS)),
                        str(rng.choice(FAIRFACE_AGES)), str(rng.choice(FAIRFACE_RACES)))
    for i in range(60):  # the pool holds at least 15 of each celebrity stratum
        records += rows(0, f"ordinary-white-{i}", 1, FAIRFACE_GENDERS[i % 2],
                        ("20-29", "30-39")[i // 30], "White")
    return pd.DataFrame(records)


def test_ranking_gender_vocabulary():
    assert [canonical_gender(v) for v in ("male", "Female", " M ", "f", "x", None)] == \
        ["Male", "Female", "Male", "Female", "", ""]


def test_ranking_gender_joined_on_person_with_sources():
    faces = pd.DataFrame(rows(1, "ann", 2) + rows(1, "bob", 1) + rows(1, "cy", 1)
                         + rows(0, "o1", 1, "Female", "20-29", "Black") + rows(0, "o2", 1))
    ranking = pd.DataFrame({"person": ["ann", "bob", "cy"], "gender": ["female", "Male", "?"]})
    out = with_ranking_gender(faces, ranking)
    assert out["gender"].tolist() == ["Female", "Female", "Male", "", "Female", ""]
    assert out["gender_source"].tolist() == ["ranking"] * 3 + ["unknown", "label", "unknown"]
    assert out["race_source"].tolist() == ["unknown"] * 4 + ["label", "unknown"]


def test_mix_exact_on_a_constructed_frame():
    frame = pd.DataFrame(
        rows(1, "a", 3, "Male", "20-29", "White") + rows(1, "b", 1, "Female", "30-39", "")
        + rows(0, "o", 2, "Female", "20-29", "Black") + rows(0, "p", 2, "Male", "bad", "Black"))
    mix = attribute_mix(frame)
    celebrity, ordinary = mix["celebrity"], mix["ordinary"]
    assert celebrity["rows"] == 4 and ordinary["rows"] == 4
    assert celebrity["gender"]["shares"]["Male"] == 0.75
    assert celebrity["race"]["known"] == 0.75 and celebrity["race"]["shares"]["White"] == 1.0
    assert ordinary["age"]["known"] == 0.5 and ordinary["age"]["shares"]["20-29"] == 1.0
    assert sum(celebrity["age"]["shares"].values()) == pytest.approx(1.0)
    assert set(celebrity["race"]["shares"]) == set(FAIRFACE_RACES)
    # total variation distance, points: gender .75/.25 vs .5/.5 -> 25; race White vs Black -> 100
    assert mix_gap_points(mix, "gender") == pytest.approx(25.0)
    assert mix_gap_points(mix, "race") == pytest.approx(100.0)
    assert mix_gap_points(attribute_mix(frame.assign(race="")), "race") is None


def stratum_counts(frame: pd.DataFrame, looks: int) -> dict:
    part = frame[frame["looks"] == looks]
    return part.groupby(["gender", "age", "race"]).size().to_dict()


def test_matching_reproduces_the_celebrity_mix_exactly_and_deterministically():
    faces = one_ethnicity_vs_everyone()
    first = match_ordinary(faces, ("gender", "age", "race"), seed=4)
    assert first.attributes == ("gender", "age", "race")
    matched = first.faces
    assert stratum_counts(matched, 0) == stratum_counts(matched, 1) == stratum_counts(faces, 1)
    assert first.report["shortfalls"] == [] and first.report["celebrity_rows_kept"] == 1.0
    assert first.report["ordinary_rows_after"] == 40 and first.report["strata"] == 4
    again = match_ordinary(faces, ("gender", "age", "race"), seed=4).faces
    other = match_ordinary(faces, ("gender", "age", "race"), seed=5).faces
    assert again["image_key"].tolist() == matched["image_key"].tolist()
    assert other["image_key"].tolist() != matched["image_key"].tolist()
    mix = attribute_mix(matched)
    assert all(mix_gap_points(mix, a) == 0.0 for a in ("gender", "age", "race"))


def test_matching_records_shortfalls_and_falls_back():
    faces = one_ethnicity_vs_everyone()
    ordinary = faces["looks"] == 0
    # only 2 ordinary White men aged 20-29 are left: 10 celebrity rows of that stratum shrink to 2
    short = (faces["gender"] == "Male") & (faces["age"] == "20-29") & (faces["race"] == "White")
    drop = faces.index[ordinary & short][2:]
    result = match_ordinary(faces.drop(drop), ("gender", "age", "race"), seed=0)
    assert result.report["shortfalls"] == [{"split": "all", "stratum": "Male|20-29|White",
                                            "celebrity": 10, "ordinary_available": 2}]
    assert result.report["celebrity_rows_kept"] == pytest.approx(32 / 40)
    assert stratum_counts(result.faces, 0) == stratum_counts(result.faces, 1)
    # no ordinary White adults at all: more than half the celebrities would go, so gender+age
    none_white = faces.drop(faces.index[ordinary & (faces["race"] == "White")])
    fallback = match_ordinary(none_white, ("gender", "age", "race"), seed=0)
    assert fallback.attributes == ("gender", "age")
    assert any("gender+age+race abandoned" in r for r in fallback.report["not_matched"])
    # age unknown for celebrities: matched on gender only, and the reason says so
    gender_only = match_ordinary(faces.assign(age=np.where(faces["looks"] == 1, "", faces["age"])),
                                 ("gender", "age", "race"), seed=0)
    assert gender_only.attributes == ("gender", "race")
    assert gender_only.report["not_matched"][0] == "age not matched: unknown for 40 of 40 " \
                                                   "celebrity rows"


def test_a_small_ordinary_pool_is_judged_by_what_balancing_keeps_anyway():
    """40 celebrity rows, 16 ordinary ones of the same gender mix: balancing keeps 16 per class in
    any case, so matching (which keeps those) is not abandoned for 'losing 60% of the celebrities'."""
    faces = one_ethnicity_vs_everyone()
    ordinary_white = faces.index[faces["person"].str.startswith("ordinary-white")]
    keep = [*faces.index[faces["looks"] == 1], *ordinary_white[:16]]
    result = match_ordinary(faces.loc[keep], ("gender",), seed=0)
    assert result.attributes == ("gender",)
    assert result.report["ordinary_rows_after"] == 16
    assert result.report["celebrity_rows_kept"] == pytest.approx(1.0)


def test_mix_check_warns_on_one_ethnicity_vs_everyone_and_passes_when_matched():
    faces = one_ethnicity_vs_everyone()
    warned = attribute_mix_parity({"all": attribute_mix(faces)})
    assert not warned.passed and warned.severity.value == "WARN"
    assert "race:" in warned.description and "could tell the classes apart" in warned.description
    race_gap = warned.metadata["race_gap_points"].value
    white = (faces.loc[faces["looks"] == 0, "race"] == "White").mean()
    assert race_gap == pytest.approx(100 * (1 - white))
    matched = match_ordinary(faces, ("gender", "age", "race"), seed=0).faces
    passed = attribute_mix_parity({"all": attribute_mix(matched)})
    assert passed.passed and passed.metadata["not_compared"].value == []
    # race unknown for celebrities: not compared, and the description says so
    unknown = attribute_mix_parity({"all": attribute_mix(matched.assign(
        race=np.where(matched["looks"] == 1, "", matched["race"])))})
    assert "race: not compared" in unknown.description
    assert unknown.metadata["not_compared"].value == ["race"]


def test_study_set_matched_per_split_before_balancing(tmp_path):
    store = ImageStore(tmp_path)
    rng = np.random.default_rng(0)
    records = []
    for p in range(12):
        for _ in range(4):
            records.append({"person": f"star-{p}", "looks": 1, "gender": FAIRFACE_GENDERS[p % 3 > 0]})
    for i in range(150):
        records.append({"person": f"ordinary-{i}", "looks": 0, "gender": FAIRFACE_GENDERS[i % 5 > 0]})
    for record in records:
        record["image_key"] = store.put_array(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    faces = conform(pd.DataFrame(records))
    report: dict = {}
    study = build_study_set(faces, store, SplitSettings(seed=1, match_attributes=("gender",)),
                            report=report)
    counts = study.groupby(["split", "looks", "gender"]).size().unstack("looks")
    assert (counts[0] == counts[1]).all() and set(study["split"]) == {"train", "val", "test"}
    assert report["demographic_matching"]["matched_on"] == ["gender"]
    assert not study["flipped"].any()  # equal counts per stratum: nothing left to upsample
    assert (study["match_stratum"] == study["gender"]).all()


def test_estimates_through_a_saved_checkpoint(tmp_path):
    seeded(0)
    model = build_fairface_backbone()
    path = save_state(tmp_path / "fairface.pt", model.state_dict())
    loaded = load_official_backbone(path)
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    estimates = estimate_attributes(loaded, images, batch_size=2)
    assert estimates.shape == (5, 6)
    assert estimates["age_estimate"].isin(FAIRFACE_AGES).all()
    assert estimates["race_estimate"].isin(FAIRFACE_RACES).all()
    assert estimates["gender_estimate"].isin(FAIRFACE_GENDERS).all()
    logits = torch.as_tensor(predict_logits(model, images, batch_size=2)).double()
    for attribute, part, classes in (("race", slice(0, 7), 7), ("gender", slice(7, 9), 2),
                                     ("age", slice(9, 18), 9)):
        confidence = estimates[f"{attribute}_confidence"].to_numpy()
        assert ((confidence >= 1 / classes) & (confidence <= 1)).all()
        expected = torch.softmax(logits[:, part], 1).max(1).values.numpy()
        np.testing.assert_allclose(confidence, expected, rtol=1e-6)
    again = estimate_attributes(load_official_backbone(path), images, batch_size=2)
    pd.testing.assert_frame_equal(estimates, again)
    faces = with_ranking_gender(pd.DataFrame(rows(1, "a", 5)), pd.DataFrame(
        {"person": ["a"], "gender": ["male"]}))
    filled = with_estimates(faces, estimates, np.arange(5), ("age", "race"))
    assert (filled["age"] == estimates["age_estimate"]).all()
    assert (filled["age_source"] == "estimate").all() and (filled["gender"] == "Male").all()
    assert (filled["gender_source"] == "ranking").all()
    with pytest.raises(ValueError, match="uint8"):
        estimate_attributes(loaded, images.astype(np.float32))


def test_strata_accuracy_known_answers():
    stratum_a, stratum_b = ("Male", "20-29", "White"), ("Male", "40-49", "Black")
    records = []
    for looks, strata, right in ((1, [stratum_a] * 3 + [stratum_b], [1, 1, 1, 0]),
                                 (0, [stratum_a] + [stratum_b] * 3, [0, 1, 1, 1]),
                                 (0, [("Female", "30-39", "Indian")] * 2, [1, 1])):
        for i, (stratum, ok) in enumerate(zip(strata, right, strict=True)):
            records.append({"person": f"{looks}-{len(records)}", "looks": looks,
                            "gender": stratum[0], "age": stratum[1], "race": stratum[2],
                            "correct": ok, "i": i})
    test = pd.DataFrame(records)
    boot = IdentityBootstrap(test["person"], test["looks"], seed=0, replicates=300)
    result = strata_accuracy(test, test["correct"].to_numpy(), boot)
    # celebrities hold no women: no acc_gender_female; men: 6 right of 8
    assert "acc_gender_female" not in result and result["acc_gender_male"] == pytest.approx(0.75)
    # celebrity mix A .75 / B .25: celebrities .75*1 + .25*0 = .75, ordinary .75*0 + .25*1 = .25
    assert result["acc_matched_strata"] == pytest.approx(0.5)
    assert result["acc_matched_strata_ci_low"] <= 0.5 <= result["acc_matched_strata_ci_high"]
    assert result["matched_strata"] == 2 and result["matched_strata_share"] == pytest.approx(0.8)
    assert result["strata_attributes"] == "gender+age+race"
    assert [s["stratum"] for s in result["strata"] if not s["matched"]] == ["Female|30-39|Indian"]


def real_faces() -> pd.DataFrame:
    crops = require_shared("data", "celebrity_crops_glint")
    fairface = require_shared("data", "fairface_margin025")
    celebrities = pd.read_csv(crops / "labels.csv")
    ordinary = pd.read_csv(fairface / "labels.csv")
    faces = pd.concat([
        pd.DataFrame({"image_key": celebrities["file"], "person": celebrities["identity"],
                      "looks": 1}),
        pd.DataFrame({"image_key": ordinary["file"], "person": ordinary["file"], "looks": 0,
                      "age": ordinary["age"], "gender": ordinary["gender"],
                      "race": ordinary["race"]})], ignore_index=True)
    people = celebrities.drop_duplicates("identity")
    ranking = pd.DataFrame({"person": people["identity"],
                            "gender": people["gender"].map({"M": "male", "F": "female"})})
    return with_ranking_gender(faces, ranking)


def test_real_mix_and_gender_matching():
    faces = real_faces()
    mix = attribute_mix(faces)
    for name in ("celebrity", "ordinary"):
        shares = {a: {k: round(v, 3) for k, v in mix[name][a]["shares"].items() if v}
                  for a in ("gender", "age", "race") if mix[name][a]["known"]}
        print(f"\n{name}: {mix[name]['rows']} rows; {shares}")
    print("gender gap points:", round(mix_gap_points(mix, "gender"), 2))
    assert mix["celebrity"]["rows"] == 942 and mix["ordinary"]["rows"] == 1940
    assert mix["celebrity"]["gender"]["shares"]["Male"] == pytest.approx(480 / 942)
    assert mix["ordinary"]["gender"]["shares"]["Male"] == pytest.approx(0.5)
    assert mix["celebrity"]["race"]["known"] == 0.0  # no estimates without the checkpoint
    faces = faces.assign(split=grouped_split(faces, leakage_groups(faces), SplitSettings(seed=0)))
    result = match_ordinary(faces, ("gender", "age", "race"), seed=0)
    assert result.attributes == ("gender",)
    assert result.report["not_matched"][:2] == [
        "age not matched: unknown for 942 of 942 celebrity rows",
        "race not matched: unknown for 942 of 942 celebrity rows"]
    print("matching:", {k: v for k, v in result.report.items() if k != "not_matched"})
    for split, part in result.faces.groupby("split"):
        before = mix_gap_points(attribute_mix(faces[faces["split"] == split]), "gender")
        print(f"{split}: gender gap {before:.1f} points before matching, 0 after "
              f"({(part['looks'] == 1).sum()} rows per class)")
        assert mix_gap_points(attribute_mix(part), "gender") == 0.0
    matched_mix = attribute_mix(result.faces)
    print("after gender matching, ordinary race shares:",
          {k: round(v, 3) for k, v in matched_mix["ordinary"]["race"]["shares"].items()})


def test_face_dataset_estimates_matches_and_checks_through_the_graph(tmp_path):
    from dagster import AssetCheckKey, AssetKey, instance_for_test

    from beauty_pipeline.definitions import defs
    from beauty_pipeline.resources import (
        DemoDataResource,
        ManifestIOManager,
        PhotoSourceResource,
        StudyStorage,
    )

    seeded(0)
    checkpoint = save_state(tmp_path / "fairface.pt", build_fairface_backbone().state_dict())
    resources = {**defs.resources, "io_manager": ManifestIOManager(root=str(tmp_path)),
                 "storage": StudyStorage(root=str(tmp_path)),
                 "photo_source": PhotoSourceResource(kind="demo"),
                 "demo_data": DemoDataResource(image_size=24, persons=4, photos_per_person=4,
                                               ordinary=60)}
    with instance_for_test() as instance:
        run = asset_runner(instance, resources)
        materialize_persons(run, instance, "demo")
        run(["fairface_faces"], ops={"fairface_faces": {"config": {"source": "demo"}}})
        result = run(["face_dataset"], ops={"face_dataset": {"config": {
            "fairface_checkpoint": str(checkpoint), "match_demographics": "gender"}}})
        metadata = instance.get_latest_materialization_event(
            AssetKey("face_dataset")).asset_materialization.metadata
        key = AssetCheckKey(AssetKey("face_dataset"), "attribute_mix_parity")
        [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        check = record.event.dagster_event.event_specific_data
    study = result.output_for_node("face_dataset")
    celebrity = study[study["looks"] == 1]
    assert metadata["celebrity_attribute_estimates"].value == "made"
    assert celebrity["age_estimate"].isin(FAIRFACE_AGES).all()
    assert ((celebrity["race_confidence"] > 0) & (celebrity["race_confidence"] <= 1)).all()
    assert (celebrity.groupby("person")["race_estimate"].nunique() == 1).all()  # pooled
    assert (celebrity["gender_source"] == "label").all()  # the demo's own labels win
    matching = metadata["demographic_matching"].value
    assert matching["matched_on"] == ["gender"] and matching["celebrity_rows_kept"] >= 0.5
    mix = metadata["attribute_mix"].value
    assert mix["celebrity"]["gender"]["shares"] == mix["ordinary"]["gender"]["shares"]
    assert check.passed or "could tell the classes apart" in check.description
    assert "gender: 0.0 points" in check.description  # in the whole set and every split
    assert check.metadata["gender_gap_points_test"].value == 0.0


def test_strata_fall_back_to_coarser_attributes_when_few_rows_share_a_stratum():
    records = []
    for i in range(8):  # every celebrity White, every ordinary Black: no race stratum is shared
        records.append({"person": f"c{i}", "looks": 1, "gender": FAIRFACE_GENDERS[i % 2],
                        "age": "20-29", "race": "White"})
        records.append({"person": f"o{i}", "looks": 0, "gender": FAIRFACE_GENDERS[i % 2],
                        "age": "20-29", "race": "Black"})
    test = pd.DataFrame(records)
    correct = np.where(test["looks"] == 1, 1.0, 0.5)
    boot = IdentityBootstrap(test["person"], test["looks"], seed=0, replicates=200)
    result = strata_accuracy(test, correct, boot)
    assert result["strata_attributes"] == "gender+age" and result["matched_strata"] == 2
    assert result["acc_matched_strata"] == pytest.approx(0.75)
    assert result["acc_gender_male"] == pytest.approx(0.75)


def test_report_shows_mix_and_strata_accuracy(tmp_path):
    from beauty_pipeline.report.html import render_report

    frame = pd.DataFrame(rows(1, "a", 3, "Male", "20-29", "White")
                         + rows(0, "o", 1, "Female", "20-29", "Black")
                         + rows(0, "p", 2, "Male", "20-29", "Black"))
    part = {"model": "resnet18", "background": "original", "attribute_mix": attribute_mix(frame),
            "strata": [{"stratum": "Male|20-29", "celebrity": 3, "ordinary": 2, "matched": True,
                        "accuracy": 0.8}, {"stratum": "<i>odd", "celebrity": 0, "ordinary": 1,
                                           "matched": False, "accuracy": 1.0}],
            "strata_attributes": "gender+age",
            "metrics": {"acc_matched_strata": 0.8, "acc_matched_strata_ci_low": 0.6,
                        "acc_matched_strata_ci_high": 0.9, "acc_gender_male": 0.8,
                        "matched_strata_share": 0.83}}
    html = render_report([part], tmp_path).read_text()
    assert "Demographics of the test set" in html
    assert "Male 67%, Female 33%" in html and "White 100%" in html
    assert "0.800 [0.60, 0.90]" in html and "Male: 0.800" in html
    assert "&lt;i&gt;odd" in html and "<i>odd" not in html


def test_weighted_mean_with_equal_weights_is_the_mean_and_mode_names_are_checked():
    from pydantic import ValidationError

    from beauty_pipeline.assets.dataset import DatasetConfig

    labels = np.array([0, 0, 1, 1, 1, 0])
    values = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    boot = IdentityBootstrap(["a", "b", "c", "d", "e", "f"], labels, seed=3, replicates=500)
    assert boot.weighted_mean(values, np.full(6, 2.0)) == boot.mean(values)
    weighted = boot.weighted_mean(values, np.array([1, 1, 1, 1, 1, 0.0]))
    assert weighted == boot.mean(values, np.array([True] * 5 + [False]))
    assert DatasetConfig().match_demographics == "none"
    with pytest.raises(ValidationError, match="match_demographics"):
        DatasetConfig(match_demographics="race")


def test_race_pooled_per_person_by_summed_confidence():
    from beauty_pipeline.data.demographics import pool_by_person

    estimates = pd.DataFrame({"race_estimate": ["White", "Indian", "Indian", "Black"],
                              "race_confidence": [0.9, 0.4, 0.4, 0.6],
                              "age_estimate": ["20-29", "30-39", "20-29", "3-9"],
                              "age_confidence": [0.5, 0.6, 0.7, 0.8]})
    pooled = pool_by_person(estimates, ["a", "a", "a", "b"])
    # a: White 0.9 vs Indian 0.8 -> White, confidence 0.9 / 3 photos; b keeps its one photo
    assert pooled["race_estimate"].tolist() == ["White", "White", "White", "Black"]
    np.testing.assert_allclose(pooled["race_confidence"], [0.3, 0.3, 0.3, 0.6])
    pd.testing.assert_frame_equal(pooled[["age_estimate", "age_confidence"]],
                                  estimates[["age_estimate", "age_confidence"]])
