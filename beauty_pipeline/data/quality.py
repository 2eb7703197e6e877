"""Do the classes differ in source quality? Compare the per-image cues and, on request, put both
classes through the same degradation so the cue is gone before training.

Cues (recorded per image by the face stage, vision/quality.py): face_px (pixels across the face
in the source, before resampling), jpeg_quality (IJG estimate; NaN = lossless), sharpness
(Laplacian variance at a fixed face scale) and face_share (face box area / frame area).

A cue separates the classes when |SMD| > MIN_SMD, the class means differ by more than
MIN_RELATIVE_GAP of the larger one, and the two-sided Mann-Whitney U test on person-level means
gives p < MAX_P. The gap floor keeps a near-constant cue from being flagged for a scale-free SMD
on a difference of a pixel or two (after match_quality one class sits exactly at the target and
the other just below it). Images of one person are not independent (celebrities have
dozens each), so the image-level p-value, also reported, is optimistic; the decision uses persons.
Mann-Whitney because the cues are skewed (sharpness) or bounded (share, quality): ranks need no
normality.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from beauty_pipeline.data.parity import CLASS_NAMES
from beauty_pipeline.parallel import run_chunks
from beauty_pipeline.storage import ChunkLedger, ImageStore
from beauty_pipeline.vision.quality import (
    CUES,
    face_sharpness,
    jpeg_roundtrip,
    reduced_size,
    resample_face,
)

MIN_SMD = 0.5   # |standardised mean difference|: Cohen's "medium" effect
MAX_P = 0.01    # person-level Mann-Whitney U, two-sided
MIN_RELATIVE_GAP = 0.05  # |mean difference| / larger |mean|: below this, no visible difference
# match_quality's target: this quantile of each class, the lower class's value. The median (the
# issue's choice) leaves the lower class's lower half below the target, which a wide class keeps
# as a (smaller) cue; a lower quantile (0 = the minimum) evens out more at the cost of detail.
MATCH_QUANTILE = 0.5


def standardised_mean_difference(celebrity: np.ndarray, ordinary: np.ndarray) -> float:
    """(mean celebrity - mean ordinary) / pooled SD (n-1 weighted); +-inf when both classes are
    constant but different, 0 when identical constants, NaN with fewer than 2 values in all."""
    a, b = np.asarray(celebrity, float), np.asarray(ordinary, float)
    if len(a) == 0 or len(b) == 0 or len(a) + len(b) < 3:
        return math.nan
    difference = a.mean() - b.mean()
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1 if len(a) > 1 else 0)
                        + (len(b) - 1) * b.var(ddof=1 if len(b) > 1 else 0))
                       / (len(a) + len(b) - 2))
    if pooled == 0:
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return float(difference / pooled)


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value; NaN when a side is empty or every value is the same."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0 or np.unique(np.concatenate([a, b])).size < 2:
        return math.nan
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def relative_gap(a: float, b: float) -> float:
    """|a - b| / max(|a|, |b|): 0 for equal means, NaN when either is unknown."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.nan
    larger = max(abs(a), abs(b))
    return abs(a - b) / larger if larger else 0.0


def _once(study: pd.DataFrame) -> pd.DataFrame:
    """Mirrored copies repeat their source image's values: count each source image once."""
    if "flipped" in study:
        return study[~study["flipped"].fillna(False).astype(bool)]
    return study


def compare_cue(rows: pd.DataFrame, cue: str) -> dict:
    """One cue's per-class summary, SMD, image- and person-level p and whether it separates."""
    rows = _once(rows)
    values = pd.to_numeric(rows[cue], errors="coerce") if cue in rows else pd.Series(
        np.nan, index=rows.index)
    looks = rows["looks"].astype(int)
    result: dict = {}
    samples, person_means = {}, {}
    for code, name in CLASS_NAMES.items():
        mask = (looks == code) & values.notna()
        samples[name] = values[mask].to_numpy(float)
        person_means[name] = values[mask].groupby(rows.loc[mask, "person"]).mean().to_numpy()
        sample = samples[name]
        result[name] = {"n": len(sample), "persons": len(person_means[name]),
                        "median": float(np.median(sample)) if len(sample) else math.nan,
                        "mean": float(sample.mean()) if len(sample) else math.nan,
                        "sd": float(sample.std(ddof=1)) if len(sample) > 1 else math.nan}
    celebrity, ordinary = samples["celebrity"], samples["ordinary"]
    result["measured"] = bool(len(celebrity) and len(ordinary))
    result["smd"] = standardised_mean_difference(celebrity, ordinary)
    result["p_images"] = mann_whitney_p(celebrity, ordinary)
    result["p_persons"] = mann_whitney_p(person_means["celebrity"], person_means["ordinary"])
    result["relative_gap"] = relative_gap(result["celebrity"]["mean"], result["ordinary"]["mean"])
    result["separates"] = bool(result["measured"] and abs(result["smd"]) > MIN_SMD
                               and result["relative_gap"] > MIN_RELATIVE_GAP
                               and result["p_persons"] < MAX_P)
    return result


