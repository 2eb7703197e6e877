"""Decode images once per data-set version into a uint8 memory-mapped array at training size."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np

from beauty_pipeline.storage import ImageStore


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


def decoded_images(keys: list[str], store: ImageStore, size: int, cache_dir: Path) -> np.ndarray:
    """(N, size, size, 3) uint8, memory-mapped from disk; built atomically on first use."""
    path = Path(cache_dir) / f"{cache_key(keys, size)}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                      shape=(len(keys), size, size, 3))
    for index, key in enumerate(keys):
        array[index] = resize_square(store.load(key), size)
    array.flush()
    del array
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r")
