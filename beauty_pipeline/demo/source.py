"""The demo's photo source and ordinary class: synthetic faces stored like downloaded photos."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from beauty_pipeline.data.schema import conform
from beauty_pipeline.demo.synthetic import (
    DemoFace,
    DemoSpec,
    Identity,
    demo_identity,
    demo_ordinary_faces,
    demo_person_photos,
    person_name,
)
from beauty_pipeline.storage import ImageStore, encode_png, sha256_bytes
from beauty_pipeline.vision.quality import image_cues

PREPROCESSING = "synthetic: rendered at final size, exact face and person masks"


def demo_ranking(spec: DemoSpec) -> pd.DataFrame:
    """A ranking of synthetic persons in the shipped ranking's columns."""
    return pd.DataFrame({
        "name": [person_name(i) for i in range(spec.persons)],
        "gender": [demo_identity(spec, person_name(i)).gender.lower() for i in range(spec.persons)],
        "rank": range(1, spec.persons + 1),
        "list": "demo_synthetic",
        "year": 2024,
    })


def face_record(store: ImageStore, face: DemoFace, who: Identity, person: str,
                looks: int) -> dict:
    """One face-manifest row for a synthetic photo, its masks stored beside it."""
    return {
        "image_key": store.put_array(face.image), "person": person, "looks": looks,
        "age": who.age, "gender": who.gender, "race": who.race, "source": "demo",
        "face_x0": face.face_box[0], "face_y0": face.face_box[1],
        "face_x1": face.face_box[2], "face_y1": face.face_box[3],
        "face_region_source": "known_mask",
        "face_mask_key": store.put_array(face.face_mask),
        "person_mask_key": store.put_array(face.person_mask),
        "preprocessing": PREPROCESSING,
        **image_cues(None, face.image, face.face_box),  # stored as PNG: no JPEG quality
    }


class DemoPhotoSource:
    """Renders a synthetic person's photos; provenance rows look like a real download's."""

    kind = "demo"

    def __init__(self, spec: DemoSpec):
        self.spec = spec

    def fetch(self, person: str, name: str, store: ImageStore,
              known: pd.DataFrame | None = None) -> pd.DataFrame:
        who, faces = demo_person_photos(self.spec, name)
        rows = []
        for index, face in enumerate(faces):
            data = encode_png(face.image)
            record = face_record(store, face, who, person, 1)
            rows.append({"url": f"synthetic://demo/{person}/{index}", "bytes": len(data),
                         "sha256": sha256_bytes(data),
                         "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
                         "outcome": "ok", "reason": "", **record})
        return pd.DataFrame(rows)


def demo_ordinary_manifest(spec: DemoSpec, store: ImageStore) -> pd.DataFrame:
    """The synthetic ordinary class as a face manifest (each image its own identity)."""
    rows = [face_record(store, face, who, f"ordinary-{i:05d}", 0)
            for i, (who, face) in enumerate(demo_ordinary_faces(spec))]
    return conform(pd.DataFrame(rows)).assign(drop_reason="")
