"""The face stage: detect, pose-filter, crop and de-duplicate photos, keeping a reason per drop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import pandas as pd

from beauty_pipeline.data.schema import conform
from beauty_pipeline.modelfiles import YUNET, obtain_model_file
from beauty_pipeline.parallel import run_chunks
from beauty_pipeline.settings import available_cpus
from beauty_pipeline.storage import ChunkLedger, ImageStore
from beauty_pipeline.vision.crop import ALIGNED_PRIOR_BOX, padded_fraction, square_crop
from beauty_pipeline.vision.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_photo
from beauty_pipeline.vision.dedup import DEFAULT_THRESHOLD as DEDUP_THRESHOLD
from beauty_pipeline.vision.dedup import near_duplicate_groups, phash
from beauty_pipeline.vision.detection import Face, FaceDetector
from beauty_pipeline.vision.headpose import HeadPose, HopeNetPose, pose_from_landmarks
from beauty_pipeline.vision.orientation import DEFAULT_MAX_ROLL, is_upright, landmark_roll
from beauty_pipeline.vision.quality import CUES, image_cues

DROP_REASONS = ("", "undecodable", "no_face", "several_faces", "too_small", "non_frontal",
                "not_upright", "near_duplicate")
REPORT_COLUMNS = ["row_id", "source_key", "person", "drop_reason", "detail", "n_faces",
                  "det_score", "face_px", "yaw", "pitch", "roll", "pad_fraction", "image_key",
                  "phash", "jpeg_quality", "sharpness", "face_share", "had_alpha"]
LABEL_COLUMNS = ("person", "looks", "age", "gender", "race", "source")


@dataclass(frozen=True)
class FaceConfig:
    """Face preprocessing settings; one config is applied to both classes in "uniform" mode."""

    margin: float = 0.25            # added on each side, as a fraction of the face box side
    crop_size: int = 300
    pad: str = "edge"               # how a crop is filled past the image border: edge | constant
    min_face_px: int = 80           # larger side of the detected box, in source pixels
    score_threshold: float = 0.6    # YuNet confidence
    max_yaw: float = 20.0
    max_pitch: float = 20.0
    max_roll: float = DEFAULT_MAX_ROLL  # beyond this, or turned sideways / upside down: not_upright
    dominance: float = 2.0          # with several faces, the largest must be this many times the
                                    # area of the next, else the photo is ambiguous
    dedup_threshold: int = DEDUP_THRESHOLD  # pHash Hamming bits
    preprocessing: str = "uniform"  # uniform | study (ordinary images as-is, as the study did)
    pose_backend: str = "pnp"       # pnp | hopenet
    hopenet_weights: str | None = None
    detector_model_path: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = 0                # 0 = available_cpus(); 1 = single process
    batch_size: int = 16
    min_pool_images: int = 256      # below this a pool's start-up costs more than it saves

    def __post_init__(self):
        if self.preprocessing not in ("uniform", "study"):
            raise ValueError(f"preprocessing must be 'uniform' or 'study', not "
                             f"{self.preprocessing!r}")
        if self.pose_backend not in ("pnp", "hopenet"):
            raise ValueError(f"pose_backend must be 'pnp' or 'hopenet', not {self.pose_backend!r}")
        if self.pose_backend == "hopenet" and not self.hopenet_weights:
            raise ValueError("pose_backend 'hopenet' needs hopenet_weights (a local file path)")

    def describe(self, as_is: bool) -> str:
        """The manifest's `preprocessing` value: which pipeline produced an image, with settings."""
        if as_is:
            return "as_is(study)"
        return (f"yunet_crop(margin={self.margin:g},size={self.crop_size},pad={self.pad},"
                f"min_px={self.min_face_px},yaw<={self.max_yaw:g},pitch<={self.max_pitch:g},"
                f"roll<={self.max_roll:g},"
                f"pose={self.pose_backend})")


_WORKER: dict = {}


def _models(config: FaceConfig, detector_path: str):
    """Per-process detector (and HopeNet) so a pool loads each model once per worker."""
    key = (detector_path, config.score_threshold, config.pose_backend, config.hopenet_weights)
    if _WORKER.get("key") != key:
        hopenet = HopeNetPose(config.hopenet_weights) if config.pose_backend == "hopenet" else None
        _WORKER.update(key=key, detector=FaceDetector(detector_path, config.score_threshold),
                       hopenet=hopenet)
    return _WORKER["detector"], _WORKER["hopenet"]


def _empty_result(row_id, key: str) -> dict:
    return {"row_id": row_id, "source_key": key, "drop_reason": "", "detail": "", "n_faces": 0,
            "det_score": np.nan, "face_px": np.nan, "yaw": np.nan, "pitch": np.nan,
            "roll": np.nan, "pad_fraction": np.nan, "image_key": "", "phash": "", "face_box": None,
            "face_region_source": "", "jpeg_quality": np.nan, "sharpness": np.nan,
            "face_share": np.nan, "had_alpha": False}


