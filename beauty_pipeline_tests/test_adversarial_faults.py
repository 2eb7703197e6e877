"""Adversarial faults and attacks: slow and hostile servers, MLflow failures, bad files and settings,
escaping of user text, upside-down faces. Each ends in one clear error or a recorded reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from adversarial_support import (
    HEADER,
    Server,
    face_like,
    ranking_csv,
    reply,
    trickle,
)
from conftest import ranking_from_labels, require_shared
from dagster import AssetKey, Failure, materialize
from pydantic import ValidationError

from beauty_pipeline.assets.common import md_escape, table_md
from beauty_pipeline.assets.models import BackboneConfig, TrainConfig
from beauty_pipeline.errors import PipelineError
from beauty_pipeline.fairface import FairFaceError, read_fairface, store_fairface_images
from beauty_pipeline.modelfiles import ModelFileError
from beauty_pipeline.netio import BlockedHostError, NetworkError, check_public_host, guarded_get
from beauty_pipeline.ranking import RankingError, load_ranking
from beauty_pipeline.report.html import summary_markdown
from beauty_pipeline.resources.tracking import REASON_TAG, REPLACED_TAG, MlflowTracking
from beauty_pipeline.scraping import BingSource, DownloadError, download_image
from beauty_pipeline.settings import TrainSettings, active_profile
from beauty_pipeline.storage import ImageStore
from beauty_pipeline.training.checkpoints import CheckpointError, load_state
from beauty_pipeline.vision.orientation import orientation_problem, upright_problem

# ---------------------------------------------------------------- every network read has a deadline


def test_a_trickling_ranking_url_ends_at_its_deadline():
    with Server(lambda r: trickle(r, HEADER.encode())) as server:
        started = time.monotonic()
        with pytest.raises(RankingError, match="deadline"):
            load_ranking(f"{server.base}/ranking.csv", timeout=1.0)
        assert time.monotonic() - started < 4


def test_a_trickling_image_download_ends_at_its_deadline():
    with Server(lambda r: trickle(r, b"\x89PNG\r\n\x1a\n")) as server:
        started = time.monotonic()
        with pytest.raises(DownloadError, match="timeout"):
            download_image(f"{server.base}/a.png", timeout=1.0, retries=0, allow_private=True)
        assert time.monotonic() - started < 4


def test_a_trickling_model_download_ends_at_its_deadline(tmp_path):
    import dataclasses

    from beauty_pipeline.modelfiles import YUNET, obtain_model_file

    with Server(lambda r: trickle(r, b"\x08")) as server:
        spec = dataclasses.replace(YUNET, url=f"{server.base}/yunet.onnx")
        started = time.monotonic()
        with pytest.raises(ModelFileError, match="deadline"):
            obtain_model_file(spec, cache_dir=tmp_path, timeout=0.2)
        assert time.monotonic() - started < 5
    assert not (tmp_path / YUNET.filename).exists()


@pytest.mark.parametrize("status,body,words", [
    (500, b"oops", "500"), (404, b"", "404"), (200, b"x" * 5_000_001, "more than")],
    ids=["server-error", "missing", "oversized"])
def test_a_bad_ranking_url_is_one_clear_error(status, body, words):
    with Server(lambda r: reply(r, status, body)) as server, \
            pytest.raises(RankingError, match=words) as caught:
        load_ranking(f"{server.base}/ranking.csv", timeout=5)
    assert server.base in str(caught.value)


# ---------------------------------------------------------------- no fetch reaches internal hosts

@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x.jpg", "http://localhost:8080/x.jpg", "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.7/x.jpg", "http://192.168.1.1/x.jpg", "http://172.16.5.4/x.jpg",
    "http://224.0.0.251/x.jpg", "http://[::1]/x.jpg", "http://[::ffff:127.0.0.1]/x.jpg",
    "http://0.0.0.0/x.jpg", "http://[fe80::1]/x.jpg", "http://2130706433/x.jpg",
    "http://100.64.0.1/x.jpg", "http://[fd00::1]/x.jpg"],
    ids=["loopback", "localhost", "metadata", "10/8", "192.168/16", "172.16/12", "multicast",
         "v6-loopback", "v4-mapped", "unspecified", "v6-link-local", "decimal-loopback",
         "shared-cgnat", "v6-unique-local"])
def test_internal_addresses_are_refused(url):
    with pytest.raises(BlockedHostError, match="internal address"):
        check_public_host(url)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/x.jpg", "gopher://x/"])
def test_other_schemes_are_refused(url):
    with pytest.raises(BlockedHostError, match="only http"):
        check_public_host(url, allow_private=True)


def test_a_public_address_passes_and_the_test_switch_allows_loopback():
    check_public_host("http://93.184.216.34/x.jpg")
    check_public_host("http://127.0.0.1:9/x.jpg", allow_private=True)


def test_a_bing_page_on_an_internal_host_is_never_requested(tmp_path):
    hits = []
    with Server(lambda r: (hits.append(r.path), reply(r, 200, b""))) as server:
        rows = BingSource(base_url=server.base, retries=0, allow_private=False).fetch(
            "ann-lee", "Ann Lee", ImageStore(tmp_path))
    assert hits == [] and rows["outcome"].tolist() == ["failed"]
    assert "internal address" in rows["reason"].item()


@pytest.mark.parametrize("location,words", [("file:///etc/passwd", "only http"),
                                            ("/loop", "redirects")], ids=["to-file", "loop"])
def test_every_redirect_is_checked(location, words):
    import requests

    with Server(lambda r: reply(r, 302, b"", {"Location": location})) as server, \
            pytest.raises(NetworkError, match=words):
        guarded_get(requests.Session(), f"{server.base}/start", 5, allow_private=True)


# ---------------------------------------------------------------- MLflow faults fail before the work

def health_ok_api(status: int, body: bytes):
    def handle(request):
        if request.path == "/health":
            reply(request, 200, b"OK")
        else:
            reply(request, status, body)
    return handle


def test_a_server_whose_api_fails_is_caught_by_the_reachability_check():
    with Server(health_ok_api(500, b'{"error_code": "INTERNAL_ERROR"}')) as server:
        started = time.monotonic()
        with pytest.raises(Failure, match="HTTP 500"):
            MlflowTracking(tracking_uri=server.base).ensure_reachable()
        assert time.monotonic() - started < 5


def test_a_server_without_the_experiment_yet_is_reachable():
    with Server(health_ok_api(404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}')) as server:
        MlflowTracking(tracking_uri=server.base).ensure_reachable()


def test_nothing_listening_is_a_clear_failure():
    with pytest.raises(Failure, match="not reachable"):
        MlflowTracking(tracking_uri="http://127.0.0.1:9").ensure_reachable(timeout_s=2)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    yield MlflowTracking(tracking_uri=uri)
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize("loss", ["never-existed", "deleted"])
def test_a_lost_run_is_replaced_by_a_tagged_new_run(tracking, loss):
    with tracking.run("keep", {"kind": "classifier"}) as kept:
        mlflow.log_metric("test_accuracy", 0.9)
    with tracking.run("lost", {}) as lost:
        pass
    lost_id = uuid.uuid4().hex if loss == "never-existed" else lost.info.run_id
    if loss == "deleted":
        mlflow.MlflowClient().delete_run(lost_id)
    with tracking.run("", {"kind": "gradcam"}, run_id=lost_id) as replacement:
        mlflow.log_metric("face_mass", 0.5)
    run = mlflow.MlflowClient().get_run(replacement.info.run_id)
    assert run.info.run_id != lost_id and run.data.tags[REPLACED_TAG] == lost_id
    assert lost_id in run.data.tags[REASON_TAG]
    intact = mlflow.MlflowClient().get_run(kept.info.run_id)
    assert intact.data.metrics["test_accuracy"] == 0.9


def test_four_processes_create_a_fresh_sqlite_store_together(tmp_path):
    # Without the lock 3 of 4 fail on the schema migration ("duplicate column name: step").
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = textwrap.dedent(f"""
        import sys, time
        import mlflow
        from beauty_pipeline.mlflow_store import open_experiment
        while time.time() < float(sys.argv[1]):
            time.sleep(0.01)
        experiment = open_experiment({uri!r}, "beauty-pipeline")
        with mlflow.start_run(experiment_id=experiment) as run:
            print(run.info.run_id)
    """)
    start = str(time.time() + 5)
    procs = [subprocess.Popen([sys.executable, "-c", code, start], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=os.getcwd())
             for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err[-400:] for _, err in results]
    assert len({out.strip() for out, _ in results}) == 4


def test_a_moved_sqlite_root_writes_nothing_under_the_old_location(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    before = MlflowTracking(tracking_uri=f"sqlite:///{old / 'mlflow.db'}")
    with before.run("classifier", {}) as first:
        mlflow.log_metric("test_accuracy", 0.8)
    old.rename(new)
    after = MlflowTracking(tracking_uri=f"sqlite:///{new / 'mlflow.db'}")
    (new / "fig.png").write_bytes(face_like())
    with after.run("", {}, run_id=first.info.run_id) as run:
        mlflow.log_artifact(str(new / "fig.png"), artifact_path="gradcam")
    mlflow.set_tracking_uri(None)
    assert not old.exists()
    assert (new / "mlartifacts").is_dir() and any((new / "mlartifacts").rglob("fig.png"))
    assert run.info.run_id != first.info.run_id


def test_mlflow_telemetry_is_off_by_default():
    code = ("import beauty_pipeline, os; from mlflow.telemetry.utils import is_telemetry_disabled;"
            "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], is_telemetry_disabled())")
    env = {k: v for k, v in os.environ.items() if "TELEMETRY" not in k and k != "DO_NOT_TRACK"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=True).stdout.split()
    assert out == ["true", "True"]


# ---------------------------------------------------------------- bad settings: one line, named

@pytest.mark.parametrize("name,value", [
    ("BEAUTY_PIPELINE_EPOCHS", "abc"), ("BEAUTY_PIPELINE_EPOCHS", "0"),
    ("BEAUTY_PIPELINE_EPOCHS", "-3"), ("BEAUTY_PIPELINE_EPOCHS", "2.5"),
    ("BEAUTY_PIPELINE_BATCH_SIZE", "0"), ("BEAUTY_PIPELINE_IMAGE_SIZE", "0"),
    ("BEAUTY_PIPELINE_LEARNING_RATE", "nan"), ("BEAUTY_PIPELINE_LEARNING_RATE", "fast"),
    ("BEAUTY_PIPELINE_BACKBONE_EPOCHS", "0"), ("BEAUTY_PIPELINE_PROFILE", "bogus")])
def test_bad_environment_settings_name_themselves(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(PipelineError) as caught:
        active_profile()
    message = str(caught.value)
    assert name in message and repr(value) in message and "\n" not in message


@pytest.mark.parametrize("config,field", [
    (lambda: TrainConfig(epochs=0), "epochs"), (lambda: TrainConfig(batch_size=0), "batch_size"),
    (lambda: TrainConfig(image_size=0), "image_size"),
    (lambda: TrainConfig(learning_rate=0.0), "learning_rate"),
    (lambda: BackboneConfig(epochs=0), "epochs")])
def test_zero_training_settings_are_refused_by_the_config(config, field):
    with pytest.raises(ValidationError, match=field):
        config()


@pytest.mark.parametrize("field", ["epochs", "batch_size", "image_size"])
def test_zero_training_settings_are_refused_in_the_domain(field):
    with pytest.raises(PipelineError, match=field):
        TrainSettings(**{field: 0})


# ---------------------------------------------------------------- checkpoints and model files

def write_checkpoint(path, kind):
    if kind == "text":
        path.write_text("these are not weights\n")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        torch.save({"w": torch.ones(1000)}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif kind in ("nan", "inf"):
        torch.save({"w": torch.tensor([1.0, float(kind)])}, path)
    elif kind == "list":
        torch.save([torch.ones(2)], path)
    elif kind == "nested-nan":
        torch.save({"model": {"fc.weight": torch.full((2, 2), float("nan"))}}, path)


@pytest.mark.parametrize("kind,words", [
    ("text", "not a"), ("random", "not a"), ("empty", "not a readable"),
    ("truncated", "not a readable"), ("nan", "NaN or infinite"), ("inf", "NaN or infinite"),
    ("list", "not a state dict"), ("nested-nan", "model.fc.weight")])
def test_bad_checkpoints_are_one_clear_error(tmp_path, kind, words):
    path = tmp_path / f"{kind}.pt"
    write_checkpoint(path, kind)
    with pytest.raises(CheckpointError, match=words) as caught:
        load_state(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, PipelineError)


@pytest.mark.parametrize("content", [b"", b"not an onnx model", bytes(range(256)) * 64],
                         ids=["empty", "text", "random"])
def test_a_corrupt_yunet_file_is_named(tmp_path, content):
    from beauty_pipeline.vision.detection import FaceDetector

    path = tmp_path / "yunet.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as caught:
        FaceDetector(path)
    assert str(path) in str(caught.value) and "detector_model_path" in str(caught.value)


def test_a_different_network_given_as_yunet_is_named():
    from beauty_pipeline.vision.detection import FaceDetector

    other = require_shared("models", "isnet_small.onnx")
    with pytest.raises(ModelFileError, match="YuNet"):
        FaceDetector(other)


@pytest.mark.parametrize("kind", ["text", "random", "nan", "wrong-network"])
def test_bad_hopenet_weights_are_named(tmp_path, kind):
    from beauty_pipeline.vision.headpose import HopeNetPose

    path = tmp_path / "hopenet.pkl"
    if kind == "wrong-network":
        torch.save({"fc.weight": torch.ones(3, 3)}, path)
    else:
        write_checkpoint(path, kind)
    with pytest.raises(ModelFileError) as caught:
        HopeNetPose(path)
    assert str(path) in str(caught.value) and "HopeNet" in str(caught.value)


@pytest.mark.parametrize("content", [b"garbage", b""], ids=["garbage", "empty"])
def test_a_corrupt_rembg_model_is_named(tmp_path, monkeypatch, content):
    from beauty_pipeline.vision.segmentation import RembgSegmenter, SegmenterUnavailable

    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "u2net"))
    path = tmp_path / "u2net_broken.onnx"
    path.write_bytes(content)
    with pytest.raises(SegmenterUnavailable, match="rembg_model_path") as caught:
        RembgSegmenter(model_path=str(path))
    assert isinstance(caught.value, PipelineError) and str(path) in str(caught.value)


def a_real_face(side: int = 96) -> np.ndarray:
    from PIL import Image

    crops = require_shared("data", "fairface_margin125")
    with Image.open(crops / "fairface_0001.jpg") as image:
        return np.asarray(image.convert("RGB").resize((side, side)))


def test_a_same_named_file_in_rembgs_folder_never_shadows_the_configured_model(tmp_path,
                                                                               monkeypatch):
    from beauty_pipeline.vision.segmentation import RembgSegmenter, file_digest

    isnet = require_shared("models", "isnet_small.onnx")
    impostor = require_shared("models", "face_detection_yunet_2026may.onnx")  # another network
    image = a_real_face()
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "clean"))
    expected = RembgSegmenter(model_path=str(isnet)).mask(image)
    home = tmp_path / "u2net"
    (home / "custom").mkdir(parents=True)
    shutil.copy(impostor, home / "custom" / isnet.name)
    monkeypatch.setenv("U2NET_HOME", str(home))
    segmenter = RembgSegmenter(model_path=str(isnet))
    assert segmenter.model_file.resolve() == isnet.resolve()
    assert np.array_equal(segmenter.mask(image), expected) and 0 < expected.mean() < 255
    assert file_digest(home / "custom" / isnet.name) == file_digest(impostor)  # left alone


def test_a_different_file_where_the_model_would_load_is_refused_naming_both(tmp_path,
                                                                           monkeypatch):
    from beauty_pipeline.vision.segmentation import (
        RembgSegmenter,
        SegmenterUnavailable,
        file_digest,
    )

    isnet = require_shared("models", "isnet_small.onnx")
    home = tmp_path / "u2net"
    planted = home / "custom" / file_digest(isnet) / isnet.name
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"not the configured model")
    monkeypatch.setenv("U2NET_HOME", str(home))
    with pytest.raises(SegmenterUnavailable) as caught:
        RembgSegmenter(model_path=str(isnet))
    message = str(caught.value)
    assert str(isnet.resolve()) in message and str(planted) in message and "\n" not in message


def test_rembg_offline_names_the_way_out(tmp_path, monkeypatch):
    from beauty_pipeline.vision.segmentation import RembgSegmenter, SegmenterUnavailable

    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "u2net"))  # no model cached
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # offline: nothing listens there
    with pytest.raises(SegmenterUnavailable) as caught:
        RembgSegmenter("u2net_human_seg")
    message = str(caught.value)
    assert "--segmenter grabcut" in message and "--rembg-model-path" in message
    assert "\n" not in message and len(message) < 500


# ---------------------------------------------------------------- FairFace folders

@pytest.fixture
def fairface(tmp_path):
    root = tmp_path / "fairface"
    (root / "train").mkdir(parents=True)
    (root / "train" / "1.jpg").write_bytes(face_like(1))
    return root


def labels(root, rows, name="fairface_label_train.csv", codec="utf-8", values=None):
    """A label file for these image paths; values: (age, gender, race) per row, default valid."""
    values = values or [("20-29", "Female", "White")] * len(rows)
    text = "file,age,gender,race,service_test\n" + "".join(
        f"{file},{age},{gender},{race},False\n"
        for file, (age, gender, race) in zip(rows, values, strict=True))
    (root / name).write_bytes(text.encode(codec))


@pytest.mark.parametrize("target", ["/etc/passwd", "outside-image"])
def test_a_fairface_symlink_out_of_the_folder_is_skipped(fairface, tmp_path, target):
    outside = tmp_path / "outside.png"
    outside.write_bytes(face_like(5))
    (fairface / "train" / "x.jpg").symlink_to(outside if target == "outside-image" else target)
    labels(fairface, ["train/1.jpg", "train/x.jpg"])
    kept, skipped = read_fairface(fairface)
    assert kept["file"].tolist() == ["train/1.jpg"]
    assert skipped["reason"].tolist() == ["path outside the FairFace folder"]


@pytest.mark.parametrize("content,words", [
    (b"", "0 bytes"), (b"file,age,gender,race,service_test\n", "no rows"),
    ("file,age,gender,race\nZoë.jpg,20-29,Female,White\n".encode("latin-1"), "Latin-1"),
    (b"a;b\n1;2\n", "lacks columns")], ids=["zero-bytes", "header-only", "latin-1", "columns"])
def test_bad_fairface_label_files_are_named(fairface, content, words):
    (fairface / "fairface_label_train.csv").write_bytes(content)
    with pytest.raises(FairFaceError, match=words) as caught:
        read_fairface(fairface)
    assert "fairface_label_train.csv" in str(caught.value)


def test_a_utf16_fairface_label_file_is_read(fairface):
    labels(fairface, ["train/1.jpg"], codec="utf-16")
    kept, _ = read_fairface(fairface)
    assert kept["file"].tolist() == ["train/1.jpg"]


@pytest.mark.parametrize("content,cap,words", [
    (face_like()[:60], 50_000_000, "not a decodable image"),
    (None, 100, "too large")], ids=["truncated", "over-the-cap"])
def test_fairface_files_get_the_photo_size_cap_and_decode_check(fairface, tmp_path, content, cap,
                                                                  words):
    if content is not None:
        (fairface / "train" / "bad.jpg").write_bytes(content)
        labels(fairface, ["train/1.jpg", "train/bad.jpg"])
    else:
        labels(fairface, ["train/1.jpg"])
    kept, _ = read_fairface(fairface)
    stored, refused = store_fairface_images(kept, ImageStore(tmp_path / "images"), max_bytes=cap)
    assert words in " ".join(refused["reason"])
    if content is not None:
        assert stored["file"].tolist() == ["train/1.jpg"]


@pytest.mark.parametrize("make,reason", [
    (lambda path: path.mkdir(), "not_a_file"),
    (lambda path: path.write_text("root:x:0:0:root:/root:/bin/bash\n"), "undecodable"),
    (lambda path: path.write_bytes(b"GIF89a" + bytes(4)), "undecodable"),
    (lambda path: os.mkfifo(path), "not_a_file")], ids=["folder", "text", "gif-header-only", "fifo"])
def test_label_rows_that_are_not_image_files_are_dropped_where_read(fairface, make, reason):
    make(fairface / "train" / "2.jpg")
    labels(fairface, ["train/1.jpg", "train/2.jpg"])
    kept, skipped = read_fairface(fairface)
    assert kept["file"].tolist() == ["train/1.jpg"]
    assert skipped["reason"].tolist() == [reason] and "train/2.jpg" in skipped["detail"].item()


@pytest.mark.parametrize("age,gender,race,column", [
    ("20-29", "Femal", "White", "gender"), ("20-29", "", "White", "gender"),
    ("20-29", "Female", "Martian", "race"), ("20-29", "Female", " ", "race"),
    ("3-90", "Female", "White", "age"), ("", "Female", "White", "age"),
    ("20-29", "Female", "Latino Hispanic", "race")],
    ids=["gender-typo", "gender-empty", "race-unknown", "race-blank", "age-unknown", "age-empty",
         "race-space-for-underscore"])
def test_labels_outside_fairfaces_vocabulary_are_skipped_with_the_reason(fairface, age, gender,
                                                                          race, column):
    (fairface / "train" / "2.jpg").write_bytes(face_like(2))
    labels(fairface, ["train/1.jpg", "train/2.jpg"],
           values=[("20-29", "Female", "White"), (age, gender, race)])
    kept, skipped = read_fairface(fairface)
    assert kept["file"].tolist() == ["train/1.jpg"]
    [row] = skipped.to_dict("records")
    assert row["file"] == "train/2.jpg" and row["reason"] == "not_fairface_label"
    assert row["detail"].startswith(f"{column} ") and "FairFace" in row["detail"]


def test_labels_differing_only_in_case_and_spacing_are_repaired(fairface):
    (fairface / "train" / "2.jpg").write_bytes(face_like(2))
    labels(fairface, ["train/1.jpg", "train/2.jpg"],
           values=[("More Than 70", " female", "east  asian "), ("30-39", "MALE", "Indian")])
    kept, skipped = read_fairface(fairface)
    assert skipped.empty
    assert kept[["age", "gender", "race"]].values.tolist() == [
        ["more than 70", "Female", "East Asian"], ["30-39", "Male", "Indian"]]


def materialize_ordinary_class(tmp_path, root):
    """fairface_faces through Dagster on this folder, FairFace crops as-is (no detector drops)."""
    from beauty_pipeline.definitions import defs
    from beauty_pipeline.resources import FacePreprocessing, ManifestIOManager, StudyStorage

    yunet = require_shared("models", "face_detection_yunet_2026may.onnx")
    data = str(tmp_path / "root")
    resources = {**defs.resources, "io_manager": ManifestIOManager(root=data),
                 "storage": StudyStorage(root=data),
                 "face_stage": FacePreprocessing(detector_model_path=str(yunet), workers=1)}
    return materialize([defs.get_assets_def(AssetKey("fairface_faces"))], resources=resources,
                       run_config={"ops": {"fairface_faces": {"config": {
                           "source": "fairface", "fairface_dir": str(root),
                           "preprocessing": "study"}}}})


@pytest.mark.parametrize("present,listed", [(0, 4), (2, 5)], ids=["none", "below-minimum"])
def test_an_ordinary_class_without_enough_images_fails_the_asset(fairface, tmp_path, present,
                                                                   listed):
    (fairface / "train" / "1.jpg").unlink()
    for i in range(present):
        (fairface / "train" / f"{i}.jpg").write_bytes(face_like(10 + i))
    labels(fairface, [f"train/{i}.jpg" for i in range(listed)])
    with pytest.raises(FairFaceError) as caught:
        materialize_ordinary_class(tmp_path, fairface)
    message = str(caught.value)
    assert str(fairface) in message and f"{listed - present} image files missing" in message
    assert f"{present} of {listed}" in message and "\n" not in message
    assert not list((tmp_path / "root").glob("manifests/fairface_faces*"))


def test_an_ordinary_class_at_the_minimum_materializes_with_its_skip_table(fairface, tmp_path):
    for i in (2, 3, 4, 7):  # 5.jpg missing, 6.jpg a folder, 7.jpg labelled "Femal"
        (fairface / "train" / f"{i}.jpg").write_bytes(face_like(10 + i))
    (fairface / "train" / "6.jpg").mkdir()
    labels(fairface, [f"train/{i}.jpg" for i in range(2, 8)],
           values=[("20-29", "Female", "White")] * 4 + [("20-29", "Femal", "White")] * 2)
    result = materialize_ordinary_class(tmp_path, fairface)
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["kept"].value == 3 and metadata["skipped_label_rows"].value == 3
    assert metadata["skipped_label_reasons"].value == {
        "image file missing": 1, "not_a_file": 1, "not_fairface_label": 1}
    assert "Femal" in metadata["skipped_labels"].value


# ---------------------------------------------------------------- user text is escaped

HOSTILE = ["![x](http://evil.example/p.png)", "<img src=x onerror=alert(1)>",
           "[click](javascript:alert(1))", "a | b\n| injected | row |", "**bold** _it_ `code`",
           "<script>alert(1)</script>"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_render_as_text(name):
    cell = md_escape(name)
    assert "![" not in cell and "](" not in cell and "<img" not in cell and "<script" not in cell
    assert "\n" not in cell and "| " not in cell.replace("\\| ", "")
    table = table_md(pd.DataFrame({"name": [name]})).value
    assert table.count("\n") == 2  # header, rule, one row


def test_hostile_names_in_the_ranking_metadata_are_escaped(tmp_path, monkeypatch):
    from beauty_pipeline.definitions import defs
    from beauty_pipeline.resources import ManifestIOManager, StudyStorage

    csv = tmp_path / "ranking.csv"
    csv.write_text(ranking_csv([name.replace("\n", " ").replace(",", ";") for name in HOSTILE]),
                   encoding="utf-8")
    resources = {**defs.resources, "io_manager": ManifestIOManager(root=str(tmp_path)),
                 "storage": StudyStorage(root=str(tmp_path))}
    result = materialize([defs.get_assets_def(AssetKey("ranking"))], resources=resources,
                         run_config={"ops": {"ranking": {"config": {"location": str(csv)}}}})
    [event] = result.get_asset_materialization_events()
    preview = event.materialization.metadata["preview"].value
    for raw in ("![x]", "<img", "<script", "](javascript"):
        assert raw not in preview
    assert "evil.example" in preview  # shown, as text


def test_the_report_summary_escapes_its_cells():
    markdown = summary_markdown([{"model": "<img src=x>", "background": "![b](http://e/x)"}])
    assert "<img" not in markdown and "![" not in markdown


# ---------------------------------------------------------------- upright faces only

def landmarks_turned(degrees: float) -> np.ndarray:
    upright = np.array([[-30, -30], [30, -30], [0, 5], [-22, 35], [22, 35]], dtype=np.float64)
    angle = np.radians(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return upright @ rotation.T + 200


@pytest.mark.parametrize("degrees,words", [(0, ""), (10, ""), (-20, ""), (40, ""), (50, "sideways"),
                                           (90, "sideways"), (-90, "sideways"),
                                           (180, "upside down"), (170, "upside down")])
def test_landmark_roll_catches_turned_faces(degrees, words):
    problem = orientation_problem(landmarks_turned(degrees))
    assert (words in problem) if words else problem == ""


def test_landmarks_out_of_order_are_caught():
    points = landmarks_turned(0)
    points[[2, 3, 4]] = points[[2, 3, 4]] * [1, -1] + [0, 2 * 200 - 60]  # mouth above the eyes
    assert "out of order" in orientation_problem(points)


@pytest.mark.parametrize("turns", [0, 2, 3], ids=["upright", "upside-down", "sideways"])
def test_a_turned_real_face_is_dropped_and_an_upright_one_kept(turns):
    from beauty_pipeline.vision.decode import decode_image
    from beauty_pipeline.vision.detection import FaceDetector

    detector = FaceDetector(require_shared("models", "face_detection_yunet_2026may.onnx"))
    crops = require_shared("data", "celebrity_crops_glint", "Halle_Berry")
    image, _ = decode_image(sorted(crops.iterdir())[0].read_bytes())
    turned = np.ascontiguousarray(np.rot90(image, turns))
    faces = detector.detect(turned)
    assert faces, "the detector finds the face in every orientation used here"
    problem = upright_problem(detector, turned, faces[0])
    assert (problem == "") == (turns == 0), problem


def test_the_frontal_filter_records_the_turned_face_reason(tmp_path):
    from beauty_pipeline.vision.decode import decode_image
    from beauty_pipeline.vision.faces import FaceConfig, process_photos

    model = require_shared("models", "face_detection_yunet_2026may.onnx")
    crops = require_shared("data", "celebrity_crops_glint", "Halle_Berry")
    image, _ = decode_image(sorted(crops.iterdir())[0].read_bytes())
    store = ImageStore(tmp_path)
    keys = [store.put_array(np.ascontiguousarray(np.rot90(image, k))) for k in (0, 2)]
    config = FaceConfig(detector_model_path=str(model), min_face_px=20, workers=1)
    kept, report = process_photos([(0, keys[0]), (1, keys[1])], store, config, person="p",
                                  looks=1)
    assert report["drop_reason"].tolist() == ["", "not_upright"]
    assert "upside down" in report["detail"].iloc[1]
    assert json.dumps(report["detail"].tolist())


# ---------------------------------------------------------------- the CLI shows one line, not a trace

def cli_study(tmp_path, *flags) -> list[str]:
    """`beauty-pipeline study` on three copied public figures and 30 FairFace faces, tiny sizes."""
    crops = require_shared("data", "celebrity_crops_glint")
    yunet = require_shared("models", "face_detection_yunet_2026may.onnx")
    fairface = require_shared("data", "fairface_margin025")
    table = pd.read_csv(crops / "labels.csv")
    chosen = table[table["file"].str.split("/").str[0].isin(
        ["Barack_Obama", "Drew_Barrymore", "Will_Smith"])]
    for name in chosen["file"]:
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(crops / name, tmp_path / "photos" / name)
    ranking_from_labels(chosen, tmp_path / "ranking.csv")
    return [sys.executable, "-m", "beauty_pipeline.cli", "study", "--home", str(tmp_path / "home"),
            "--ranking", str(tmp_path / "ranking.csv"), "--photos", str(tmp_path / "photos"),
            "--fairface", str(fairface), "--limit-ordinary", "30", "--models", "resnet18",
            "--image-size", "32", "--epochs", "1", "--backbone-epochs", "1", "--seeds", "1",
            "--detector-model", str(yunet), "--workers", "1", *flags]


def offline_env(tmp_path) -> dict:
    """This process's environment with no rembg model cached and no way out to the network."""
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    return {**os.environ, "U2NET_HOME": str(tmp_path / "u2net"), "HTTPS_PROXY": dead,
            "HTTP_PROXY": dead, "https_proxy": dead, "http_proxy": dead,
            "PYTHONPATH": os.pathsep.join(sys.path)}


