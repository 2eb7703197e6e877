"""The audit's profile moves: the spatial moves (whole-pixel position, Lanczos geometry) against
the bilinear moves they replaced, side by side on the same synthetic test images, at two set sizes
and one or two pool workers (set times: the median of 3 runs).

Reported: seconds for every family's own- and other-class sets (`profile_sets`, what the audit
builds once per variant), and ms per image for the geometry and position moves alone, ours vs the
bilinear baseline, with their ratio.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from beauty_pipeline.data import families
from beauty_pipeline.data.families import class_profile, profile_sets, to_face_width, to_position, zoom
from beauty_pipeline.demo.synthetic import DemoSpec, demo_person_photos, person_name


def bilinear_face_width(image, width, target, centre):
    """The geometry move before: the same zoom, bilinear."""
    factor = float(np.clip(target / width, 2 / 3, 1.5))
    return families.inside_frame(image, lambda inner: zoom(inner, factor, centre))


def bilinear_position(image, centre, target):
    """The position move before: the same translation, sub-pixel and bilinear."""
    side = image.shape[0]
    offset = (target[0] * side - centre[0], target[1] * side - centre[1])
    return families.inside_frame(image, lambda inner: zoom(inner, 1.0, None, offset))


def test_images(count: int, side: int) -> np.ndarray:
    """`count` synthetic face photos at `side` px (photos of several persons)."""
    spec = DemoSpec(image_size=side, photos_per_person=8)
    out, person = [], 0
    while len(out) < count:
        _, faces = demo_person_photos(spec, person_name(person))
        out += [np.asarray(face.image) for face in faces]
        person += 1
    return np.stack(out[:count])


def per_image_ms(move, images, widths, centres, target) -> float:
    """ms per image of one move (geometry: width -> target width; position: centre -> target)."""
    def once(image, width, centre):
        return move(image, width, target, centre) if np.isscalar(target) else \
            move(image, centre, target)

    once(images[0], widths[0], centres[0])  # warm-up: the first OpenCV call pays its setup
    started = time.perf_counter()
    for image, width, centre in zip(images, widths, centres, strict=True):
        once(image, width, centre)
    return 1000 * (time.perf_counter() - started) / len(images)


def sets_seconds(images, profiles, labels, widths, centres, workers: int,
                 bilinear: bool = False) -> float:
    """Seconds for every family's own/other sets; bilinear: the old spatial moves (in-process
    only: pool workers import the module afresh)."""
    saved = families.to_face_width, families.to_position
    if bilinear:
        families.to_face_width, families.to_position = bilinear_face_width, bilinear_position
    try:
        started = time.perf_counter()
        profile_sets(images, profiles, labels, widths, centres, seed=0, workers=workers)
        return time.perf_counter() - started
    finally:
        families.to_face_width, families.to_position = saved


def median_seconds(data, workers: int, bilinear: bool = False, repeats: int = 3) -> float:
    """The median of `repeats` set times: the machine is shared."""
    return float(np.median([sets_seconds(*data, workers, bilinear) for _ in range(repeats)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 384])
    parser.add_argument("--side", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f"{'images':>7} {'workers':>7} {'profile_sets s ours / bilinear (1 worker)':>42}   "
          f"{'geometry ms/img ours / bilinear':>32}   {'position ms/img ours / bilinear':>32}")
    for count in args.sizes:
        images = test_images(count, args.side)
        labels = np.arange(count) % 2
        widths = np.full(count, 0.36)
        centres = [(args.side * 0.5, args.side * 0.45)] * count
        profiles = [class_profile(images[labels == c], widths[labels == c], None,
                                  [centres[0]] * int((labels == c).sum())) for c in (0, 1)]
        geometry = [per_image_ms(move, images, widths, centres, 0.40)
                    for move in (to_face_width, bilinear_face_width)]
        position = [per_image_ms(move, images, widths, centres, (0.55, 0.5))
                    for move in (to_position, bilinear_position)]
        for bilinear in (True, False):  # warm-up: imports and OpenCV's first calls
            sets_seconds(images[:32], profiles, labels[:32], widths[:32], centres[:32], 1,
                         bilinear)
        data = (images, profiles, labels, widths, centres)
        baseline = median_seconds(data, 1, bilinear=True)
        for workers in args.workers:
            seconds = median_seconds(data, workers)
            print(f"{count:>7} {workers:>7} {seconds:>9.2f} / {baseline:.2f} "
                  f"{geometry[0]:>9.3f} / {geometry[1]:.3f} ({geometry[0] / geometry[1]:.2f}x)"
                  f"        {position[0]:>9.3f} / {position[1]:.3f} "
                  f"({position[0] / position[1]:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