def _pose(face: Face, image: np.ndarray, hopenet: HopeNetPose | None) -> HeadPose:
    if hopenet is None:
        return pose_from_landmarks(face.landmarks, image.shape[:2])
    return hopenet.predict([hopenet.preprocess(image, face.box)])[0]


def _process_one(row_id, key: str, as_is: bool, store: ImageStore, config: FaceConfig,
                 detector: FaceDetector, hopenet: HopeNetPose | None) -> dict:
    """Everything for one photo except near-duplicates, which need the whole set."""
    result = _empty_result(row_id, key)
    try:
        data = store.read_verified(key)
        decoded = decode_photo(data, config.max_pixels)
        image = decoded.pixels
        faces = detector.detect(image)
    except (OSError, ImageDecodeError, cv2.error) as error:
        return {**result, "drop_reason": "undecodable", "detail": str(error)}
    result["had_alpha"] = decoded.had_alpha
    result["n_faces"] = len(faces)
    height, width = image.shape[:2]
    # quality cues of the source, on the face box the crop (or the as-is image) is built around
    measured_box = faces[0].box if faces else _aligned_prior(width, height) if as_is else None
    result.update(image_cues(data, image, measured_box))
    if faces:
        face = faces[0]
        pose = _pose(face, image, hopenet)
        result.update(det_score=face.score, yaw=pose.yaw, pitch=pose.pitch,
                      roll=pose.roll if hopenet is not None else landmark_roll(face.landmarks))
    if as_is:
        # The study's ordinary class: the aligned crop unchanged, face box from detection if any.
        box = faces[0].box if faces else _aligned_prior(width, height)
        # a transparent photo is kept as composited on the plate, as every crop is
        return {**result, "image_key": store.put_array(image) if decoded.had_alpha else key,
                "phash": phash(image), "face_box": box,
                "face_region_source": "detection" if faces else "aligned_prior",
                "pad_fraction": 0.0}
    if not faces:
        return {**result, "drop_reason": "no_face"}
    if len(faces) > 1 and faces[0].area < config.dominance * faces[1].area:
        return {**result, "drop_reason": "several_faces",
                "detail": f"{len(faces)} faces, largest only {faces[0].area / faces[1].area:.2f}x "
                          f"the next (needs {config.dominance:g}x)"}
    if faces[0].side < config.min_face_px:
        return {**result, "drop_reason": "too_small",
                "detail": f"face {faces[0].side:.0f} px < {config.min_face_px} px"}
    if not np.isfinite(result["yaw"]) or not HeadPose(
            result["yaw"], result["pitch"], result["roll"]).is_frontal(config.max_yaw,
                                                                       config.max_pitch):
        return {**result, "drop_reason": "non_frontal",
                "detail": f"yaw {result['yaw']:.1f}, pitch {result['pitch']:.1f} (limits "
                          f"{config.max_yaw:g}, {config.max_pitch:g})"}
    upright, why_not = is_upright(image, faces[0], result["roll"], detector, config.max_roll)
    if not upright:
        return {**result, "drop_reason": "not_upright", "detail": why_not}
    crop, box = square_crop(image, faces[0].box, config.margin, config.crop_size, config.pad)
    return {**result, "image_key": store.put_array(crop), "phash": phash(crop), "face_box": box,
            "face_region_source": "detection",
            "pad_fraction": padded_fraction(image.shape, faces[0].box, config.margin)}


def _aligned_prior(width: int, height: int) -> tuple[float, float, float, float]:
    """Face box of a FairFace-style aligned crop when the detector finds none (DESIGN.md §2)."""
    x0, y0, x1, y1 = ALIGNED_PRIOR_BOX
    return (x0 * width, y0 * height, x1 * width, y1 * height)


def _process_batch(batch: list[tuple], store_root: str, config_items: dict,
                   detector_path: str) -> list[dict]:
    """Worker entry point: a batch of (row_id, key, as_is) with the models loaded once."""
    config = FaceConfig(**config_items)
    store = ImageStore(store_root)
    detector, hopenet = _models(config, detector_path)
    return [_process_one(row_id, key, as_is, store, config, detector, hopenet)
            for row_id, key, as_is in batch]


FACE_STAGE_VERSION = 1  # part of every chunk's ledger id: raise it when _process_one changes


def _face_chunk(store_root: str, config_items: dict, detector_path: str, version: int,
                batch: list) -> list[dict]:
    """Pool task: one chunk of photos (run_chunks passes the chunk last)."""
    return _process_batch(batch, store_root, config_items, detector_path)


