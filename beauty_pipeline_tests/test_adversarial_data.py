"""Adversarial inputs that used to lose or mix up data: empty or truncated rankings, mass deletions,
colliding person keys, odd image modes, photos in sub-folders, damaged caches and stored images."""

from __future__ import annotations

import codecs
import io
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from adversarial_support import (
    HEADER,
    Server,
    face_like,
    png_bytes,
    ranking_csv,
    reply,
    write_ranking,
)
from conftest import require_shared
from dagster import (
    AddDynamicPartitionsRequest,
    DeleteDynamicPartitionsRequest,
    SkipReason,
    build_input_context,
    build_output_context,
    build_sensor_context,
    instance_for_test,
)
from PIL import Image

from beauty_pipeline.automation import ranking_sensor
from beauty_pipeline.errors import PipelineError
from beauty_pipeline.partitions import person_partitions
from beauty_pipeline.person_registry import PersonKeyRegistry
from beauty_pipeline.ranking import RankingError, load_ranking, validate_ranking
from beauty_pipeline.resources import DemoDataResource, ManifestIOManager, StudyStorage
from beauty_pipeline.scraping import LocalFolderSource
from beauty_pipeline.storage import ImageStore, StoredImageError, atomic_write_bytes, write_parquet
from beauty_pipeline.training.cache import decoded_images
from beauty_pipeline.vision.decode import ALPHA_BACKGROUND, ImageDecodeError, decode_image

NAMES = [f"Person {chr(ord('A') + i)}" for i in range(10)]


# ---------------------------------------------------------------- rankings with no persons

@pytest.mark.parametrize("text", [
    HEADER, HEADER + "\n\n", "\ufeff" + HEADER, HEADER.replace("\n", "\r\n"),
    "name,gender,rank,list,year,country\n"], ids=["header", "blank-lines", "bom", "crlf", "country"])
def test_header_only_ranking_file_is_an_error(tmp_path, text):
    path = tmp_path / "ranking.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RankingError, match="no persons"):
        load_ranking(path)


@pytest.mark.parametrize("data", [b"", b"   \n"], ids=["zero-bytes", "whitespace"])
def test_empty_ranking_file_is_an_error(tmp_path, data):
    path = tmp_path / "ranking.csv"
    path.write_bytes(data)
    with pytest.raises(RankingError, match=str(path)):
        load_ranking(path)


def test_header_only_ranking_url_is_an_error():
    with Server(lambda r: reply(r, 200, HEADER.encode())) as server, \
            pytest.raises(RankingError, match="no persons"):
        load_ranking(f"{server.base}/ranking.csv", timeout=5)


# ---------------------------------------------------------------- the sensor never wipes the study

@pytest.fixture
def sensor_world(tmp_path, monkeypatch):
    csv = tmp_path / "ranking.csv"
    monkeypatch.setenv("BEAUTY_PIPELINE_RANKING", str(csv))
    monkeypatch.setenv("BEAUTY_PIPELINE_HOME", str(tmp_path / "root"))
    for name in ("BEAUTY_PIPELINE_MAX_REMOVED_SHARE", "BEAUTY_PIPELINE_CONFIRM_RANKING"):
        monkeypatch.delenv(name, raising=False)
    with instance_for_test() as instance:
        write_ranking(csv, NAMES)
        first = tick(instance)
        apply(instance, first)
        assert len(instance.get_dynamic_partitions(person_partitions.name)) == 10
        yield csv, instance


def tick(instance):
    context = build_sensor_context(instance=instance, resources={
        "demo_data": DemoDataResource(), "storage": StudyStorage()})
    return ranking_sensor(context)


def apply(instance, result):
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def partitions(instance) -> list[str]:
    return sorted(instance.get_dynamic_partitions(person_partitions.name))


@pytest.mark.parametrize("content", [HEADER, "", "name;gender\nx;y\n"],
                         ids=["header-only", "zero-bytes", "wrong-columns"])
def test_sensor_skips_an_unusable_ranking_and_keeps_every_partition(sensor_world, content):
    csv, instance = sensor_world
    before = partitions(instance)
    csv.write_text(content)
    result = tick(instance)
    assert isinstance(result, SkipReason) and "nothing changed" in result.skip_message
    assert partitions(instance) == before


@pytest.mark.parametrize("kept,allowed", [(9, True), (8, True), (7, False), (1, False)],
                         ids=["remove-1", "remove-2-at-limit", "remove-3", "remove-9"])
