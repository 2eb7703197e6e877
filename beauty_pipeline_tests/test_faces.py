"""The face stage on constructed cases: every input row kept or dropped with the right reason."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from conftest import require_shared
from PIL import Image

from beauty_pipeline.data.schema import FACE_COLUMNS
from beauty_pipeline.ranking import load_ranking
from beauty_pipeline.scraping import LocalFolderSource
from beauty_pipeline.storage import ImageStore, encode_png
from beauty_pipeline.vision.faces import DROP_REASONS, FaceConfig, process_photos


def rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def on_canvas(face: np.ndarray, size: int, canvas: int = 400) -> np.ndarray:
    """A face shrunk to `size` px on a plain grey canvas."""
    out = np.full((canvas, canvas, 3), 128, np.uint8)
    small = np.asarray(Image.fromarray(face).resize((size, size)))
    start = (canvas - size) // 2
    out[start:start + size, start:start + size] = small
    return out


@pytest.fixture(scope="module")
def cases(tmp_path_factory, yunet_model):
    """One photo per drop reason (and kept ones), stored like downloaded photos."""
    data = require_shared("data")
    store = ImageStore(tmp_path_factory.mktemp("store") / "images")
    frontal = rgb(data / "fairface_margin025" / "val" / "1.jpg")
    other = rgb(data / "fairface_margin025" / "val" / "2.jpg")
    jpeg = io.BytesIO()
    Image.fromarray(frontal).save(jpeg, format="JPEG", quality=85)
    photos = {
        "kept": store.put_array(frontal),
        "duplicate": store.put_bytes(jpeg.getvalue(), "jpg"),  # same photo, re-encoded
        "blank": store.put_array(np.full((300, 300, 3), 127, np.uint8)),
        "garbage": store.put_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg", "jpg"),
        "pair": store.put_array(np.concatenate([frontal, other], axis=1)),
        "small": store.put_array(on_canvas(frontal, 60)),
        "profile": store.put_bytes((data / "headpose_aflw2000_subset" / "image00004.jpg")
                                   .read_bytes(), "jpg"),
    }
    config = FaceConfig(detector_model_path=str(yunet_model), workers=1)
    kept, report = process_photos(list(photos.items()), store, config, person="someone",
                                  looks=1, source="local")
    return store, photos, kept, report.set_index("row_id"), config


def test_each_row_gets_its_drop_reason(cases):
    _, photos, _, report, _ = cases
    assert list(report.index) == list(photos)  # every input row, in input order
    expected = {"kept": "", "duplicate": "near_duplicate", "blank": "no_face",
                "garbage": "undecodable", "pair": "several_faces", "small": "too_small",
                "profile": "non_frontal"}
    assert report["drop_reason"].to_dict() == expected
    assert set(report["drop_reason"]) <= set(DROP_REASONS)
    assert report.loc["profile", "yaw"] > 45  # the angles that made it non-frontal are kept
    assert "near-duplicate of row kept" in report.loc["duplicate", "detail"]
    assert report.loc["pair", "n_faces"] == 2
    assert report.loc["small", "face_px"] < 80


def test_kept_face_is_a_centred_300px_crop_in_the_manifest_schema(cases):
    store, photos, kept, _, config = cases
    assert list(kept.columns[:len(FACE_COLUMNS)]) == list(FACE_COLUMNS)
    assert {"phash", "yaw", "pitch", "roll", "det_score"} <= set(kept.columns)
    (row,) = kept.to_dict("records")
    assert row["image_key"] != photos["kept"] and row["source_key"] == photos["kept"]
    crop = store.load(row["image_key"])
    assert crop.shape == (300, 300, 3)
    assert (row["face_x0"] + row["face_x1"]) / 2 == pytest.approx(150, abs=2)
    assert (row["face_y0"] + row["face_y1"]) / 2 == pytest.approx(150, abs=2)
    assert row["face_region_source"] == "detection"
    assert row["preprocessing"] == config.describe(False) and "margin=0.25" in row["preprocessing"]
    assert (row["person"], row["looks"], row["source"]) == ("someone", 1, "local")


def test_source_quality_cues_recorded_per_photo(cases):
    store, photos, kept, report, _ = cases
    (row,) = kept.to_dict("records")
    assert np.isnan(row["jpeg_quality"])  # stored as PNG: lossless, not a JPEG estimate
    assert report.loc["duplicate", "jpeg_quality"] == 85  # the copy re-encoded at quality 85
    assert row["face_px"] == report.loc["kept", "face_px"] and 80 < row["face_px"] <= 224
    height, width = store.load(photos["kept"]).shape[:2]
    assert row["face_share"] == pytest.approx(min(row["face_px"], 224) ** 2 / (height * width),
                                              rel=0.3)  # a face box of about face_px square
    assert row["sharpness"] > 0 and report.loc["kept", "sharpness"] == row["sharpness"]
    assert np.isnan(report.loc["garbage", "sharpness"]) and np.isnan(report.loc["blank", "face_px"])


def test_study_mode_takes_ordinary_aligned_crops_as_they_are(cases, yunet_model):
    store, photos, _, _, _ = cases
    study = FaceConfig(detector_model_path=str(yunet_model), workers=1, preprocessing="study")
    rows = pd.DataFrame({"image_key": [photos["kept"], photos["small"]],
                         "person": ["ff-1", "ff-2"], "age": ["20-29", "3-9"]})
    kept, report = process_photos(rows, store, study, person="", looks=0, source="fairface")
    assert (report["drop_reason"] == "").all()  # no filter on the ordinary side, as in the study
    assert kept["image_key"].tolist() == rows["image_key"].tolist()  # not re-cropped
    assert set(kept["preprocessing"]) == {"as_is(study)"}
    assert kept["face_px"].notna().all()  # as-is rows: measured on their face box too
    assert kept["age"].tolist() == ["20-29", "3-9"]
    celebrity, _ = process_photos(rows, store, study, looks=1, source="local")
    assert len(celebrity) == 1 and celebrity["preprocessing"].iloc[0].startswith("yunet_crop")


def test_process_pool_gives_the_same_result_as_one_process(cases, yunet_model):
    store, photos, kept, report, _ = cases
    pooled = FaceConfig(detector_model_path=str(yunet_model), workers=2, batch_size=2,
                        min_pool_images=1)
    kept2, report2 = process_photos(list(photos.items()), store, pooled, person="someone",
                                    looks=1, source="local")
    pd.testing.assert_frame_equal(report2.set_index("row_id"), report, check_exact=False)
    assert kept2["image_key"].tolist() == kept["image_key"].tolist()


def test_unicode_and_path_character_names_never_leave_the_roots(tmp_path, yunet_model):
    ranking_csv = tmp_path / "ranking.csv"
    ranking_csv.write_text("name,gender,rank,list,year\n"
                           "Rosé,female,1,l,2024\n지수,female,2,l,2024\n"
                           "../../outside,male,3,l,2024\n..\\win\\path,male,4,l,2024\n"
                           "Halil İbrahim Ceyhan,male,5,l,2024\n", encoding="utf-8")
    ranking = load_ranking(ranking_csv)
    photos = tmp_path / "photos"
    face = encode_png(rgb(require_shared("data", "fairface_margin025", "val", "1.jpg")))
    for folder in ("Rosé", "지수", "outside", "win-path", "Halil_Ibrahim_Ceyhan"):
        (photos / folder).mkdir(parents=True)
        (photos / folder / "1.png").write_bytes(face)
    store = ImageStore(tmp_path / "data" / "images")
    source = LocalFolderSource(photos)
    config = FaceConfig(detector_model_path=str(yunet_model), workers=1)
    for person, name in zip(ranking["person"], ranking["name"], strict=True):
        provenance = source.fetch(person, name, store)
        assert provenance["outcome"].tolist() == ["ok"], (name, provenance["reason"].tolist())
        kept, report = process_photos(provenance[["image_key"]], store, config, person=person,
                                      looks=1, source="local")
        assert kept["person"].tolist() == [person]
    root = (tmp_path / "data" / "images").resolve()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    outside = [p for p in written if not (p.resolve().is_relative_to(root)
                                          or p.resolve().is_relative_to(photos.resolve())
                                          or p == ranking_csv)]
    assert outside == []
    assert not (tmp_path.parent / "outside").exists()


def test_empty_input_and_bad_config_are_clear(tmp_path, yunet_model):
    config = FaceConfig(detector_model_path=str(yunet_model), workers=1)
    kept, report = process_photos([], ImageStore(tmp_path), config, person="p", looks=1)
    assert kept.empty and report.empty and "drop_reason" in report
    with pytest.raises(ValueError, match="preprocessing"):
        FaceConfig(preprocessing="sometimes")
    with pytest.raises(ValueError, match="hopenet_weights"):
        FaceConfig(pose_backend="hopenet")
    with pytest.raises(ValueError, match="'looks'"):
        process_photos([("a", "k")], ImageStore(tmp_path), config, person="p")


def test_a_stopped_face_stage_resumes_from_its_last_finished_chunk(tmp_path, yunet_model,
                                                                  monkeypatch):
    """Stopped after two chunks, the rerun detects only the photos of the chunks not finished,
    and ends with the same faces as an uninterrupted run."""
    from beauty_pipeline.vision import faces as stage

    data = require_shared("data")
    photos = sorted((data / "fairface_margin025" / "val").glob("*.jpg"))[:10]
    config = FaceConfig(detector_model_path=str(yunet_model), workers=1, batch_size=2)
    whole_store = ImageStore(tmp_path / "whole" / "images")
    items = [(p.stem, whole_store.put_bytes(p.read_bytes(), "jpg")) for p in photos]
    whole, _ = process_photos(items, whole_store, config, person="", looks=0, source="fairface")

    store = ImageStore(tmp_path / "stopped" / "images")
    items = [(p.stem, store.put_bytes(p.read_bytes(), "jpg")) for p in photos]
    real, seen = stage._process_one, []

    def counted(row_id, *args, **kwargs):
        seen.append(row_id)
        if len(seen) > 4:  # two chunks of two finished, the third interrupted
            raise KeyboardInterrupt
        return real(row_id, *args, **kwargs)

    monkeypatch.setattr(stage, "_process_one", counted)
    with pytest.raises(KeyboardInterrupt):
        process_photos(items, store, config, person="", looks=0, source="fairface")
    seen.clear()
    monkeypatch.setattr(stage, "_process_one", lambda row_id, *a, **k: (seen.append(row_id),
                                                                          real(row_id, *a, **k))[1])
    resumed, _ = process_photos(items, store, config, person="", looks=0, source="fairface")
    assert seen == [p.stem for p in photos[4:]]  # the four finished photos are not redone
    pd.testing.assert_frame_equal(resumed, whole)
