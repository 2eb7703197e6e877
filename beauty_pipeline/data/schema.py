"""Column names of the face manifests every stage reads and writes (one row per image)."""

from __future__ import annotations

import pandas as pd

# A face manifest (celebrity_faces, fairface_faces): one kept face image per row.
FACE_COLUMNS = {
    "image_key": "str",          # ImageStore key of the face crop
    "person": "str",             # identity key; FairFace images are their own identity
    "looks": "int64",            # 0 = ordinary, 1 = celebrity (the study's label)
    "age": "str",                # FairFace vocabulary or "" when unknown
    "gender": "str",
    "race": "str",
    "source": "str",             # demo | fairface | local | bing
    "face_x0": "float64",        # face region box in pixels of the stored image
    "face_y0": "float64",
    "face_x1": "float64",
    "face_y1": "float64",
    "face_region_source": "str",  # known_mask | detection | aligned_prior
    "face_mask_key": "str",      # exact face mask (synthetic data) or ""
    "person_mask_key": "str",    # exact foreground mask (synthetic data) or ""
    "preprocessing": "str",      # which crop/filter pipeline produced the image
    # source quality cues (vision/quality.py); NaN when not measured, jpeg_quality NaN = lossless
    "face_px": "float64",        # pixels across the face in the source, before resampling
    "jpeg_quality": "float64",   # IJG quality estimate of the source file
    "sharpness": "float64",      # Laplacian variance of the face at a fixed 64 px scale
    "face_share": "float64",     # face box area / source frame area
}

FAIRFACE_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
FAIRFACE_GENDERS = ("Male", "Female")
FAIRFACE_RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
                  "Middle Eastern")


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Add missing optional columns, order columns, and check the required ones exist."""
    frame = frame.copy()
    for name, dtype in FACE_COLUMNS.items():
        if name not in frame:
            if name in ("image_key", "person", "looks"):
                raise ValueError(f"face manifest lacks required column {name!r}")
            frame[name] = "" if dtype == "str" else float("nan")
    extra = [c for c in frame.columns if c not in FACE_COLUMNS]
    frame = frame[list(FACE_COLUMNS) + extra]
    return frame.astype({k: v for k, v in FACE_COLUMNS.items() if v != "str"})