def test_sensor_refuses_deleting_more_than_a_fifth(sensor_world, kept, allowed):
    csv, instance = sensor_world
    before = partitions(instance)
    write_ranking(csv, NAMES[:kept])
    result = tick(instance)
    if allowed:
        [request] = result.dynamic_partitions_requests
        assert isinstance(request, DeleteDynamicPartitionsRequest)
        assert len(request.partition_keys) == 10 - kept
    else:
        assert isinstance(result, SkipReason)
        assert f"delete {10 - kept} of 10 persons" in result.skip_message
        assert "BEAUTY_PIPELINE_CONFIRM_RANKING=" in result.skip_message
        assert partitions(instance) == before


def test_a_confirmed_mass_deletion_goes_ahead(sensor_world, monkeypatch):
    csv, instance = sensor_world
    write_ranking(csv, NAMES[:3])
    refused = tick(instance)
    digest = refused.skip_message.split("BEAUTY_PIPELINE_CONFIRM_RANKING=")[1].split()[0]
    monkeypatch.setenv("BEAUTY_PIPELINE_CONFIRM_RANKING", digest)
    result = tick(instance)
    apply(instance, result)
    assert len(partitions(instance)) == 3


def test_a_raised_share_lets_a_deletion_through(sensor_world, monkeypatch):
    csv, instance = sensor_world
    monkeypatch.setenv("BEAUTY_PIPELINE_MAX_REMOVED_SHARE", "0.5")
    write_ranking(csv, NAMES[:6])
    apply(instance, tick(instance))
    assert len(partitions(instance)) == 6


def test_a_bad_share_setting_is_named_and_deletes_nothing(sensor_world, monkeypatch):
    csv, instance = sensor_world
    monkeypatch.setenv("BEAUTY_PIPELINE_MAX_REMOVED_SHARE", "lots")
    write_ranking(csv, NAMES[:9])
    result = tick(instance)
    assert isinstance(result, SkipReason) and "BEAUTY_PIPELINE_MAX_REMOVED_SHARE" in result.skip_message
    assert len(partitions(instance)) == 10


# ---------------------------------------------------------------- person keys never move

@pytest.mark.parametrize("first,newcomer", [
    ("José Li", "Jose Li"), ("Rosé", "Rose"), ("Zoë Kravitz", "Zoe Kravitz"),
    ("Anne-Marie", "Anne Marie"), ("Björk", "Bjork"), ("Beyoncé", "BEYONCÉ!")])
def test_a_newcomer_never_takes_an_assigned_key(tmp_path, first, newcomer):
    registry = PersonKeyRegistry(tmp_path / "keys.json")
    old = validate_ranking(pd.read_csv(io.StringIO(ranking_csv([first]))), registry=registry)
    key = old["person"].item()
    both = validate_ranking(pd.read_csv(io.StringIO(ranking_csv([newcomer, first]))),
                            registry=registry)
    keys = dict(zip(both["name"], both["person"], strict=True))
    assert keys[first] == key
    assert keys[newcomer] != key and keys[newcomer].startswith(key.split("-")[0])
    # deterministic: a copy of the same history gives the newcomer the same key
    again = PersonKeyRegistry(tmp_path / "copy.json")
    again.assign([first])
    assert again.assign([newcomer])[newcomer] == keys[newcomer]


def test_a_removed_persons_key_is_not_handed_to_a_lookalike(tmp_path):
    registry = PersonKeyRegistry(tmp_path / "keys.json")
    jose = registry.assign(["José Li"])["José Li"]
    # José leaves the list; a year later "Jose Li" arrives
    assert registry.assign(["Jose Li"])["Jose Li"] != jose
    assert registry.assign(["José Li"])["José Li"] == jose


