"""Shared pieces of the adversarial tests: tiny real HTTP servers on 127.0.0.1, images, rankings."""

from __future__ import annotations

import contextlib
import http.server
import io
import threading
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from PIL import Image

HEADER = "name,gender,rank,list,year\n"


def ranking_csv(names: list[str]) -> str:
    """A valid ranking with these names, ranks 1..n in one list."""
    return HEADER + "".join(f"{name},female,{i},most_beautiful_2024,2024\n"
                            for i, name in enumerate(names, start=1))


def write_ranking(path, names: list[str]) -> None:
    pd.DataFrame([{"name": n, "gender": "female", "rank": i, "list": "most_beautiful_2024",
                   "year": 2024} for i, n in enumerate(names, start=1)]).to_csv(path, index=False)


def png_bytes(array: np.ndarray | Image.Image, fmt: str = "PNG") -> bytes:
    image = array if isinstance(array, Image.Image) else Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def face_like(seed: int = 0, size: int = 48) -> bytes:
    """A small distinct RGB PNG (content does not matter where no detector runs)."""
    rng = np.random.default_rng(seed)
    return png_bytes(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


class Server:
    """A real ThreadingHTTPServer on 127.0.0.1 whose GET handler is a plain function."""

    def __init__(self, handle: Callable[[http.server.BaseHTTPRequestHandler], None]):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):  # noqa: N802 - http.server's name
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    handle(self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def reply(request, status: int, body: bytes, headers: dict | None = None) -> None:
    request.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(body)


def trickle(request, prefix: bytes, seconds: float = 20.0, every: float = 0.1) -> None:
    """Send a 200 header, then one byte every `every` seconds: never a read timeout, never done."""
    request.send_response(200)
    request.end_headers()
    request.wfile.write(prefix)
    request.wfile.flush()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        request.wfile.write(b"x")
        request.wfile.flush()
        time.sleep(every)
