"""The face tests one test image gets (features removed and their control, the per-class swap and
its control): the inner-face swap against the features-only swap it replaced, side by side on the
same synthetic test images, at two image sizes (ms per image, the median of 3 rounds).

Both versions do the same removal; they differ in the swap's region (the inner face is about
1.8x the features' area, and its control picks as many pixels of the person elsewhere).
"""

from __future__ import annotations

import argparse
import statistics
import time

from beauty_pipeline.data.counterfactual import (
    TestSample,
    aligned,
    control_blobs,
    face_sets,
    feature_blobs,
    pasted,
    remove_regions,
)
from beauty_pipeline.demo.synthetic import DemoSpec, demo_person_photos, person_name


def features_only(sample: TestSample, partner: TestSample) -> tuple:
    """The face tests before: the swap took the eyes, nose and mouth alone."""
    blobs = feature_blobs(sample)
    control = control_blobs(sample, blobs)
    source = aligned(partner, sample)
    return (remove_regions(sample.image, blobs), remove_regions(sample.image, control),
            pasted(sample.image, source, blobs), pasted(sample.image, source, control))


def test_samples(count: int, side: int) -> list[TestSample]:
    """`count` synthetic photos with their person and face masks and face boxes."""
    spec = DemoSpec(image_size=side, photos_per_person=4)
    out, person = [], 0
    while len(out) < count:
        _, faces = demo_person_photos(spec, person_name(person))
        out += [TestSample(face.image, face.person_mask, face.image, person % 2, str(person),
                           face.face_box, face.face_mask) for face in faces]
        person += 1
    return out[:count]


def per_image_ms(tests, samples: list[TestSample]) -> float:
    """ms per image of one version, each image with the next image as its partner."""
    tests(samples[0], samples[1])  # warm-up
    started = time.perf_counter()
    for i, sample in enumerate(samples):
        tests(sample, samples[(i + 1) % len(samples)])
    return 1000 * (time.perf_counter() - started) / len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 224])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'px':>5} {'images':>7} {'features-only ms':>17} {'inner face ms':>14} {'ratio':>6}")
    for side in args.sizes:
        samples = test_samples(args.images, side)
        before, after = [], []
        for _ in range(args.rounds):  # alternate, so drifting machine load hits both alike
            before.append(per_image_ms(features_only, samples))
            after.append(per_image_ms(face_sets, samples))
        b, a = statistics.median(before), statistics.median(after)
        print(f"{side:>5} {len(samples):>7} {b:>17.2f} {a:>14.2f} {a / b:>6.2f}")


if __name__ == "__main__":
    main()
