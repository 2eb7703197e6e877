"""Person masks for the three background variants: segment once (cache + pool) vs every variant.

"before" is b445b50's person_masks: every variant segments every image again, in one process.
"now" is data/variants.person_masks: one mask per image and segmenter in the image store,
computed in a process pool by the first variant and read by the other two. Both run here, side
by side, on the same images in fresh stores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from beauty_pipeline.data.variants import person_masks
from beauty_pipeline.storage import ImageStore
from beauty_pipeline.vision.segmentation import SegmenterSettings, make_segmenter

SHARED = Path(__file__).resolve().parents[2] / "shared"
VARIANTS = ("original", "white", "random")


def study_frame(store: ImageStore, folder: Path, count: int, size: int) -> pd.DataFrame:
    """Wide FairFace crops at the study's crop size, face box = the middle of the frame."""
    files = sorted(folder.glob("*.jpg"))[:count]
    keys = [store.put_array(np.asarray(Image.open(f).convert("RGB").resize((size, size))))
            for f in files]
    box = np.array([0.34, 0.3, 0.66, 0.7]) * size
    return pd.DataFrame({"image_key": keys, "face_x0": box[0], "face_y0": box[1],
                         "face_x1": box[2], "face_y1": box[3], "person_mask_key": ""})


def before(study: pd.DataFrame, store: ImageStore, segmenter) -> list:
    """b445b50: a mask per row per variant, in this process."""
    masks = []
    for row in study.itertuples(index=False):
        box = np.array([row.face_x0, row.face_y0, row.face_x1, row.face_y1], dtype=float)
        masks.append(segmenter.mask(store.load(row.image_key), face_box=box))
    return masks


def timed(function) -> tuple[float, list]:
    start = time.perf_counter()
    out = [function() for _ in VARIANTS]
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "fairface_margin125")
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--segmenter", default="grabcut", help="grabcut | rembg")
    parser.add_argument("--rembg-model-path", default="",
                        help="e.g. ../shared/models/isnet_small.onnx (rembg's custom IS-Net)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    segmenter = make_segmenter(SegmenterSettings(args.segmenter,
                                                 rembg_model_path=args.rembg_model_path))
    with tempfile.TemporaryDirectory() as tmp:
        old_store, new_store = ImageStore(Path(tmp) / "a"), ImageStore(Path(tmp) / "b")
        old = study_frame(old_store, args.data, args.count, args.size)
        new = study_frame(new_store, args.data, args.count, args.size)
        seconds_before, masks_before = timed(lambda: before(old, old_store, segmenter))
        seconds_now, masks_now = timed(
            lambda: person_masks(new, new_store, segmenter, args.workers)[0])
    same = np.mean([(a > 127) == (b > 127) for a, b in zip(masks_before[0], masks_now[0],
                                                           strict=True)])
    print(f"{args.segmenter} ({segmenter.detail}), {args.count} images at {args.size} px, "
          f"3 variants, {args.workers} workers, load {os.getloadavg()[0]:.1f}")
    print(f"| before: every variant segments | {seconds_before:.1f} s | "
          f"{3 * args.count / seconds_before:.2f} masks/s |")
    print(f"| now: once, pooled, cached | {seconds_now:.1f} s | "
          f"{3 * args.count / seconds_now:.2f} masks/s |")
    print(f"| **now / before** | **{seconds_before / seconds_now:.2f}x** | pixel agreement "
          f"{same:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
