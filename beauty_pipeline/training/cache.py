"""Decode images once per data-set version into a uint8 memory-mapped array at training size."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from beauty_pipeline.storage import ImageStore, atomic_write_json, file_lock

log = logging.getLogger(__name__)


def cache_key(keys: list[str], size: int) -> str:
    """Same images in the same order at the same size give the same cache file."""
    digest = hashlib.sha256(f"{size}\n".encode())
    for key in keys:
        digest.update(key.encode() + b"\n")
    return digest.hexdigest()[:20]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size with area averaging when shrinking (the crops are square already)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrinking = image.shape[0] > size
    return cv2.resize(image, (size, size),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def file_digest(path: Path) -> str:
    """sha256 of a (possibly large) file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_problem(path: Path, shape: tuple[int, ...]) -> str:
    """Why a cache file cannot be trusted ('' when its recorded checksum and shape still hold)."""
    seal = path.with_suffix(".json")
    if not path.exists():
        return "not built yet"
    try:
        recorded = json.loads(seal.read_text())
    except (OSError, ValueError):
        return f"{path.name} has no readable checksum record {seal.name}"
    if tuple(recorded.get("shape", ())) != shape:
        return f"{path.name} was recorded with shape {recorded.get('shape')}, expected {list(shape)}"
    if path.stat().st_size != recorded.get("bytes"):
        return (f"{path.name} is {path.stat().st_size} bytes, {recorded.get('bytes')} were "
                "recorded (truncated?)")
    if file_digest(path) != recorded.get("sha256"):
        return f"{path.name} no longer matches the sha256 recorded when it was built (altered)"
    return ""


def decoded_images(keys: list[str], store: ImageStore, size: int, cache_dir: Path) -> np.ndarray:
    """(N, size, size, 3) uint8, memory-mapped from disk; built atomically on first use.

    The file's sha256 is recorded beside it at build and checked at every open: a truncated,
    zeroed or altered cache is rebuilt (and the reason logged), never trained on."""
    path = Path(cache_dir) / f"{cache_key(keys, size)}.npy"
    shape = (len(keys), size, size, 3)
    with file_lock(path):
        problem = cache_problem(path, shape)
        if not problem:
            return np.load(path, mmap_mode="r")
        if path.exists():
            log.warning("rebuilding decoded-image cache %s: %s", path, problem)
        _build(path, keys, store, size, shape)
    return np.load(path, mmap_mode="r")


def _build(path: Path, keys: list[str], store: ImageStore, size: int,
           shape: tuple[int, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
    try:
        for index, key in enumerate(keys):
            array[index] = resize_square(store.load(key), size)
        array.flush()
    except BaseException:
        del array
        tmp.unlink(missing_ok=True)
        raise
    del array
    path.with_suffix(".json").unlink(missing_ok=True)  # never a new file under an old seal
    os.replace(tmp, path)
    atomic_write_json(path.with_suffix(".json"), {
        "shape": list(shape), "bytes": path.stat().st_size, "sha256": file_digest(path)})
