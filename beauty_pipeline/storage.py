"""Content-addressed image store, atomic writes and Parquet manifests under the data root."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from beauty_pipeline.errors import PipelineError
from beauty_pipeline.vision.decode import to_rgb8


class StoredImageError(PipelineError):
    """A stored image whose bytes no longer match its key: damaged on disk after it was written."""


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def shared_file_mode() -> int:
    """0666 minus the process umask, as open() would give: other services can read our files."""
    return 0o666 & ~_process_umask()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on <path>.lock, so processes take turns creating one thing."""
    lock = Path(path).with_name(Path(path).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write via a temp file and rename, so a crash never leaves a half file that looks complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, shared_file_mode())  # mkstemp makes 0600; the umask decides, as for open()
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

    def read_verified(self, key: str) -> bytes:
        """The stored bytes, checked against the sha256 in their key; damage names the key."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise StoredImageError(f"stored image {key} is missing or unreadable at {path} "
                                   f"({error.strerror}); {self._remedy(key)}") from error
        if sha256_bytes(data) != key.split(".", 1)[0]:
            raise StoredImageError(f"stored image {key} at {path} is damaged (its sha256 no longer "
                                   f"matches its key); {self._remedy(key)}")
        return data

    def _remedy(self, key: str) -> str:
        """What to rematerialize: the assets whose manifests under the data root use this key."""
        makers = images_made_by(self.root.parent / "manifests", key)
        where = ", ".join(makers) if makers else "the asset that stored it"
        return f"delete the file and rematerialize {where}"

    def load(self, key: str, mode: str = "RGB") -> np.ndarray:
        """Decode a stored image as a uint8 array (RGB by default, 'L' for masks), verified."""
        with Image.open(io.BytesIO(self.read_verified(key))) as image:
            # RGB through the decoder's one conversion: transparency lands on ALPHA_BACKGROUND
            return to_rgb8(image) if mode == "RGB" else np.asarray(image.convert(mode))

    def size(self, key: str) -> tuple[int, int]:
        """(height, width) of a stored image from its header alone, without decoding pixels."""
        with Image.open(self.path(key)) as image:
            return image.size[1], image.size[0]

    def exists(self, key: str) -> bool:
        return self.path(key).exists()


def images_made_by(manifests: Path, key: str, limit: int = 200) -> list[str]:
    """'asset/partition' of the manifests that mention an image key (only read on failure)."""
    found = []
    for path in sorted(Path(manifests).glob("**/*.parquet"))[:limit * 10]:
        try:
            frame = pd.read_parquet(path)
        except Exception:  # a damaged manifest is not what is being diagnosed here
            continue
        columns = [c for c in frame.columns if c.endswith("image_key") or c == "source_key"]
        if any(frame[c].astype(str).eq(key).any() for c in columns):
            found.append(path.relative_to(manifests).with_suffix("").as_posix())
        if len(found) >= 5:
            break
    return found


ROOT_MARK = "@data_root/"  # a path stored in a manifest, relative to wherever the root is now


def _map_strings(value: Any, convert) -> Any:
    """Apply convert to every string inside dicts, lists, tuples and text columns of frames."""
    if isinstance(value, str):
        return convert(value)
    if isinstance(value, dict):
        return {k: _map_strings(v, convert) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_map_strings(v, convert) for v in value)
    if isinstance(value, pd.DataFrame):
        return _map_text_columns(value, lambda v: _map_strings(v, convert))
    return value


def paths_relative(value: Any, root: Path) -> Any:
    """Absolute paths under the data root -> '@data_root/...', so a moved root keeps working."""
    prefix = str(Path(root)) + os.sep
    return _map_strings(value, lambda v: ROOT_MARK + v[len(prefix):] if v.startswith(prefix)
                        else v)


def paths_absolute(value: Any, root: Path) -> Any:
    """The inverse of paths_relative, against the data root as it is now."""
    return _map_strings(value, lambda v: str(Path(root) / v[len(ROOT_MARK):])
                        if v.startswith(ROOT_MARK) else v)


def _map_text_columns(frame: pd.DataFrame, convert) -> pd.DataFrame:
    columns = [c for c in frame.columns if frame[c].dtype == object or
               pd.api.types.is_string_dtype(frame[c].dtype)]
    if not columns:
        return frame
    frame = frame.copy()
    for column in columns:
        frame[column] = frame[column].map(lambda v: convert(v) if isinstance(v, str) else v)
    return frame


class ChunkLedger:
    """Finished chunks of one long step, one small file each (written atomically as a chunk
    completes): a rerun after Ctrl-C, a kill or a lost machine reads them back instead of
    computing them again. A chunk's id is a digest of its inputs, so changed inputs never
    match a stale entry."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @staticmethod
    def chunk_id(step: str, jobs: list) -> str:
        """sha256 of the step's name and the chunk's job descriptions."""
        return sha256_bytes(json.dumps([step, jobs], default=str).encode())[:32]

    def _path(self, chunk: str) -> Path:
        return self.folder / chunk[:2] / f"{chunk}.json"

    def get(self, chunk: str) -> list | None:
        """The recorded results of a finished chunk, or None when it has not finished."""
        try:
            return json.loads(self._path(chunk).read_text())["results"]
        except (OSError, ValueError, KeyError):
            return None

    def record(self, chunk: str, results: list) -> None:
        """Mark a chunk finished with its (JSON-able) results."""
        atomic_write_json(self._path(chunk), {"results": results})