def _run(items: list[tuple], store: ImageStore, config: FaceConfig, detector_path: str) -> list:
    """Every photo through the face stage in chunks, over the pool when it pays; finished
    chunks are kept in the store's ledger, so a stopped stage resumes where it was."""
    settings = {k: v for k, v in asdict(config).items() if k != "workers"}
    jobs = [[row_id, str(key), bool(as_is)] for row_id, key, as_is in items]
    return run_chunks("face stage", _face_chunk, (str(store.root), settings, detector_path,
                                                  FACE_STAGE_VERSION), jobs,
                      ledger=ChunkLedger(store.root / "chunk-ledger"),
                      workers=config.workers or available_cpus(), chunk_size=config.batch_size,
                      min_pool_jobs=config.min_pool_images, label="face detection",
                      still_valid=lambda rows: all(not r["image_key"] or store.exists(r["image_key"])
                                                   for r in rows))


def _input_frame(images, defaults: dict) -> pd.DataFrame:
    """Accept a frame with image_key (+ row_id, labels) or a list of (row_id, image_key)."""
    if isinstance(images, pd.DataFrame):
        frame = images.copy()
        if "image_key" not in frame:
            raise ValueError("images frame needs an image_key column")
        if "row_id" not in frame:
            frame["row_id"] = frame.index
    else:
        frame = pd.DataFrame(list(images), columns=["row_id", "image_key"])
    for column, value in defaults.items():
        if column not in frame:
            if value is None:
                raise ValueError(f"give {column!r} as an argument or as a column")
            frame[column] = value
    return frame.reset_index(drop=True)


def process_photos(images: pd.DataFrame | Sequence[tuple], store: ImageStore,
                   config: FaceConfig = FaceConfig(), *, person: str | None = None,
                   looks: int | None = None, source: str = "", age: str = "", gender: str = "",
                   race: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Face stage for a set of photos: (kept faces in FACE_COLUMNS + extras, report of all rows)."""
    frame = _input_frame(images, {"person": person, "looks": looks, "source": source, "age": age,
                                  "gender": gender, "race": race})
    detector_path = str(obtain_model_file(YUNET, local_path=config.detector_model_path))
    as_is = (config.preprocessing == "study") & (frame["looks"].astype(int) == 0)
    items = list(zip(frame["row_id"], frame["image_key"], as_is, strict=True))
    results = pd.DataFrame(_run(items, store, config, detector_path)) if items else pd.DataFrame(
        columns=[*(c for c in REPORT_COLUMNS if c != "person"), "face_box", "face_region_source"])
    _mark_near_duplicates(results, frame["row_id"].tolist(), config.dedup_threshold)
    results.insert(2, "person", frame["person"].to_numpy())
    report = results[REPORT_COLUMNS].copy()
    return _kept_faces(frame, results, config, as_is), report


def _mark_near_duplicates(results: pd.DataFrame, row_ids: list, threshold: int) -> None:
    """Keep the first of each near-duplicate group (input order); mark the rest in place."""
    candidates = results.index[results["drop_reason"] == ""]
    if len(candidates) < 2:
        return
    groups = near_duplicate_groups(results.loc[candidates, "phash"].tolist(), threshold)
    first: dict[int, int] = {}
    for index, group in zip(candidates, groups, strict=True):
        if group in first:
            results.loc[index, "drop_reason"] = "near_duplicate"
            results.loc[index, "detail"] = f"near-duplicate of row {row_ids[first[group]]}"
            results.loc[index, "image_key"] = ""
        else:
            first[group] = index


def _kept_faces(frame: pd.DataFrame, results: pd.DataFrame, config: FaceConfig,
                as_is: pd.Series) -> pd.DataFrame:
    kept = results["drop_reason"] == ""
    labels = frame.loc[kept, list(LABEL_COLUMNS)].reset_index(drop=True)
    done = results.loc[kept].reset_index(drop=True)
    boxes = np.array(done["face_box"].tolist(), dtype=float).reshape(-1, 4)
    faces = pd.DataFrame({
        "image_key": done["image_key"], **{c: labels[c] for c in LABEL_COLUMNS},
        "face_x0": boxes[:, 0], "face_y0": boxes[:, 1], "face_x1": boxes[:, 2],
        "face_y1": boxes[:, 3], "face_region_source": done["face_region_source"],
        "preprocessing": [config.describe(bool(a)) for a in as_is[kept.to_numpy()]],
        "phash": done["phash"], "yaw": done["yaw"], "pitch": done["pitch"], "roll": done["roll"],
        "pad_fraction": done["pad_fraction"].astype(float),
        "det_score": done["det_score"], "source_key": done["source_key"],
        "row_id": done["row_id"], **{cue: done[cue].astype(float) for cue in CUES},
        "had_alpha": done["had_alpha"].astype(bool),
    })
    faces["looks"] = faces["looks"].astype("int64")
    for column in ("person", "age", "gender", "race", "source"):
        faces[column] = faces[column].astype(str)
    return conform(faces)

