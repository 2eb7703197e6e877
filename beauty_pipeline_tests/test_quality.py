"""Source quality cues per image, their class comparison, the quality_parity check and matching."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import asset_runner, materialize_persons, ranking_from_labels, require_shared
from PIL import Image

from beauty_pipeline.checks import quality_parity
from beauty_pipeline.data.quality import (
    MAX_P,
    MIN_RELATIVE_GAP,
    MIN_SMD,
    compare_cue,
    match_quality,
    quality_by_class,
    quality_summary,
    quality_targets,
    standardised_mean_difference,
)
from beauty_pipeline.report.html import quality_matching_text, render_report, summary_markdown
from beauty_pipeline.storage import ImageStore, encode_png
from beauty_pipeline.vision.quality import (
    face_share,
    face_sharpness,
    ijg_luma_table,
    image_cues,
    jpeg_quality_estimate,
)


def textured(seed: int, size: int = 224) -> np.ndarray:
    """A detailed RGB image (smoothed noise), the same for the same seed."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 0.8)


def jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def test_jpeg_quality_estimate_recovers_the_encoders_quality():
    image = textured(0)
    estimates = {q: jpeg_quality_estimate(jpeg(image, q)) for q in (10, 30, 60, 75, 90, 95)}
    assert estimates == {10: 10.0, 30: 30.0, 60: 60.0, 75: 75.0, 90: 90.0, 95: 95.0}
    assert list(ijg_luma_table(50)[:8]) == [16, 11, 10, 16, 24, 40, 51, 61]  # Annex K itself
    assert math.isnan(jpeg_quality_estimate(encode_png(image)))  # lossless: recorded as NaN
    with pytest.raises(OSError):
        jpeg_quality_estimate(b"not an image at all")


def test_blur_lowers_sharpness_and_the_fixed_scale_makes_sizes_comparable():
    image = textured(1)
    box = (40, 30, 184, 200)
    sharp = face_sharpness(image, box)
    blurred = face_sharpness(cv2.GaussianBlur(image, (0, 0), 2.0), box)
    # the same photo at twice the size reads about the same: measured at a 64 px face
    double = cv2.resize(image, (448, 448), interpolation=cv2.INTER_LINEAR)
    doubled = face_sharpness(double, tuple(2 * v for v in box))
    print(f"\nsharpness original {sharp:.1f}, blurred (sigma 2) {blurred:.1f}, 2x {doubled:.1f}")
    assert blurred < 0.2 * sharp
    assert doubled == pytest.approx(sharp, rel=0.2)  # bilinear 2x softens a little
    # ... where the Laplacian at native scale would call the larger photo far blurrier
    def native(im):
        return cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(float), cv2.CV_64F).var()
    assert native(double) < 0.3 * native(image)
    # a face upsampled from 32 px carries less detail than the 170 px original
    low = cv2.resize(cv2.resize(image, (42, 42), interpolation=cv2.INTER_AREA), (224, 224),
                     interpolation=cv2.INTER_LINEAR)
    assert face_sharpness(low, box) < 0.5 * sharp
    assert math.isnan(face_sharpness(image, (300, 300, 400, 400)))  # box outside the image


def test_image_cues_of_a_face_box():
    image = textured(2, 200)
    cues = image_cues(jpeg(image, 60), image, (50, 40, 150, 160))
    assert cues["face_px"] == 120 and cues["jpeg_quality"] == 60
    assert cues["face_share"] == pytest.approx(100 * 120 / 200 ** 2)
    assert face_share((-50, -50, 50, 50), (200, 200)) == pytest.approx(0.0625)  # inside part only
    unknown = image_cues(None, image, None)
    assert all(math.isnan(v) for v in unknown.values())


def frame(celebrity: list[float], ordinary: list[float], per_person: int = 1,
          cue: str = "face_px") -> pd.DataFrame:
    """A study-like frame: celebrity values grouped per_person to a person, ordinary one each."""
    return pd.DataFrame({
        "looks": [1] * len(celebrity) + [0] * len(ordinary),
        "person": [f"c{i // per_person}" for i in range(len(celebrity))]
        + [f"o{i}" for i in range(len(ordinary))],
        cue: celebrity + ordinary})


