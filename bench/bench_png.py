"""PNG writer for the image store: Pillow at zlib level 1 (the store's) vs OpenCV (level 1, RLE, the
AVG row filter), plus OpenCV with libpng's adaptive filter choice for reference. OpenCV writes
faster but other bytes, so other store keys: measured, not adopted (BENCHMARKS.md says why).

Encodes and decodes the same images every way, interleaved in one process: synthetic 224 px
demo faces by default (nothing to download), or `--photos DIR` (e.g. the wide FairFace crops,
resized to the study's 300 px crop). Prints ms per image (best and median of the rounds), bytes
per image and whether every decoded image equals its source.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from beauty_pipeline.demo.synthetic import DemoSpec, demo_person_photos, person_name
from beauty_pipeline.storage import encode_png as pillow_store_png
from beauty_pipeline.vision.decode import to_rgb8


def pillow_png(image: np.ndarray) -> bytes:
    """The store's writer: Pillow, zlib level 1."""
    return pillow_store_png(image)


def opencv_png(image: np.ndarray) -> bytes:
    """OpenCV at level 1 with RLE and the AVG row filter."""
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                         cv2.IMWRITE_PNG_STRATEGY_RLE, cv2.IMWRITE_PNG_FILTER,
                         cv2.IMWRITE_PNG_FILTER_AVG])[1].tobytes()


def opencv_adaptive_png(image: np.ndarray) -> bytes:
    """OpenCV at level 1 with RLE and libpng's adaptive (all five) row filters."""
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                         cv2.IMWRITE_PNG_STRATEGY_RLE])[1].tobytes()


def decoded(data: bytes) -> np.ndarray:
    """The store's reader (Pillow, then the decoder's RGB conversion)."""
    with Image.open(io.BytesIO(data)) as image:
        return to_rgb8(image)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=Path, help="JPEGs to use instead of synthetic faces")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if args.photos:
        paths = sorted(args.photos.rglob("*.jpg"))[:args.images]
        images = [cv2.resize(np.asarray(Image.open(p).convert("RGB")), (300, 300),
                             interpolation=cv2.INTER_AREA) for p in paths]
    else:
        _, faces = demo_person_photos(DemoSpec(image_size=args.size,
                                               photos_per_person=args.images), person_name(0))
        images = [face.image for face in faces]
    writers = (("pillow", pillow_png), ("opencv adaptive", opencv_adaptive_png),
               ("opencv", opencv_png))
    times = {name: {"write": [], "read": []} for name, _ in writers}
    sizes, exact = {}, {}
    for _ in range(args.rounds):
        for name, write in writers:
            start = time.perf_counter()
            encoded = [write(image) for image in images]
            times[name]["write"].append((time.perf_counter() - start) / len(images))
            start = time.perf_counter()
            back = [decoded(data) for data in encoded]
            times[name]["read"].append((time.perf_counter() - start) / len(images))
            sizes[name] = sum(map(len, encoded)) / len(images)
            exact[name] = all(np.array_equal(a, b) for a, b in zip(images, back, strict=True))
    print("| writer | write ms (best / median) | read ms (best / median) | bytes | lossless |")
    print("|---|---:|---:|---:|---|")
    for name, spent in times.items():
        write, read = (np.asarray(spent[k]) * 1000 for k in ("write", "read"))
        print(f"| {name} | {write.min():.2f} / {np.median(write):.2f} | {read.min():.2f} / "
              f"{np.median(read):.2f} | {sizes[name]:.0f} | {exact[name]} |")
    ratio = np.median(times["pillow"]["write"]) / np.median(times["opencv"]["write"])
    print(f"\nopencv / pillow write speed (median): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
