"""Photo sources against a real HTTP server on 127.0.0.1 posing as Bing, and the local folder."""

from __future__ import annotations

import collections
import contextlib
import html
import http.server
import io
import json
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from conftest import require_shared
from PIL import Image

from beauty_pipeline.ranking import person_key
from beauty_pipeline.scraping import (
    PROVENANCE_COLUMNS,
    BingSource,
    DownloadError,
    LocalFolderSource,
    download_image,
)
from beauty_pipeline.storage import ImageStore, sha256_bytes

MAX_BYTES = 400_000


def bomb_png() -> bytes:
    """A small file that decodes to 144 million pixels."""
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeBing:
    """Serves a Bing-style result page and images, some good and some hostile, counting hits."""

    def __init__(self, images: dict[str, bytes]):
        self.images = images
        self.hits: collections.Counter[str] = collections.Counter()
        self.queries: list[dict] = []
        self.flaky_left = 1
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):  # noqa: N802 - http.server's name
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    fake.handle(self)  # the client hangs up on slow and oversized replies

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def result_page(self, first: int) -> bytes:
        if first > 0:
            return b""
        names = ["good1.jpg", "good2.jpg", "good3.png", "truncated.jpg", "page.jpg",
                 "oversized.jpg", "slow.jpg", "error500.jpg", "missing.jpg", "bomb.png",
                 "flaky.jpg", "good1.jpg"]
        items = []
        for name in names:
            meta = json.dumps({"purl": f"{self.base}/site/{name}",
                               "murl": f"{self.base}/img/{name}", "turl": f"{self.base}/th"},
                              separators=(",", ":"))  # Bing writes compact JSON
            items.append(f'<a class="iusc" m="{html.escape(meta)}" href="#">x</a>')
        return ("<div>" + "\n".join(items) + "</div>").encode()

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(request.path)
        self.hits[parsed.path] += 1
        if parsed.path == "/images/async":
            query = dict(urllib.parse.parse_qsl(parsed.query))
            self.queries.append(query)
            return self.reply(request, 200, self.result_page(int(query.get("first", 0))),
                              "text/html")
        name = parsed.path.removeprefix("/img/")
        if name == "slow.jpg":
            time.sleep(1.5)
            return self.reply(request, 200, self.images["good1.jpg"])
        if name == "error500.jpg":
            return self.reply(request, 500, b"boom", "text/plain")
        if name == "flaky.jpg" and self.flaky_left:
            self.flaky_left -= 1
            return self.reply(request, 503, b"busy", "text/plain")
        if name == "oversized.jpg":  # no Content-Length: the cap must work while streaming
            request.send_response(200)
            request.send_header("Content-Type", "image/jpeg")
            request.end_headers()
            for _ in range(40):
                request.wfile.write(b"\xff" * 50_000)
            return None
        if name not in self.images:
            return self.reply(request, 404, b"not found", "text/plain")
        return self.reply(request, 200, self.images[name])

    @staticmethod
    def reply(request, status: int, body: bytes, kind: str = "image/jpeg") -> None:
        request.send_response(status)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def image_hits(self) -> int:
        return sum(n for path, n in self.hits.items() if path.startswith("/img/"))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_bing():
    data = require_shared("data")
    jpg1 = (data / "fairface_margin125" / "fairface_0001.jpg").read_bytes()
    images = {
        "good1.jpg": jpg1,
        "good2.jpg": (data / "fairface_margin125" / "fairface_0002.jpg").read_bytes(),
        "good3.png": (data / "celebrity_crops_glint" / "Tom_Hanks").glob("*.png").__next__()
        .read_bytes(),
        "truncated.jpg": jpg1[: len(jpg1) // 2],
        "page.jpg": b"<!doctype html><html><body>Not an image</body></html>",
        "bomb.png": bomb_png(),
        "flaky.jpg": (data / "fairface_margin125" / "fairface_0003.jpg").read_bytes(),
    }
    server = FakeBing(images)
    yield server, images
    server.close()


def source(base: str, **overrides) -> BingSource:
    settings = dict(limit=20, extra_terms="face", timeout=0.5, max_bytes=MAX_BYTES, retries=2,
                    base_url=base, backoff=0.01, allow_private=True)  # the fake is on 127.0.0.1
    return BingSource(**{**settings, **overrides})


def test_bing_keeps_good_images_records_failures_and_reruns_download_nothing(fake_bing, tmp_path):
    server, images = fake_bing
    store = ImageStore(tmp_path / "images")
    rows = source(server.base).fetch("tom-hanks", "Tom Hanks", store)

    assert list(rows.columns) == PROVENANCE_COLUMNS
    assert server.queries[0]["q"] == "Tom Hanks face"
    by_name = {url.rsplit("/", 1)[1]: row for url, row in zip(rows["url"], rows.to_dict("records"),
                                                              strict=True)}
    assert len(rows) == 11  # the repeated good1.jpg link is fetched once
    for name in ("good1.jpg", "good2.jpg", "good3.png", "flaky.jpg"):
        row = by_name[name]
        assert row["outcome"] == "ok", row
        assert row["sha256"] == sha256_bytes(images[name]) and row["bytes"] == len(images[name])
        assert store.path(row["image_key"]).read_bytes() == images[name]
        assert row["image_key"].split(".")[0] == row["sha256"]  # names only from content
    expected = {"truncated.jpg": "not a decodable image", "page.jpg": "not a decodable image",
                "oversized.jpg": "too large", "slow.jpg": "timeout",
                "error500.jpg": "HTTP 500 (after 3 attempts)", "missing.jpg": "HTTP 404",
                "bomb.png": "decompression bomb"}
    for name, reason in expected.items():
        row = by_name[name]
        assert row["outcome"] == "failed" and reason in row["reason"], row
        assert row["image_key"] == ""
    assert server.hits["/img/error500.jpg"] == 3      # transient: retried
    assert server.hits["/img/missing.jpg"] == 1       # 4xx: not retried
    assert server.hits["/img/flaky.jpg"] == 2         # 503 then success
    stored = sorted(p for p in (tmp_path / "images").rglob("*") if p.is_file())
    assert len(stored) == 4 and not any(p.name.startswith(".") for p in stored)

    before = server.image_hits()
    again = source(server.base).fetch("tom-hanks", "Tom Hanks", store, known=rows)
    assert server.image_hits() == before
    assert sorted(again.loc[again["outcome"] == "skipped_known", "image_key"]) == sorted(
        rows.loc[rows["outcome"] == "ok", "image_key"])
    assert (again["outcome"] == "failed").sum() == 7


def test_rerun_with_limit_reached_does_not_even_search(fake_bing, tmp_path):
    server, _ = fake_bing
    store = ImageStore(tmp_path / "images")
    first = source(server.base, limit=2).fetch("tom-hanks", "Tom Hanks", store)
    assert (first["outcome"] == "ok").sum() == 2
    searches = server.hits["/images/async"]
    second = source(server.base, limit=2).fetch("tom-hanks", "Tom Hanks", store, known=first)
    assert server.hits["/images/async"] == searches
    assert (second["outcome"] == "skipped_known").sum() == 2


def test_a_lost_image_is_downloaded_again(fake_bing, tmp_path):
    server, _ = fake_bing
    store = ImageStore(tmp_path / "images")
    first = source(server.base, limit=1).fetch("tom-hanks", "Tom Hanks", store)
    store.path(first["image_key"].iloc[0]).unlink()
    second = source(server.base, limit=1).fetch("tom-hanks", "Tom Hanks", store, known=first)
    assert second["outcome"].tolist() == ["ok"] and store.exists(second["image_key"].iloc[0])


def test_offline_search_is_a_recorded_failure(tmp_path):
    rows = source("http://127.0.0.1:9", retries=0).fetch("x", "X", ImageStore(tmp_path))
    assert rows["outcome"].tolist() == ["failed"]
    assert "search page failed" in rows["reason"].iloc[0]


def test_download_refuses_other_schemes():
    with pytest.raises(DownloadError, match="unsupported URL scheme"):
        download_image("file:///etc/passwd")


def test_local_folder_source_on_glint_crops(tmp_path):
    root = require_shared("data", "celebrity_crops_glint")
    store = ImageStore(tmp_path / "images")
    local = LocalFolderSource(root)
    person = person_key("Barack Obama")
    rows = local.fetch(person, "Barack Obama", store)
    files = sorted(p for p in (root / "Barack_Obama").iterdir() if p.is_file())
    assert len(rows) == len(files) and (rows["outcome"] == "ok").all()
    assert all(store.exists(k) for k in rows["image_key"])
    again = local.fetch(person, "Barack Obama", store, known=rows)
    assert (again["outcome"] == "skipped_known").all()
    assert again["image_key"].tolist() == rows["image_key"].tolist()

    # "Robert Downey Jr." finds Robert_Downey_Jr by key; an unknown person is a recorded failure.
    assert len(local.fetch(person_key("Robert Downey Jr."), "Robert Downey Jr.", store)) > 0
    missing = local.fetch("nobody-here", "Nobody Here", store)
    assert missing["outcome"].tolist() == ["failed"] and "no folder" in missing["reason"][0]
    with pytest.raises(ValueError, match="unsafe person key"):
        local.fetch("../celebrity_crops_glint", "x", store)


def test_local_folder_records_bad_files_and_keeps_good_ones(tmp_path):
    folder = tmp_path / "photos" / "rose"
    folder.mkdir(parents=True)
    good = require_shared("data", "fairface_margin125", "fairface_0001.jpg").read_bytes()
    (folder / "a.jpg").write_bytes(good)
    (folder / "b.jpg").write_bytes(good[:1000])
    (folder / "c.jpg").write_text("<html></html>")
    rows = LocalFolderSource(tmp_path / "photos").fetch("rose", "Rosé", ImageStore(tmp_path / "s"))
    assert rows["outcome"].tolist() == ["ok", "failed", "failed"]
    assert all("not a decodable image" in r for r in rows["reason"][1:])
    assert Path(urllib.parse.urlsplit(rows["url"][0]).path).name == "a.jpg"