def test_a_damaged_key_registry_is_an_error_not_a_silent_reassignment(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(PipelineError, match="registry"):
        PersonKeyRegistry(path).assign(["Anyone"])


# ---------------------------------------------------------------- names and encodings

@pytest.mark.parametrize("name", ["Ann\x00Lee", "Ann\x1bLee", "Ann\x7fLee"],
                         ids=["nul", "escape", "delete"])
def test_control_characters_in_a_name_are_rejected(name):
    raw = pd.DataFrame([{"name": name, "gender": "f", "rank": "1", "list": "l", "year": "2024"}])
    with pytest.raises(RankingError, match="control character"):
        validate_ranking(raw)


def test_a_nul_byte_in_a_ranking_file_is_rejected(tmp_path):
    path = tmp_path / "ranking.csv"
    path.write_bytes(ranking_csv(["Ann\x00Lee"]).encode())
    with pytest.raises(RankingError, match="NUL"):
        load_ranking(path)


@pytest.mark.parametrize("codec,bom", [("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE),
                                       ("utf-16-be", codecs.BOM_UTF16_BE),
                                       ("utf-32-le", codecs.BOM_UTF32_LE)])
def test_marked_unicode_rankings_are_read(tmp_path, codec, bom):
    path = tmp_path / "ranking.csv"
    path.write_bytes(bom + ranking_csv(["Zoë Ångström"]).encode(codec))
    assert load_ranking(path)["name"].tolist() == ["Zoë Ångström"]


@pytest.mark.parametrize("codec,hint", [("latin-1", "Latin-1"), ("cp1252", "Latin-1"),
                                        ("utf-16-le", "UTF-16")])
def test_unmarked_foreign_encodings_are_named(tmp_path, codec, hint):
    path = tmp_path / "ranking.csv"
    name = "Zoë “Z” Ångström" if codec == "cp1252" else "Zoë Ångström"
    path.write_bytes(ranking_csv([name]).encode(codec))
    with pytest.raises(RankingError) as caught:
        load_ranking(path)
    message = str(caught.value)
    assert str(path) in message and hint in message and "UTF-8" in message
    assert "\n" not in message


# ---------------------------------------------------------------- every image mode decodes truly

def gradient(dtype, high) -> np.ndarray:
    return np.linspace(0, high, 32 * 32).reshape(32, 32).astype(dtype)


def encoded(array, mode=None, fmt="PNG") -> bytes:
    return png_bytes(Image.fromarray(array, mode) if mode else Image.fromarray(array), fmt)


@pytest.mark.parametrize("data,mean", [
    (encoded(gradient(np.uint16, 65535)), 127.5),
    (encoded(np.full((16, 16), 32896, np.uint16)), 128),
    (encoded(gradient(np.uint16, 65535), fmt="TIFF"), 127.5),
    (encoded(gradient(np.float32, 1.0), fmt="TIFF"), 127.5),
    (encoded(gradient(np.float32, 255.0), fmt="TIFF"), 127.5),
    (encoded(np.full((16, 16), 0.25, np.float32), fmt="TIFF"), 64),
], ids=["png16-gradient", "png16-mid", "tiff16", "float-0-1", "float-0-255", "float-quarter"])
def test_deep_images_keep_their_brightness(data, mean):
    pixels, _ = decode_image(data)
    assert pixels.dtype == np.uint8 and pixels.shape[2] == 3
    assert abs(float(pixels.mean()) - mean) < 1.5
    assert pixels.min() < pixels.max() or mean in (128, 64)


@pytest.mark.parametrize("image,fmt", [
    (Image.new("RGBA", (8, 8), (10, 20, 30, 0)), "PNG"), (Image.new("LA", (8, 8), (40, 0)), "PNG"),
    (Image.new("RGBA", (8, 8), (10, 20, 30, 0)), "TIFF"),
    (Image.new("RGBA", (8, 8), (10, 20, 30, 0)), "WEBP")], ids=["rgba", "la", "tiff", "webp"])
def test_transparent_pixels_land_on_the_documented_background(image, fmt):
    pixels, _ = decode_image(png_bytes(image, fmt))
    assert tuple(pixels[0, 0]) == ALPHA_BACKGROUND


def test_palette_transparency_lands_on_the_background():
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0] * 256)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    pixels, _ = decode_image(buffer.getvalue())
    assert tuple(pixels[0, 0]) == ALPHA_BACKGROUND


def test_half_transparent_red_is_blended_not_blackened():
    pixels, _ = decode_image(png_bytes(Image.new("RGBA", (4, 4), (255, 0, 0, 128))))
    assert pixels[0, 0, 0] == 255 and 120 < pixels[0, 0, 1] < 135


def cut_out(band: int = 10) -> bytes:
    """A real face as a cut-out PNG: a transparent band round it, black underneath as tools save
    it, so dropping alpha shows black there."""
    crops = require_shared("data", "celebrity_crops_glint", "Halle_Berry")
    face, _ = decode_image(sorted(crops.iterdir())[0].read_bytes())
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    rgba[:band], rgba[-band:], rgba[:, :band], rgba[:, -band:] = 0, 0, 0, 0
    return png_bytes(Image.fromarray(rgba, "RGBA"))