def test_class_comparison_numbers_on_a_known_sample():
    # means 2 and 5, both SDs 1: SMD -3; complete separation of 3 vs 3: exact p = 2/20
    assert standardised_mean_difference(np.array([1., 2, 3]), np.array([4., 5, 6])) == -3.0
    row = compare_cue(frame([1, 2, 3], [4, 5, 6]), "face_px")
    assert row["celebrity"] == {"n": 3, "persons": 3, "median": 2.0, "mean": 2.0, "sd": 1.0}
    assert row["smd"] == -3.0 and row["p_images"] == pytest.approx(0.1)
    assert not row["separates"]  # large effect, but 3 vs 3 cannot reach p < 0.01
    # 30 celebrity images of 10 persons: the person-level p is the larger, honest one
    celebrity = [100.0 + (i % 7) for i in range(30)]
    ordinary = [90.0 + (i % 7) for i in range(30)]
    row = compare_cue(frame(celebrity, ordinary, per_person=3), "face_px")
    spread = np.std([i % 7 for i in range(30)], ddof=1)
    assert row["smd"] == pytest.approx(10 / spread)
    assert row["celebrity"]["persons"] == 10 and row["p_images"] < row["p_persons"] < MAX_P
    assert row["separates"] and abs(row["smd"]) > MIN_SMD
    # a scale-free SMD on a near-constant cue: large, but the means are 1 % apart
    row = compare_cue(frame([100.0] * 30, [99.0, 99.5] * 15, per_person=3), "face_px")
    assert abs(row["smd"]) > MIN_SMD and row["p_persons"] < MAX_P
    assert row["relative_gap"] == pytest.approx(0.75 / 100) and not row["separates"]
    # mirrored copies repeat their source: counted once
    mirrored = frame([1, 2, 3], [4, 5, 6]).assign(flipped=[False, False, True, False, False, False])
    assert compare_cue(mirrored, "face_px")["celebrity"]["n"] == 2


def test_unmeasured_class_is_not_compared():
    study = frame([1.0, 2, 3], [4.0, 5, 6]).assign(jpeg_quality=[np.nan] * 3 + [75.0, 80, 70])
    table = quality_by_class(study)
    assert not table["jpeg_quality"]["measured"] and not table["jpeg_quality"]["separates"]
    assert table["jpeg_quality"]["ordinary"]["median"] == 75.0
    assert not table["sharpness"]["measured"]  # no column at all
    check = quality_parity(table, matched=False)
    assert check.passed
    assert "jpeg_quality (not measured for celebrity)" in check.description
    assert "sharpness (not measured for ordinary or celebrity)" in check.description


def test_check_warns_with_the_numbers_when_a_cue_separates():
    celebrity = [100.0 + (i % 7) for i in range(30)]
    ordinary = [60.0 + (i % 7) for i in range(30)]
    table = quality_by_class(frame(celebrity, ordinary, per_person=3))
    check = quality_parity(table, matched=False)
    assert not check.passed and check.severity.value == "WARN"
    smd = 40 / np.std([i % 7 for i in range(30)], ddof=1)  # same spread, means 40 apart
    assert check.description.startswith("face_px separates the classes: median celebrity 103 vs "
                                        f"ordinary 63, SMD {smd:.3g}, p ")
    assert check.metadata["face_px_smd"].value == pytest.approx(table["face_px"]["smd"])
    assert check.metadata["separating_cues"].value == ["face_px"]
    assert check.metadata["face_px_celebrity_n"].value == 30
    alike = quality_parity(quality_by_class(frame(ordinary, ordinary)), matched=True)
    assert alike.passed and alike.description.startswith("after match_quality: no quality cue")


CROP, FACE_BOX = 240, (40.0, 40.0, 200.0, 200.0)  # a 160 px face in a 240 px crop


