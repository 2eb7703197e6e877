"""Arrays a training run needs, decoded once per data-set version through the cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from beauty_pipeline.storage import ImageStore
from beauty_pipeline.training.cache import decoded_images


@dataclass
class SplitArrays:
    """uint8 NHWC images and int labels of one split."""

    images: np.ndarray
    labels: np.ndarray


def split_arrays(manifest: pd.DataFrame, store: ImageStore, size: int, cache_dir: Path,
                 key_column: str = "variant_image_key", label_column: str = "looks",
                 ) -> dict[str, SplitArrays]:
    """Train, val and test arrays from one memory-mapped cache of the whole manifest."""
    images = decoded_images(manifest[key_column].tolist(), store, size, cache_dir)
    out = {}
    for side in ("train", "val", "test"):
        index = np.flatnonzero((manifest["split"] == side).to_numpy())
        out[side] = SplitArrays(images[index], manifest[label_column].to_numpy()[index])
    return out
