"""Near-duplicate detection by perceptual hash, so no near-copy lands on both sides of a split."""

from __future__ import annotations

from collections.abc import Sequence

import imagehash
import numpy as np
from PIL import Image

DEFAULT_THRESHOLD = 4  # pHash bits: re-encoded copies give 0, a 3% shift 4; aligned crops of
# different people reach 6 (measured on FairFace + Glint crops), so stay below it


def phash(image: np.ndarray | Image.Image) -> str:
    """64-bit DCT perceptual hash as 16 hex characters."""
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    return str(imagehash.phash(pil))


def _as_uint64(hashes: Sequence[int | str]) -> np.ndarray:
    values = [int(h, 16) if isinstance(h, str) else int(h) for h in hashes]
    if any(v < 0 or v >= 1 << 64 for v in values):
        raise ValueError("perceptual hashes must be 64-bit")
    return np.array(values, dtype=np.uint64)


def hamming(a: int | str, b: int | str) -> int:
    x, y = _as_uint64([a, b])
    return int(np.bitwise_count(x ^ y))


def near_duplicate_groups(hashes: Sequence[int | str], threshold: int = DEFAULT_THRESHOLD,
                          block: int = 1024) -> list[int]:
    """Group id per hash (0, 1, ... by first member); hashes within `threshold` bits share one."""
    values = _as_uint64(hashes)
    count = len(values)
    parent = np.arange(count)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, count, block):
        rows = values[start:start + block]
        # Only pairs (i, j) with j > i: the upper triangle, a block of rows at a time.
        distances = np.bitwise_count(rows[:, None] ^ values[None, start:])
        close_i, close_j = np.nonzero(distances <= threshold)
        for i, j in zip(close_i + start, close_j + start, strict=True):
            if j > i:
                root_i, root_j = find(int(i)), find(int(j))
                if root_i != root_j:
                    parent[max(root_i, root_j)] = min(root_i, root_j)
    roots = [find(i) for i in range(count)]
    numbering: dict[int, int] = {}
    return [numbering.setdefault(root, len(numbering)) for root in roots]
