"""Content-addressed image store, atomic writes and Parquet manifests under the data root."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write via a temp file and rename, so a crash never leaves a half file that looks complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: Path, payload: Any) -> Path:
    """JSON twin of atomic_write_bytes, sorted keys so equal payloads give equal bytes."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str)
    return atomic_write_bytes(path, text.encode())


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Write a manifest atomically as Parquet."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return atomic_write_bytes(path, buffer.getvalue())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def frame_digest(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """Stable content hash of a manifest, used as a Dagster data version."""
    view = frame[columns] if columns else frame
    hashed = pd.util.hash_pandas_object(view.reset_index(drop=True), index=True).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def encode_png(array: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB (H, W, 3) or gray (H, W) uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class ImageStore:
    """Images keyed by sha256 of their bytes (images/ab/abcdef.png): reruns never duplicate."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.png" if "." not in key else self.root / key[:2] / key

    def put_bytes(self, data: bytes, suffix: str = "png") -> str:
        """Store raw encoded bytes; the key is their sha256 (plus the suffix when not PNG)."""
        digest = sha256_bytes(data)
        key = digest if suffix == "png" else f"{digest}.{suffix}"
        target = self.path(key)
        if not target.exists():
            atomic_write_bytes(target, data)
        return key

    def put_array(self, array: np.ndarray) -> str:
        """Store an image array losslessly and return its key."""
        return self.put_bytes(encode_png(array))

    def load(self, key: str, mode: str = "RGB") -> np.ndarray:
        """Decode a stored image as a uint8 array (RGB by default, 'L' for masks)."""
        with Image.open(self.path(key)) as image:
            return np.asarray(image.convert(mode))

    def size(self, key: str) -> tuple[int, int]:
        """(height, width) of a stored image from its header alone, without decoding pixels."""
        with Image.open(self.path(key)) as image:
            return image.size[1], image.size[0]

    def exists(self, key: str) -> bool:
        return self.path(key).exists()
