"""Group ingest: the ranking list, celebrity photos per person, the ordinary (FairFace) faces."""


import os
import time

import pandas as pd
from dagster import AssetExecutionContext, Config, DataVersion, MetadataValue, Output, asset
from pydantic import Field

from beauty_pipeline.assets.common import (
    CODE_VERSION,
    ON_NEW_PERSON,
    counts_by,
    previous_manifest,
    table_md,
)
from beauty_pipeline.assets.faces import ordinary_faces_from_fairface, stage_cost
from beauty_pipeline.demo.source import demo_ordinary_manifest, demo_ranking
from beauty_pipeline.errors import PipelineError
from beauty_pipeline.fairface import require_ordinary_class
from beauty_pipeline.partitions import person_partitions
from beauty_pipeline.person_registry import PersonKeyRegistry
from beauty_pipeline.ranking import load_ranking, ranking_digest, validate_ranking
from beauty_pipeline.resources import DemoDataResource, FacePreprocessing, PhotoSourceResource, StudyStorage
from beauty_pipeline.settings import FAIRFACE_DIR_ENV, active_profile
from beauty_pipeline.storage import frame_digest


def key_registry(storage: StudyStorage) -> PersonKeyRegistry:
    """Where person keys are kept once given, under the data root."""
    return PersonKeyRegistry(storage.path / "registry" / "person_keys.json")


def read_ranking(location: str, demo_data: DemoDataResource,
                 storage: StudyStorage) -> pd.DataFrame:
    """The validated ranking from 'demo', the packaged list ('') or a path / URL."""
    registry = key_registry(storage)
    if location == "demo":
        return validate_ranking(demo_ranking(demo_data.spec()), label="demo ranking",
                                registry=registry)
    return load_ranking(location or None, registry=registry)


def default_ranking_location() -> str:
    return os.environ.get("BEAUTY_PIPELINE_RANKING", active_profile().ranking)


class RankingConfig(Config):
    """Which ranking list defines the celebrity persons."""

    location: str = Field(default_factory=default_ranking_location,
        description="'demo', '' for the packaged 2024 list, or a CSV path / http(s) URL")


@asset(group_name="ingest", code_version=CODE_VERSION)
def ranking(config: RankingConfig, demo_data: DemoDataResource,
            storage: StudyStorage) -> Output[pd.DataFrame]:
    """The ranking list, validated, each row with a stable filesystem-safe person key."""
    frame = read_ranking(config.location, demo_data, storage)
    return Output(frame, data_version=DataVersion(ranking_digest(frame)), metadata={
        "persons": len(frame), "lists": counts_by(frame, "list"),
        "source": config.location or "packaged ranking_2024.csv", "preview": table_md(frame)})


@asset(group_name="ingest", partitions_def=person_partitions, code_version=CODE_VERSION,
       automation_condition=ON_NEW_PERSON)
def celebrity_photos(context: AssetExecutionContext, ranking: pd.DataFrame,
                     storage: StudyStorage, photo_source: PhotoSourceResource,
                     demo_data: DemoDataResource) -> Output[pd.DataFrame]:
    """Photos found for one person, with provenance (URL, bytes, sha256, outcome) per file."""
    person = context.partition_key
    row = ranking[ranking["person"] == person]
    if row.empty:
        raise PipelineError(f"person {person!r} is not in the current ranking; "
                         "its partition should have been removed by the ranking sensor")
    source = photo_source.build(demo_data.spec())
    known = previous_manifest(storage, "celebrity_photos", person)
    provenance = source.fetch(person, str(row["name"].iloc[0]), storage.images, known)
    ok = provenance[provenance["outcome"] != "failed"]
    return Output(provenance, data_version=DataVersion(frame_digest(ok, ["sha256"]) if len(ok) else "empty"),
                  metadata={"source": source.kind, "photos": len(ok),
                            "outcomes": counts_by(provenance, "outcome"),
                            "provenance": table_md(provenance[[c for c in (
                                "url", "bytes", "sha256", "outcome", "reason")
                                if c in provenance]])})


class FairfaceConfig(Config):
    """Where the ordinary class comes from."""

    source: str = Field(default_factory=lambda: active_profile().ordinary_source,
                        description="demo | fairface")
    fairface_dir: str = Field(default_factory=lambda: os.environ.get(FAIRFACE_DIR_ENV, ""),
                              description="FairFace folder with its label CSVs")
    limit: int = Field(default=0, description="Use only the first N images (0 = all)")
    preprocessing: str = Field(default="uniform", description=(
        "uniform: same detector, crop and frontal filter as the celebrity class; "
        "study: FairFace's aligned crops as they are, as the study did"))


@asset(group_name="ingest", code_version=CODE_VERSION)
def fairface_faces(context: AssetExecutionContext, config: FairfaceConfig,
                   storage: StudyStorage, demo_data: DemoDataResource,
                   face_stage: FacePreprocessing) -> Output[pd.DataFrame]:
    """The ordinary class (looks = 0) with FairFace's age / gender / race labels."""
    started = time.perf_counter()
    if config.source == "demo":
        faces = demo_ordinary_manifest(demo_data.spec(), storage.images)
        skipped = pd.DataFrame()
    elif config.source == "fairface":
        faces, skipped = ordinary_faces_from_fairface(config, storage, face_stage)
        require_ordinary_class(config.fairface_dir, int((faces["drop_reason"] == "").sum()),
                               pd.concat([skipped, faces.loc[faces["drop_reason"] != "", [
                                   "drop_reason"]].rename(columns={"drop_reason": "reason"})]),
                               "label rows after the face stage")
    else:
        raise PipelineError(f"unknown ordinary source {config.source!r}; expected demo | fairface")
    kept = faces[faces["drop_reason"] == ""]
    return Output(faces, data_version=DataVersion(frame_digest(kept, ["image_key", "age", "gender", "race"])),
                  metadata={"source": config.source, "kept": len(kept),
                            "dropped": counts_by(faces[faces["drop_reason"] != ""], "drop_reason"),
                            "skipped_label_rows": len(skipped),
                            "skipped_label_reasons": counts_by(skipped, "reason"),
                            "skipped_labels": table_md(skipped[[c for c in (
                                "file", "age", "gender", "race", "reason", "detail")
                                if c in skipped]]),
                            "by_gender_race": counts_by(kept, "gender", "race"),
                            "preprocessing": MetadataValue.text(
                                ", ".join(sorted(kept["preprocessing"].unique()))),
                            **stage_cost(started, len(faces))})