@pytest.mark.parametrize("source", ["fairface-as-is", "photo-crop", "stored-image"])
def test_a_transparent_photo_lands_on_the_plate_in_every_source(tmp_path, source):
    from beauty_pipeline.vision.faces import FaceConfig, process_photos

    store = ImageStore(tmp_path / "images")
    key = store.put_bytes(cut_out())
    if source == "stored-image":
        assert tuple(store.load(key)[0, 0]) == ALPHA_BACKGROUND
        return
    opaque = store.put_bytes(face_like(3, 160))
    model = require_shared("models", "face_detection_yunet_2026may.onnx")
    config = FaceConfig(detector_model_path=str(model), min_face_px=20, workers=1, margin=0.6,
                        preprocessing="study")
    kept, report = process_photos([(0, key), (1, opaque)], store, config, person="p",
                                  looks=0 if source == "fairface-as-is" else 1)
    [row] = kept[kept["row_id"] == 0].to_dict("records")
    pixels = store.load(row["image_key"])
    corner = pixels[0, 0] if source == "fairface-as-is" else pixels[2, pixels.shape[1] // 2]
    assert tuple(corner) == ALPHA_BACKGROUND
    assert not (pixels == 0).all(axis=2).any(), "a transparent pixel turned black"
    assert report["had_alpha"].tolist() == [True, False] and bool(row["had_alpha"])


@pytest.mark.parametrize("image", [Image.new("CMYK", (8, 8), (0, 255, 255, 0)),
                                   Image.new("1", (8, 8), 1), Image.new("L", (8, 8), 77)],
                         ids=["cmyk", "bilevel", "grey"])
def test_ordinary_modes_still_decode(image):
    pixels, _ = decode_image(png_bytes(image, "JPEG" if image.mode == "CMYK" else "PNG"))
    assert pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8


@pytest.mark.parametrize("data,words", [
    (encoded(np.array([[np.nan, 1.0]], np.float32), fmt="TIFF"), "mode F"),
    (encoded(np.array([[-5.0, 500.0]], np.float32), fmt="TIFF"), "mode F"),
    (encoded(np.array([[0, 1 << 20]], np.int32), fmt="TIFF"), "mode I"),
    (b"", "empty"), (b"\x89PNG\r\n\x1a\n" + os.urandom(64), "not a decodable image"),
    (face_like()[:60], "not a decodable image")],
    ids=["float-nan", "float-range", "int32-range", "empty", "random-after-magic", "truncated"])
def test_undecodable_images_are_dropped_with_the_reason(data, words):
    with pytest.raises(ImageDecodeError, match=words):
        decode_image(data)


# ---------------------------------------------------------------- photo folders: use or say why

@pytest.fixture
def photo_root(tmp_path):
    root = tmp_path / "photos"
    (root / "ann-lee").mkdir(parents=True)
    (root / "ann-lee" / "top.png").write_bytes(face_like(1))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(face_like(2))
    return root, outside, ImageStore(tmp_path / "store")


def fetch(root, store):
    rows = LocalFolderSource(root).fetch("ann-lee", "Ann Lee", store)
    return {row["url"].rsplit("/ann-lee/", 1)[-1]: row for row in rows.to_dict("records")}


@pytest.mark.parametrize("relative", ["2019/a.png", "x.jpg/b.png", "a/b/c/deep.png"],
                         ids=["year-folder", "folder-named-like-image", "nested"])
def test_photos_in_sub_folders_are_used(photo_root, relative):
    root, _, store = photo_root
    target = root / "ann-lee" / relative
    target.parent.mkdir(parents=True)
    target.write_bytes(face_like(3))
    rows = fetch(root, store)
    assert rows[relative]["outcome"] == "ok" and store.exists(rows[relative]["image_key"])
    assert rows["top.png"]["outcome"] == "ok"


def test_an_empty_folder_named_like_an_image_gets_a_row(photo_root):
    root, _, store = photo_root
    (root / "ann-lee" / "x.jpg").mkdir()
    rows = fetch(root, store)
    assert rows["x.jpg"]["outcome"] == "failed" and "named like an image" in rows["x.jpg"]["reason"]


@pytest.mark.parametrize("target", ["outside-image", "/etc/passwd", "/proc/self/environ"])
def test_symlinks_out_of_the_photo_folder_are_refused_unread(photo_root, target):
    root, outside, store = photo_root
    source = outside / "secret.png" if target == "outside-image" else target
    (root / "ann-lee" / "link.png").symlink_to(source)
    rows = fetch(root, store)
    assert rows["link.png"]["outcome"] == "failed" and "outside" in rows["link.png"]["reason"]
    assert rows["link.png"]["sha256"] == "" and rows["link.png"]["image_key"] == ""
    assert rows["top.png"]["outcome"] == "ok"


def test_a_symlinked_folder_and_a_broken_link_get_rows(photo_root):
    root, outside, store = photo_root
    (root / "ann-lee" / "more").symlink_to(outside, target_is_directory=True)
    (root / "ann-lee" / "gone.png").symlink_to(root / "nowhere.png")
    rows = fetch(root, store)
    assert "not followed" in rows["more"]["reason"]
    assert "broken" in rows["gone.png"]["reason"]


def test_a_person_folder_that_is_a_symlink_outside_is_not_used(photo_root):
    root, outside, store = photo_root
    shutil.rmtree(root / "ann-lee")
    (root / "ann-lee").symlink_to(outside, target_is_directory=True)
    rows = LocalFolderSource(root).fetch("ann-lee", "Ann Lee", store)
    assert rows["outcome"].tolist() == ["failed"] and "no folder" in rows["reason"].item()
    assert not any(store.root.rglob("*.png"))


def test_hidden_files_are_skipped(photo_root):
    root, _, store = photo_root
    (root / "ann-lee" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    assert sorted(fetch(root, store)) == ["top.png"]


# ---------------------------------------------------------------- verified cache and stored images

@pytest.fixture
def cached(tmp_path):
    store = ImageStore(tmp_path / "root" / "images")
    keys = [store.put_bytes(face_like(seed)) for seed in range(4)]
    cache = tmp_path / "root" / "cache"
    first = np.array(decoded_images(keys, store, 16, cache))
    [path] = cache.glob("*.npy")
    return store, keys, cache, path, first


def zero(path):
    path.write_bytes(b"\0" * path.stat().st_size)


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def drop_seal(path):
    path.with_suffix(".json").unlink()


@pytest.mark.parametrize("damage", [zero, truncate, flip_last_byte, drop_seal],
                         ids=["zeroed", "truncated", "altered", "no-checksum"])
def test_a_damaged_cache_is_rebuilt_with_a_logged_reason(cached, damage, caplog):
    store, keys, cache, path, first = cached
    damage(path)
    with caplog.at_level(logging.WARNING, logger="beauty_pipeline.training.cache"):
        again = decoded_images(keys, store, 16, cache)
    assert np.array_equal(np.asarray(again), first) and first.any()
    assert any("rebuilding" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("damage", ["altered", "truncated", "deleted"])
def test_a_damaged_stored_image_names_its_key_and_asset(tmp_path, damage):
    root = tmp_path / "root"
    store = ImageStore(root / "images")
    key = store.put_bytes(face_like(7))
    other = store.put_bytes(face_like(8))
    write_parquet(pd.DataFrame({"image_key": [key], "person": ["ann-lee"]}),
                  root / "manifests" / "celebrity_photos" / "ann-lee.parquet")
    path = store.path(key)
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"\0" * 10 if damage == "truncated" else face_like(9))
    with pytest.raises(StoredImageError) as caught:
        decoded_images([other, key], store, 16, root / "cache")
    message = str(caught.value)
    assert key in message and "celebrity_photos/ann-lee" in message
    assert store.load(other).shape == (48, 48, 3)  # the others are intact
    assert not list((root / "cache").glob("*.npy"))  # nothing half-built left to trust


# ---------------------------------------------------------------- shared files and a movable root

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_follow_the_process_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = atomic_write_bytes(tmp_path / "f.bin", b"data")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_a_moved_data_root_keeps_its_manifests_working(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    manager = ManifestIOManager(root=str(old))
    weights = old / "models" / "m.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"w")
    frame = pd.DataFrame({"path": [str(weights)], "other": ["/etc/hosts"], "n": [1]})
    manager.handle_output(build_output_context(asset_key="classifier"),
                          {"weights": str(weights), "history": [{"path": str(weights)}]})
    manager.handle_output(build_output_context(asset_key="frame"), frame)
    assert str(old) not in json.dumps(json.loads(
        (old / "manifests" / "classifier" / "latest.json").read_text()))
    shutil.move(old, new)
    moved = ManifestIOManager(root=str(new))
    value = moved.load_input(build_input_context(asset_key="classifier"))
    assert value["weights"] == str(new / "models" / "m.pt") 
    assert Path(value["weights"]).read_text() == "w"
    assert value["history"][0]["path"] == value["weights"]
    table = moved.load_input(build_input_context(asset_key="frame"))
    assert table["path"].item() == str(new / "models" / "m.pt")
    assert table["other"].item() == "/etc/hosts" and not old.exists()
