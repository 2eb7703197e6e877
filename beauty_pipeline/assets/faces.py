"""Group faces: detection, 300x300 crops, head pose, frontal filter and de-duplication."""

import time

import pandas as pd
from dagster import AssetExecutionContext, Config, DataVersion, Output, asset
from pydantic import Field

from beauty_pipeline.assets.common import (
    CODE_VERSION,
    ON_INPUTS_CHANGED,
    counts_by,
    image_strip_md,
    table_md,
)
from beauty_pipeline.data.schema import FACE_COLUMNS, conform
from beauty_pipeline.errors import PipelineError
from beauty_pipeline.partitions import person_partitions
from beauty_pipeline.resources import FacePreprocessing, StudyStorage
from beauty_pipeline.settings import active_profile
from beauty_pipeline.storage import frame_digest


def stage_cost(started: float, images: int) -> dict:
    """wall_seconds and images_per_second since `started` (time.perf_counter()): every data
    asset records them, so the UI's materialization history shows where the time goes."""
    wall = time.perf_counter() - started
    return {"wall_seconds": round(wall, 3),
            "images_per_second": round(images / wall, 3) if wall > 0 else 0.0}


class FaceStageConfig(Config):
    """Whether celebrity photos need detection (yunet) or come with known face boxes (demo)."""

    detector: str = Field(default_factory=lambda: active_profile().face_detector,
                          description="yunet, or known when the source supplies face boxes")


def merge_face_report(kept: pd.DataFrame, report: pd.DataFrame, looks: int) -> pd.DataFrame:
    """One row per input photo: kept faces with drop_reason '' plus every dropped photo."""
    dropped = report[report["drop_reason"] != ""].rename(columns={"image_key": "crop_key"})
    dropped = dropped.assign(image_key=dropped["source_key"], looks=looks)
    dropped = conform(dropped.drop(columns=["crop_key"]))
    kept = conform(kept).assign(drop_reason="")
    return pd.concat([kept, dropped], ignore_index=True)


def known_faces(photos: pd.DataFrame) -> pd.DataFrame:
    """Sources that render faces (the demo) already know the box and masks: keep every photo."""
    ok = photos[photos["outcome"] != "failed"]
    return conform(ok[[c for c in ok.columns if c in FACE_COLUMNS]]).assign(drop_reason="")


@asset(group_name="faces", partitions_def=person_partitions, code_version=CODE_VERSION,
       automation_condition=ON_INPUTS_CHANGED)
def celebrity_faces(context: AssetExecutionContext, config: FaceStageConfig,
                    celebrity_photos: pd.DataFrame, storage: StudyStorage,
                    face_stage: FacePreprocessing) -> Output[pd.DataFrame]:
    """One person's kept 300x300 face crops, and for every other photo the reason it was dropped."""
    person = context.partition_key
    started = time.perf_counter()
    if config.detector == "known":
        faces = known_faces(celebrity_photos)
    else:
        from beauty_pipeline.vision.faces import process_photos

        ok = celebrity_photos[celebrity_photos["outcome"] != "failed"]
        kept, report = process_photos(ok[["image_key"]].assign(row_id=ok["sha256"]),
                                      storage.images, face_stage.face_config(), person=person,
                                      looks=1, source=photos_source(ok))
        faces = merge_face_report(kept, report, looks=1)
    return face_output(faces, storage, started)


def photos_source(photos: pd.DataFrame) -> str:
    """'bing', 'local' or 'demo' from the provenance URLs."""
    urls = photos["url"].astype(str)
    if urls.str.startswith("http").any():
        return "bing"
    return "demo" if urls.str.startswith("synthetic:").any() else "local"


# what a reader needs to see why a photo was dropped (angles for non-frontal ones)
PREVIEW_COLUMNS = ["image_key", "drop_reason", "detail", "yaw", "pitch", "roll", "face_region_source"]


def face_output(faces: pd.DataFrame, storage: StudyStorage,
                started: float | None = None) -> Output[pd.DataFrame]:
    """The face manifest with its counts, drop reasons, a thumbnail strip of kept crops and, given
    when the work started, its cost per input photo."""
    kept = faces[faces["drop_reason"] == ""]
    metadata = {"kept": len(kept), "dropped": counts_by(faces[faces["drop_reason"] != ""],
                                                        "drop_reason"),
                "preview": table_md(faces[[c for c in PREVIEW_COLUMNS if c in faces]])}
    if started is not None:
        metadata.update(stage_cost(started, len(faces)))
    if len(kept):
        metadata["kept_crops"] = image_strip_md(
            [storage.images.load(k) for k in kept["image_key"].head(8)], "kept crops")
    version = frame_digest(kept, ["image_key"]) if len(kept) else "empty"
    return Output(faces, data_version=DataVersion(version),
                  metadata=metadata)


def ordinary_faces_from_fairface(config, storage: StudyStorage,
                                 face_stage: FacePreprocessing) -> tuple[pd.DataFrame, pd.DataFrame]:
    """FairFace images through the same face stage (or as-is, 'study' mode) with their labels."""
    from beauty_pipeline.fairface import read_fairface, store_fairface_images
    from beauty_pipeline.vision.faces import process_photos

    if not config.fairface_dir:
        raise PipelineError("fairface_faces with source 'fairface' needs fairface_dir "
                         "(or BEAUTY_PIPELINE_FAIRFACE_DIR)")
    labels, skipped = read_fairface(config.fairface_dir, config.limit or None)
    labels, refused = store_fairface_images(labels, storage.images)
    skipped = pd.concat([skipped, refused], ignore_index=True)
    frame = labels.assign(row_id=labels["file"],
                          person="fairface:" + labels["file"], looks=0, source="fairface")
    kept, report = process_photos(frame, storage.images, face_stage.face_config(config.preprocessing))
    faces = merge_face_report(kept, report, looks=0)
    # which FairFace split each image came from: the official checkpoint was trained on train
    faces["fairface_split"] = faces["row_id"].map(dict(zip(labels["file"], labels["fairface_split"],
                                                           strict=True))).fillna("")
    return faces, skipped