def assert_no_traceback(output: str) -> None:
    assert "Traceback" not in output and "Stack Trace" not in output, output[-3000:]


@pytest.mark.slow  # trains a one-epoch backbone at 32 px before the segmenter step
def test_offline_study_with_the_default_segmenter_prints_one_line_and_the_way_out(tmp_path):
    done = subprocess.run(cli_study(tmp_path, "--backgrounds", "white"), cwd=tmp_path,
                          env=offline_env(tmp_path), capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert_no_traceback(output)
    [line] = [x for x in done.stderr.splitlines() if x.startswith("beauty-pipeline study:")]
    assert "rembg could not load model" in line
    assert "--segmenter grabcut" in line and "--rembg-model-path" in line
    [log] = (tmp_path / "home" / "logs").glob("study-*.log")
    assert f"full log: {log}" in done.stderr
    full = log.read_text()
    assert "STEP_FAILURE" in full and "Traceback" in full and "SegmenterUnavailable" in full


def test_ctrl_c_during_a_step_prints_the_resume_hint_and_no_traceback(tmp_path):
    import signal
    import threading

    asked = threading.Event()

    def hang(request):
        asked.set()
        trickle(request, HEADER.encode(), seconds=60)

    with Server(hang) as server:
        command = cli_study(tmp_path, "--segmenter", "grabcut")
        command[command.index("--ranking") + 1] = f"{server.base}/ranking.csv"
        env = {**offline_env(tmp_path), "BEAUTY_PIPELINE_ALLOW_PRIVATE_HOSTS": "1"}
        for name in ("HTTP_PROXY", "http_proxy"):
            env.pop(name)
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1"
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert asked.wait(300), "the study never asked for its ranking"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=300)
    assert process.returncode == 130, (out + err)[-3000:]
    assert_no_traceback(out + err)
    assert "run the same command again to continue" in err
