"""The synthetic demo set: reproducible, exact masks, and the planted shortcut is there."""

import numpy as np

from beauty_pipeline.data.backgrounds import mask_is_plausible
from beauty_pipeline.demo.synthetic import DemoSpec, demo_ordinary_faces, demo_person_photos


def test_same_seed_same_pixels_other_seed_differs():
    spec = DemoSpec(image_size=48, photos_per_person=3)
    _, first = demo_person_photos(spec, "Demo Person 01")
    _, again = demo_person_photos(spec, "Demo Person 01")
    _, other = demo_person_photos(DemoSpec(image_size=48, photos_per_person=3, seed=9),
                                  "Demo Person 01")
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0].image, other[0].image)


def test_masks_are_exact_and_face_inside_person():
    spec = DemoSpec(image_size=64, photos_per_person=4)
    _, faces = demo_person_photos(spec, "Demo Person 02")
    for face in faces:
        assert mask_is_plausible(face.person_mask)[0]
        inside = face.person_mask[face.face_mask > 127]
        assert (inside > 127).mean() > 0.99
        x0, y0, x1, y1 = face.face_box
        ys, xs = np.nonzero(face.face_mask > 127)
        assert abs(xs.min() - x0) <= 2 and abs(ys.max() - y1) <= 2


def test_planted_shortcut_rate():
    spec = DemoSpec(image_size=32, ordinary=300, shortcut=0.9)
    studio = np.mean([face.studio for _, face in demo_ordinary_faces(spec)])
    assert 0.03 < studio < 0.2  # ordinary photos are mostly cluttered snapshots