def crop_with_detail(seed: int, detail: float) -> np.ndarray:
    """A crop whose face carries `detail` px across: a detailed crop averaged down to that scale
    and resized back up, as a small source photo upsampled by the face stage."""
    side = round(CROP * detail / 160)
    small = cv2.resize(textured(seed, CROP), (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (CROP, CROP), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Celebrity faces from 150-160 px sources, ordinary ones upsampled from 70-78 px: a
    resolution cue planted in pixels and in the recorded face_px."""
    store = ImageStore(tmp_path_factory.mktemp("quality") / "images")
    rows = []
    for i in range(40):
        looks = int(i < 20)
        detail = 150.0 + (i % 11) if looks else 70.0 + (i % 9)
        image = crop_with_detail(i, detail)
        rows.append({"image_key": store.put_array(image), "person": f"p{i // 2 if looks else i}",
                     "looks": looks, "face_x0": FACE_BOX[0], "face_y0": FACE_BOX[1],
                     "face_x1": FACE_BOX[2], "face_y1": FACE_BOX[3], "face_px": detail,
                     "jpeg_quality": np.nan, "sharpness": face_sharpness(image, FACE_BOX),
                     "face_share": (160 / 240) ** 2})
    return store, pd.DataFrame(rows)


def test_match_quality_removes_a_planted_resolution_cue(planted):
    store, faces = planted
    before = quality_by_class(faces)
    assert before["face_px"]["separates"] and before["sharpness"]["separates"]
    assert not quality_parity(before, matched=False).passed
    median_matched, targets = match_quality(faces, store)
    ordinary = faces["looks"] == 0
    target = float(faces.loc[ordinary, "face_px"].median())
    assert target == 73.5 and targets["face_px"] == target and targets["jpeg_quality"] is None
    assert targets["notes"] == ["no JPEG source in either class: not re-encoded"]
    expected = [f"face {px:.0f}->{target:.0f} px" if px > target else "unchanged" for px in faces["face_px"]]
    assert median_matched["quality_match"].tolist() == expected
    assert (median_matched["face_px"] == np.minimum(faces["face_px"], target)).all()
    assert (median_matched["face_px_before_match"] == faces["face_px"]).all()
    after = quality_by_class(median_matched)
    # celebrity faces now carry the ordinary median's detail: the resolution cue shrinks to the
    # ordinary faces below the median, and the sharpness cue goes below MIN_SMD
    assert abs(after["face_px"]["smd"]) < abs(before["face_px"]["smd"]) / 20
    assert abs(after["sharpness"]["smd"]) < MIN_SMD < abs(before["sharpness"]["smd"])
    # what remains of face_px is under a pixel on average: below the 5 % gap floor, so it passes
    assert after["face_px"]["relative_gap"] < MIN_RELATIVE_GAP
    assert quality_parity(after, matched=True).passed
    # the minimum as target evens out face_px entirely; the faces resampled to it (all celebrity
    # ones) then read sharper than ordinary ones that were already upsampled once: a residual
    # the check still names
    minimum_matched, low = match_quality(faces, store, quantile=0.0)
    at_minimum = quality_by_class(minimum_matched)
    assert low["face_px"] == 70.0 and at_minimum["face_px"]["smd"] == 0.0
    check = quality_parity(at_minimum, matched=True)
    assert check.metadata["separating_cues"].value == ["sharpness"]
    assert 0 < at_minimum["sharpness"]["smd"] < before["sharpness"]["smd"]
    print("\nplanted resolution cue, SMD before / after median matching / after minimum: "
          + "; ".join(f"{cue} {before[cue]['smd']:.2f} / {after[cue]['smd']:.2f} / "
                      f"{at_minimum[cue]['smd']:.2f}" for cue in ("face_px", "sharpness")))
    again, _ = match_quality(faces, store)  # deterministic: same inputs, same image keys
    assert again["image_key"].tolist() == median_matched["image_key"].tolist()


def test_jpeg_matching_re_encodes_everything_at_the_lower_quality(tmp_path):
    store = ImageStore(tmp_path / "images")
    images = [textured(10 + i, 120) for i in range(4)]
    faces = pd.DataFrame({
        "image_key": [store.put_array(im) for im in images], "person": ["a", "b", "c", "d"],
        "looks": [1, 1, 0, 0], "face_x0": 10.0, "face_y0": 10.0, "face_x1": 110.0,
        "face_y1": 110.0, "face_px": 100.0, "jpeg_quality": [np.nan, np.nan, 70.0, 90.0]})
    targets = quality_targets(faces)
    assert targets["jpeg_quality"] == 80  # the lossless class takes the other's median
    matched, _ = match_quality(faces, store)
    assert matched["jpeg_quality"].tolist() == [80.0, 80.0, 70.0, 80.0]
    assert set(matched["quality_match"]) == {"jpeg q80"}
    assert not np.array_equal(store.load(matched["image_key"][0]), images[0])
    summary = quality_summary(matched)
    assert summary["match_quality"] and summary["target_jpeg_quality"] == 80.0
    assert quality_matching_text(summary) == (
        "Quality matching: used, both classes alike (quantile 0.5 of the lower class): faces "
        "resampled down to 100 px across; JPEG re-encoded at quality 80.")


def test_report_states_matching_and_the_quality_parity_result(tmp_path, planted):
    _, faces = planted
    summary = quality_summary(faces)
    assert not summary["match_quality"] and not summary["passed"]
    part = {"model": "resnet18", "background": "original", "verdict": "face",
            "metrics": {"acc_original": 0.9}}
    html = render_report([part], tmp_path, dataset=summary).read_text()
    assert "Quality matching: not used" in html and "quality_parity: WARN: face_px separates" in html
    assert '<table id="quality-cues">' in html
    markdown = summary_markdown([part], summary)
    assert "Quality matching: not used" in markdown and "quality\\_parity: WARN" in markdown


def test_real_crops_differ_in_resolution_from_fairface(yunet_model, tmp_path):
    """24 public figures' 112 px web crops vs FairFace's 224 px images through the face stage."""
    from beauty_pipeline.vision.faces import FaceConfig, process_photos

    crops = require_shared("data", "celebrity_crops_glint")
    fairface = require_shared("data", "fairface_margin025")
    store = ImageStore(tmp_path / "images")
    celebrity = pd.read_csv(crops / "labels.csv").groupby("identity").head(4)
    ordinary = pd.read_csv(fairface / "labels.csv").head(100)
    config = FaceConfig(detector_model_path=str(yunet_model), workers=1)
    kept = []
    for folder, labels, looks in ((crops, celebrity, 1), (fairface, ordinary, 0)):
        keys = [store.put_bytes((folder / f).read_bytes(), f.rsplit(".", 1)[1].lower()
                                .replace("jpeg", "jpg")) for f in labels["file"]]
        people = labels["identity"] if looks else "fairface:" + labels["file"]
        frame_in = pd.DataFrame({"row_id": labels["file"].to_numpy(), "image_key": keys,
                                 "person": people.to_numpy(), "looks": looks})
        faces, _ = process_photos(frame_in, store, config, source="test")
        kept.append(faces)
    faces = pd.concat(kept, ignore_index=True)
    table = quality_by_class(faces)
    print("\nreal cues (glint 24 public figures vs FairFace margin 0.25):")
    for cue, row in table.items():
        print(f"  {cue}: celebrity median {row['celebrity']['median']:.4g} (n {row['celebrity']['n']},"
              f" {row['celebrity']['persons']} persons), ordinary median "
              f"{row['ordinary']['median']:.4g} (n {row['ordinary']['n']}), SMD {row['smd']:.2f}, "
              f"p persons {row['p_persons']:.2g}, p images {row['p_images']:.2g}, "
              f"separates {row['separates']}")
    assert (faces["looks"] == 1).sum() >= 60 and (faces["looks"] == 0).sum() >= 60
    assert table["face_px"]["separates"] and table["face_px"]["smd"] < -MIN_SMD
    # 112 px aligned crops hold a ~100 px face; FairFace's 224 px images a ~210 px one
    assert 90 < table["face_px"]["celebrity"]["median"] < 115
    assert 190 < table["face_px"]["ordinary"]["median"] < 225
    assert table["jpeg_quality"]["celebrity"]["n"] == 0  # PNG crops: lossless, not compared
    assert table["jpeg_quality"]["ordinary"]["median"] == pytest.approx(75, abs=15)
    matched, targets = match_quality(faces, store)
    after = quality_by_class(matched)
    print(f"  after match_quality (targets face {targets['face_px']:.0f} px, JPEG q"
          f"{targets['jpeg_quality']}): " + "; ".join(
              f"{cue} SMD {after[cue]['smd']:.2f} p persons {after[cue]['p_persons']:.2g}"
              for cue in after))
    assert abs(after["face_px"]["smd"]) < abs(table["face_px"]["smd"]) / 2


def test_face_dataset_records_cues_and_checks_them_with_and_without_matching(tmp_path):
    """The real graph on a small demo: quality_by_class metadata, the quality_parity check, and
    match_quality giving new images with what was applied recorded per row."""
    from dagster import AssetCheckKey, AssetKey, instance_for_test

    from beauty_pipeline.definitions import defs
    from beauty_pipeline.resources import (
        DemoDataResource,
        ManifestIOManager,
        PhotoSourceResource,
        StudyStorage,
    )

    resources = {**defs.resources, "io_manager": ManifestIOManager(root=str(tmp_path)),
                 "storage": StudyStorage(root=str(tmp_path)),
                 "photo_source": PhotoSourceResource(kind="demo"),
                 "demo_data": DemoDataResource(persons=6, photos_per_person=8, ordinary=48)}
    with instance_for_test() as instance:
        run = asset_runner(instance, resources)
        materialize_persons(run, instance, "demo", "known")
        run(["fairface_faces"], ops={"fairface_faces": {"config": {"source": "demo"}}})
        outcomes = {}
        for matched in (False, True):
            result = run(["face_dataset"], ops={"face_dataset": {"config": {
                "match_quality": matched}}})
            metadata = instance.get_latest_materialization_event(
                AssetKey("face_dataset")).asset_materialization.metadata
            [check] = instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(AssetKey("face_dataset"), "quality_parity"), limit=1)
            outcomes[matched] = (result.output_for_node("face_dataset"), metadata,
                                 check.event.dagster_event.event_specific_data)
    plain, metadata, check = outcomes[False]
    table = metadata["quality_by_class"].value
    assert table["face_px"]["celebrity"]["n"] == int((~plain["flipped"] & (plain["looks"] == 1))
                                                     .sum())
    assert table["jpeg_quality"]["celebrity"]["n"] == 0  # rendered, stored as PNG
    assert table["sharpness"]["ordinary"]["median"] > 0 and metadata["match_quality"].value is False
    assert check.severity.value == "WARN" and "jpeg_quality (not measured" in check.description
    assert check.passed == (not any(row["separates"] for row in table.values()))
    matched, metadata, check = outcomes[True]
    targets = metadata["match_quality_targets"].value
    assert metadata["match_quality"].value is True and targets["jpeg_quality"] is None
    assert targets["face_px"] == min(targets["face_px_by_class"].values())
    own = matched[~matched["flipped"]]
    changed = own["quality_match"] != "unchanged"
    assert changed.sum() >= len(own) // 2  # at least the larger class's upper half
    # resampled images get new keys; unchanged ones keep theirs (the store is content-addressed)
    assert (own["image_key"] != own["source_crop_key"]).tolist() == changed.tolist()
    assert matched["quality_match"].str.match(r"^(face \d+->\d+ px|unchanged)$").all()
    assert (own.loc[changed, "face_px"] == targets["face_px"]).all()
    # faces within a pixel's rounding above the target were left as they are
    assert (own.loc[~changed, "face_px"] < targets["face_px"] + 1).all()
    assert check.description.startswith("after match_quality: ")
    print(f"\ndemo quality cues: {table}\nmatched targets {targets}: {check.description}")


def test_real_face_dataset_warns_and_match_quality_shrinks_the_resolution_cue(tmp_path,
                                                                             yunet_model):
    """Eight public figures' 112 px crops vs 160 FairFace images through the real graph, then
    face_dataset again with match_quality: the numbers the README quotes."""
    from dagster import AssetCheckKey, AssetKey, instance_for_test

    from beauty_pipeline.definitions import defs
    from beauty_pipeline.resources import (
        DemoDataResource,
        FacePreprocessing,
        ManifestIOManager,
        PhotoSourceResource,
        StudyStorage,
    )

    crops = require_shared("data", "celebrity_crops_glint")
    fairface = require_shared("data", "fairface_margin025")
    labels = pd.read_csv(crops / "labels.csv")
    eight = labels[labels["identity"].isin(labels["identity"].drop_duplicates().head(8))]
    ranking_csv = ranking_from_labels(eight, tmp_path / "ranking.csv")
    resources = {**defs.resources, "io_manager": ManifestIOManager(root=str(tmp_path)),
                 "storage": StudyStorage(root=str(tmp_path)),
                 "photo_source": PhotoSourceResource(kind="local", local_dir=str(crops)),
                 "demo_data": DemoDataResource(),
                 "face_stage": FacePreprocessing(detector_model_path=str(yunet_model), workers=1)}
    with instance_for_test() as instance:
        run = asset_runner(instance, resources)
        materialize_persons(run, instance, str(ranking_csv), "yunet")
        run(["fairface_faces"], ops={"fairface_faces": {"config": {
            "source": "fairface", "fairface_dir": str(fairface), "limit": 160}}})
        outcomes = {}
        for matched in (False, True):
            run(["face_dataset"], ops={"face_dataset": {"config": {"match_quality": matched}}})
            metadata = instance.get_latest_materialization_event(
                AssetKey("face_dataset")).asset_materialization.metadata
            [check] = instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(AssetKey("face_dataset"), "quality_parity"), limit=1)
            outcomes[matched] = (metadata, check.event.dagster_event.event_specific_data)
    (plain, check), (matched, after_check) = outcomes[False], outcomes[True]
    before, after = plain["quality_by_class"].value, matched["quality_by_class"].value
    recorded = matched["quality_by_class_before_match"].value  # same split, same source images
    for cue, row in before.items():
        for name in ("celebrity", "ordinary"):
            assert recorded[cue][name]["n"] == row[name]["n"]
            assert recorded[cue][name]["median"] == pytest.approx(row[name]["median"])
        assert recorded[cue]["smd"] == pytest.approx(row["smd"])
    assert plain["quality_by_class_before_match"].value == {}
    targets = matched["match_quality_targets"].value
    for name, table, result in (("as made", before, check), ("matched", after, after_check)):
        print(f"\n{name}: quality_parity passed={result.passed}: {result.description}")
        for cue, row in table.items():
            print(f"  {cue}: celebrity median {row['celebrity']['median']} (n "
                  f"{row['celebrity']['n']}), ordinary median {row['ordinary']['median']} (n "
                  f"{row['ordinary']['n']}), SMD {row['smd']}, p persons {row['p_persons']}")
    print(f"targets {targets}")
    assert not check.passed and "face_px separates the classes" in check.description
    assert before["face_px"]["smd"] < -5  # ~100 px vs ~200 px faces
    assert 90 < targets["face_px"] < 115 and targets["jpeg_quality"] == 75
    assert abs(after["face_px"]["smd"]) < abs(before["face_px"]["smd"]) / 5
    assert after["jpeg_quality"]["celebrity"]["median"] == 75  # PNG crops re-encoded too
    assert after_check.description.startswith("after match_quality: ")
    assert not after["face_px"]["separates"] and not after["jpeg_quality"]["separates"]
    assert "face_px" not in after_check.metadata["separating_cues"].value