def quality_by_class(study: pd.DataFrame) -> dict[str, dict]:
    """compare_cue for every cue: the table face_dataset records and quality_parity judges."""
    return {cue: compare_cue(study, cue) for cue in CUES}


def separating_cues(table: dict[str, dict]) -> list[str]:
    return [cue for cue, row in table.items() if row["separates"]]


def _fmt(value: float) -> str:
    return f"{value:.3g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def describe_parity(table: dict[str, dict]) -> str:
    """One line per separating cue with its numbers, and which cues could not be compared."""
    parts = []
    for cue in separating_cues(table):
        row = table[cue]
        parts.append(f"{cue} separates the classes: median celebrity {_fmt(row['celebrity']['median'])}"
                     f" vs ordinary {_fmt(row['ordinary']['median'])}, SMD {_fmt(row['smd'])}, "
                     f"p {_fmt(row['p_persons'])} over persons ({_fmt(row['p_images'])} over images)")
    unmeasured = [f"{cue} (not measured for "
                  + " or ".join(n for n in CLASS_NAMES.values() if not table[cue][n]["n"]) + ")"
                  for cue, row in table.items() if not row["measured"]]
    if not parts:
        parts.append(f"no quality cue separates the classes (|SMD| > {MIN_SMD:g}, means "
                     f"{MIN_RELATIVE_GAP:.0%} apart and person-level p < {MAX_P:g})")
    if unmeasured:
        parts.append("not compared: " + ", ".join(unmeasured))
    return "; ".join(parts)


def finite_or_none(value):
    """Numbers for JSON metadata: NaN and infinities (not JSON) become None, recursively."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def flat_metadata(table: dict[str, dict]) -> dict:
    """The table as flat check metadata: <cue>_smd, <cue>_p_persons, <cue>_<class>_median, ..."""
    flat = {}
    for cue, row in table.items():
        for key in ("smd", "relative_gap", "p_images", "p_persons", "separates"):
            flat[f"{cue}_{key}"] = row[key]
        for name in CLASS_NAMES.values():
            for key in ("n", "median", "mean"):
                flat[f"{cue}_{name}_{key}"] = row[name][key]
    return finite_or_none(flat)


def _lower_quantile(faces: pd.DataFrame, cue: str, quantile: float
                    ) -> tuple[float, dict[str, float]]:
    """Each class's quantile of a cue (NaN when unmeasured) and the lower of the measured ones."""
    by_class = {}
    for code, name in CLASS_NAMES.items():
        values = pd.to_numeric(faces.loc[faces["looks"].astype(int) == code, cue],
                               errors="coerce").dropna() if cue in faces else pd.Series(dtype=float)
        by_class[name] = float(values.quantile(quantile)) if len(values) else math.nan
    measured = [v for v in by_class.values() if math.isfinite(v)]
    return (min(measured) if measured else math.nan), by_class


def quality_targets(faces: pd.DataFrame, quantile: float = MATCH_QUANTILE) -> dict:
    """Targets for match_quality: the lower class's quantile (default median) of face_px and of
    jpeg_quality. A class without JPEG estimates (lossless sources) takes the other's; with
    neither, no re-encoding."""
    if not 0 <= quantile <= 1:
        raise ValueError(f"match quantile must be within 0..1, not {quantile}")
    face_px, px_by_class = _lower_quantile(faces, "face_px", quantile)
    quality, q_by_class = _lower_quantile(faces, "jpeg_quality", quantile)
    targets = {"quantile": quantile, "face_px": face_px if math.isfinite(face_px) else None,
               "jpeg_quality": int(round(quality)) if math.isfinite(quality) else None,
               "face_px_by_class": px_by_class, "jpeg_quality_by_class": q_by_class, "notes": []}
    if targets["face_px"] is None:
        targets["notes"].append("no face resolution measured in either class: not resampled")
    if targets["jpeg_quality"] is None:
        targets["notes"].append("no JPEG source in either class: not re-encoded")
    return finite_or_none(targets)


