"""Background plates: today's full-size TELEA vs cheaper fills, side by side on the same images.

Each method fills the same hole (the person mask, grown by 3 px) of real FairFace crops at the
study's crop size; the person mask is a head-and-shoulders ellipse pair, so the hole has the size
and shape a segmenter gives. Reported per method: ms per plate, speed-up over TELEA at full size,
and how far its fill lies from TELEA's inside the hole (mean absolute difference, 0-255) and from
the true pixels there (what the hole hid: a fill cannot know them, but a wild one is far off).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from beauty_pipeline.data.backgrounds import PLATE_METHODS, background_plate, plate_hole

# ../shared beside the checkout (a worktree sits one folder deeper)
SHARED = next((p / "shared" for p in Path(__file__).resolve().parents if (p / "shared").is_dir()),
              Path("shared"))


def person_mask(size: int) -> np.ndarray:
    """A head-and-shoulders foreground: an ellipse for the head, a wide one for the shoulders."""
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (size // 2, int(size * 0.45)), (int(size * 0.2), int(size * 0.27)), 0, 0,
                360, 255, -1)
    cv2.ellipse(mask, (size // 2, size), (int(size * 0.42), int(size * 0.3)), 0, 0, 360, 255, -1)
    return mask


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "fairface_margin125")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2, help="timed passes; the best is kept")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    files = sorted(args.data.glob("*.jpg"))[:args.count]
    images = [np.asarray(Image.open(f).convert("RGB").resize((args.size, args.size)))
              for f in files]
    mask = person_mask(args.size)
    hole = plate_hole(mask) > 0
    reference = None
    print(f"{len(images)} FairFace crops at {args.size} px, hole {hole.mean():.0%} of the frame, "
          "one process, one OpenCV thread")
    print(f"{'method':<16} {'ms/plate':>9} {'speed-up':>9} {'|fill-TELEA|':>13} {'|fill-true|':>12}")
    base = None
    for method in PLATE_METHODS:
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            plates = [background_plate(image, mask, method=method) for image in images]
            best = min(best, time.perf_counter() - start)
        if reference is None:
            reference = plates
        ms = 1000 * best / len(images)
        base = base or ms
        to_telea = np.mean([np.abs(p.astype(int) - r.astype(int))[hole].mean()
                            for p, r in zip(plates, reference, strict=True)])
        to_true = np.mean([np.abs(p.astype(int) - i.astype(int))[hole].mean()
                           for p, i in zip(plates, images, strict=True)])
        print(f"{method:<16} {ms:>9.1f} {base / ms:>8.1f}x {to_telea:>13.1f} {to_true:>12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
