"""YuNet detection and 300x300 crops on wild FairFace photos; model files fetched safely."""

from __future__ import annotations

import dataclasses
import http.server
import threading

import numpy as np
import pytest
from conftest import require_shared
from PIL import Image

from beauty_pipeline.modelfiles import YUNET, ModelFileError, file_sha256, obtain_model_file
from beauty_pipeline.vision.crop import square_crop
from beauty_pipeline.vision.detection import FaceDetector


@pytest.fixture(scope="module")
def detector(yunet_model):
    return FaceDetector(yunet_model)


def test_faces_found_and_crops_centred_on_fairface_margin125(detector):
    folder = require_shared("data", "fairface_margin125")
    files = sorted(folder.glob("*.jpg"))
    assert len(files) >= 500
    found, offsets, recheck = 0, [], []
    for index, path in enumerate(files):
        image = np.asarray(Image.open(path).convert("RGB"))
        faces = detector.detect(image)
        if not faces:
            continue
        found += 1
        crop, box = square_crop(image, faces[0].box, margin=0.25, size=300)
        assert crop.shape == (300, 300, 3) and crop.dtype == np.uint8
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        offsets.append(np.abs(centre - 150).max())
        side = max(box[2] - box[0], box[3] - box[1])
        assert side == pytest.approx(300 / 1.5, rel=0.02)  # margin 0.25 on each side
        if index % 25 == 0:
            again = detector.detect(crop)
            recheck.append(bool(again) and np.abs(
                np.array([(again[0].box[0] + again[0].box[2]) / 2,
                          (again[0].box[1] + again[0].box[3]) / 2]) - 150).max() < 30)
    rate = found / len(files)
    print(f"\nYuNet found a face in {found}/{len(files)} = {rate:.1%} of fairface_margin125")
    assert rate >= 0.90
    assert max(offsets) <= 2.0  # centred by construction, up to one source pixel of rounding
    assert np.mean(recheck) >= 0.9  # and the crop really shows a face in its centre


def test_crop_pads_past_the_border_and_maps_the_box():
    image = np.full((100, 100, 3), 200, np.uint8)
    image[:, :10] = 10  # a dark left edge that edge-replicate padding must repeat
    crop, box = square_crop(image, (0, 20, 40, 60), margin=0.5, size=300, pad="edge")
    assert crop.shape == (300, 300, 3)
    assert box == pytest.approx((75, 75, 225, 225))
    assert crop[150, 0, 0] < 40  # replicated dark edge beyond the border
    black, _ = square_crop(image, (0, 20, 40, 60), margin=0.5, size=300, pad="constant")
    assert black[150, 0, 0] == 0 and black[150, 299, 0] == 200
    with pytest.raises(ValueError, match="outside"):
        square_crop(image, (500, 500, 540, 540))


class _Serve:
    """A one-file HTTP server standing in for the model zoo."""

    def __init__(self, body: bytes):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/model.onnx"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_model_download_checks_sha256_and_caches(yunet_model, tmp_path):
    body = yunet_model.read_bytes()
    server = _Serve(body)
    try:
        spec = dataclasses.replace(YUNET, url=server.url, sha256=file_sha256(yunet_model))
        path = obtain_model_file(spec, cache_dir=tmp_path)
        assert path == tmp_path / YUNET.filename and path.read_bytes() == body
        wrong = dataclasses.replace(spec, sha256="0" * 64)
        with pytest.raises(ModelFileError, match="sha256") as caught:
            obtain_model_file(wrong, cache_dir=tmp_path / "other")
        assert "expected " + "0" * 64 in str(caught.value) and server.url in str(caught.value)
        assert not (tmp_path / "other" / YUNET.filename).exists()  # nothing saved
    finally:
        server.close()
    # Cached and intact: no network needed any more.
    assert obtain_model_file(spec, cache_dir=tmp_path) == path
    assert FaceDetector(path).detect(np.zeros((64, 64, 3), np.uint8)) == []


def test_offline_model_error_says_which_file_from_where_and_how(tmp_path):
    spec = dataclasses.replace(YUNET, url="http://127.0.0.1:9/face_detection_yunet_2023mar.onnx")
    (tmp_path / YUNET.filename).write_bytes(b"corrupt cache")  # a bad cache is not trusted
    with pytest.raises(ModelFileError) as caught:
        obtain_model_file(spec, cache_dir=tmp_path, timeout=2)
    message = str(caught.value)
    for part in ("YuNet", YUNET.filename, spec.url, "detector_model_path", YUNET.sha256):
        assert part in message
    with pytest.raises(ModelFileError, match="does not exist"):
        obtain_model_file(YUNET, local_path=tmp_path / "missing.onnx")


def test_zoo_spec_points_at_the_opencv_model_zoo():
    assert YUNET.url.endswith("/opencv_zoo/main/models/face_detection_yunet/"
                              "face_detection_yunet_2023mar.onnx")
    assert len(YUNET.sha256) == 64 and int(YUNET.sha256, 16)