BOX = ("face_x0", "face_y0", "face_x1", "face_y1")
MIN_POOL_IMAGES = 64  # fewer images than this: this process matches them


def _match_one(store: ImageStore, job: list, target_px, target_q) -> list:
    """One image through match_quality's degradation: [new key, steps, face px, JPEG quality,
    sharpness]."""
    image_key, x0, y0, x1, y1, detail, q = job
    image = store.load(image_key)
    steps = []
    in_image = max(x1 - x0, y1 - y0)
    if math.isfinite(in_image):  # a source face larger than the crop's was averaged down
        detail = in_image if not math.isfinite(detail) else min(detail, in_image)
    if target_px is not None and not math.isfinite(in_image):
        steps.append("no face box: not resampled")
    elif target_px is not None and detail > target_px and \
            reduced_size(image.shape, in_image, target_px) != image.shape[1::-1]:
        image = resample_face(image, in_image, target_px)
        steps.append(f"face {detail:.0f}->{target_px:.0f} px")
        detail = target_px
    if target_q is not None:
        image = jpeg_roundtrip(image, target_q)
        steps.append(f"jpeg q{target_q}")
        q = target_q if not math.isfinite(q) else min(q, target_q)
    return [store.put_array(image), "; ".join(steps) or "unchanged", detail, q,
            face_sharpness(image, (x0, y0, x1, y1))]


def _match_chunk(store_root: str, target_px, target_q, jobs: list) -> list:
    """Pool task: _match_one over a chunk of images."""
    store = ImageStore(store_root)
    return [_match_one(store, job, target_px, target_q) for job in jobs]


def match_quality(faces: pd.DataFrame, store: ImageStore, quantile: float = MATCH_QUANTILE,
                  workers: int = 0) -> tuple[pd.DataFrame, dict]:
    """Every image of both classes through the same degradation: faces with more detail than the
    target resolution are resampled down to it (and back to the image's size), then all images
    are JPEG re-encoded at the target quality. Deterministic; new image keys; the cues are then
    re-measured (face_px and jpeg_quality as the detail and compression the image now carries,
    sharpness from its pixels), the values before kept in <cue>_before_match. Images go through
    the process pool in chunks a rerun reads back."""
    targets = quality_targets(faces, quantile)
    target_px, target_q = targets["face_px"], targets["jpeg_quality"]
    faces = faces.reset_index(drop=True).copy()
    for cue in CUES:
        if cue not in faces:
            faces[cue] = np.nan
        faces[f"{cue}_before_match"] = faces[cue]
    jobs = [[row["image_key"], *(float(row[c]) for c in BOX), float(row["face_px"]),
             float(row["jpeg_quality"])] for _, row in faces.iterrows()]
    made = run_chunks("quality match", _match_chunk, (str(store.root), target_px, target_q), jobs,
                      ledger=ChunkLedger(store.root / "chunk-ledger"), workers=workers,
                      chunk_size=16, min_pool_jobs=MIN_POOL_IMAGES)
    keys, applied, face_px, quality, sharpness = (list(column) for column in zip(*made,
                                                                                   strict=True))
    faces["match_quantile"] = float(quantile)
    faces["match_target_face_px"] = np.nan if target_px is None else float(target_px)
    faces["match_target_jpeg_quality"] = np.nan if target_q is None else float(target_q)
    faces["source_crop_key"] = faces["image_key"]
    faces["image_key"] = keys
    faces["quality_match"] = applied
    faces["face_px"], faces["jpeg_quality"], faces["sharpness"] = face_px, quality, sharpness
    return faces, targets


def as_before_match(study: pd.DataFrame) -> pd.DataFrame:
    """The study set with each cue as the face stage measured it, before match_quality."""
    return study.assign(**{cue: study[f"{cue}_before_match"] for cue in CUES
                           if f"{cue}_before_match" in study})


def quality_summary(study: pd.DataFrame) -> dict:
    """What the report states about a study set: matching used (and its targets), the cue table
    and the quality_parity outcome, all read back from the manifest itself."""
    matched = "quality_match" in study

    def target(column: str) -> float | None:
        values = pd.to_numeric(study[column], errors="coerce").dropna() if column in study else []
        return float(values.iloc[0]) if len(values) else None

    table = quality_by_class(study)
    return {"match_quality": matched, "quantile": target("match_quantile"),
            "target_face_px": target("match_target_face_px"),
            "target_jpeg_quality": target("match_target_jpeg_quality"), "table": table,
            "passed": not separating_cues(table), "description": describe_parity(table)}
