"""Group dataset: the balanced, identity-grouped study set and its background variants."""

import os
import time

import pandas as pd
from dagster import AssetExecutionContext, Config, DataVersion, MetadataValue, Output, asset
from pydantic import Field

from beauty_pipeline.assets.common import (
    CODE_VERSION,
    ON_INPUTS_CHANGED,
    counts_by,
    image_strip_md,
    variant_code_version,
)
from beauty_pipeline.assets.faces import stage_cost
from beauty_pipeline.checks import (
    DATASET_CHECKS,
    attribute_mix_parity,
    class_balance,
    frontal_filter_parity,
    no_identity_leakage,
    padding_parity,
    quality_parity,
)
from beauty_pipeline.data import demographics
from beauty_pipeline.data.masks import masks_in_store
from beauty_pipeline.data.parity import frontal_drop_rates, padded_share
from beauty_pipeline.data.quality import (
    MATCH_QUANTILE,
    as_before_match,
    finite_or_none,
    match_quality,
    quality_by_class,
)
from beauty_pipeline.data.split import SplitSettings, build_study_set, study_label_csv
from beauty_pipeline.data.variants import VariantSettings, build_variant, variant_version
from beauty_pipeline.partitions import background_partitions
from beauty_pipeline.resources import StudyStorage
from beauty_pipeline.settings import FAIRFACE_CHECKPOINT_ENV, active_profile
from beauty_pipeline.storage import atomic_write_bytes, frame_digest
from beauty_pipeline.vision.segmentation import SegmenterSettings, make_segmenter

DATASET_COLUMNS = ["sample_id", "image_key", "split", "looks", "person"]


class DatasetConfig(Config):
    """How the study set is split and balanced."""

    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    val_fraction: float = Field(default=0.1, ge=0, lt=1,
                                description="Identity-grouped validation split carved from train")
    seed: int = 0
    flip_upsample: bool = Field(default=True, description="Mirror celebrity train images only")
    balance: bool = True
    dedup_threshold: int = Field(default=6, description="pHash bits for cross-set duplicates")
    fairface_checkpoint: str = Field(
        default_factory=lambda: os.environ.get(FAIRFACE_CHECKPOINT_ENV, ""),
        description="The official FairFace checkpoint fairface_backbone loads, if any: it was "
                    "trained on FairFace train, so the ordinary test side is then FairFace val only")
    match_quality: bool = Field(
        default=False, description="Put both classes through the same degradation before the "
        "split: faces resampled down to the lower class's face resolution, JPEG re-encoded at "
        "the lower class's quality, each its match_quality_quantile (data/quality.py)")
    match_quality_quantile: float = Field(
        default=MATCH_QUANTILE, ge=0, le=1, description="Target = this quantile of the lower "
        "class (0.5 median; lower it when quality_parity still warns after matching)")
    match_demographics: str = Field(
        default="none", pattern="^(" + "|".join(demographics.MATCH_MODES) + ")$",
        description="none | gender | gender_age_race: sample the ordinary class to the celebrity "
                    "class's mix per split; age and race need fairface_checkpoint (estimates)")


def duplicate_groups(faces: pd.DataFrame, threshold: int) -> pd.Series | None:
    """Near-duplicate groups across the whole set (from the face stage's pHash), if known."""
    if "phash" not in faces or faces["phash"].isna().all() or (faces["phash"] == "").all():
        return None
    from beauty_pipeline.vision.dedup import near_duplicate_groups

    hashes = faces["phash"].fillna("").astype(str).tolist()
    return pd.Series(near_duplicate_groups(hashes, threshold), index=faces.index)


def fairface_split_counts(rows: pd.DataFrame) -> dict[str, int]:
    """How many rows came from FairFace train, val, or neither ('none': another source)."""
    splits = rows["fairface_split"] if "fairface_split" in rows else pd.Series("", index=rows.index)
    return {k: int(v) for k, v in splits.fillna("").replace("", "none").value_counts().items()}


@asset(group_name="dataset", code_version=CODE_VERSION,
       automation_condition=ON_INPUTS_CHANGED, check_specs=DATASET_CHECKS)
def face_dataset(context: AssetExecutionContext, config: DatasetConfig,
                 celebrity_faces: dict[str, pd.DataFrame], fairface_faces: pd.DataFrame,
                 ranking: pd.DataFrame, storage: StudyStorage):
    """Balanced train/test set: no person and no near-duplicate on both sides of the split."""
    started = time.perf_counter()
    current = set(ranking["person"])
    missing = sorted(current - set(celebrity_faces))
    celebrity = [f for person, f in celebrity_faces.items() if person in current]
    faces = pd.concat([*celebrity, fairface_faces], ignore_index=True)
    frontal_rates = frontal_drop_rates(faces)
    faces = faces[faces["drop_reason"] == ""].reset_index(drop=True)
    faces = demographics.with_ranking_gender(faces, ranking)
    estimates = demographics.estimates_status(config.fairface_checkpoint)
    if estimates == "made":
        faces = demographics.estimate_celebrity_attributes(
            faces, config.fairface_checkpoint, storage.images, storage.folder("cache"))
    targets = None
    if config.match_quality:
        faces, targets = match_quality(faces, storage.images, config.match_quality_quantile)
    settings = SplitSettings(test_fraction=config.test_fraction, val_fraction=config.val_fraction,
                             seed=config.seed, flip_upsample=config.flip_upsample,
                             balance=config.balance,
                             fairface_val_only_in_test=bool(config.fairface_checkpoint),
                             match_attributes=demographics.MATCH_MODES[config.match_demographics])
    built: dict = {}
    study = build_study_set(faces, storage.images, settings,
                            duplicate_groups(faces, config.dedup_threshold), built)
    mixes = demographics.mix_by_split(study)
    labels_path = storage.folder("outputs", "face_dataset") / "labels.csv"
    atomic_write_bytes(labels_path, study_label_csv(study).to_csv(index=False).encode())
    version = frame_digest(study, DATASET_COLUMNS)
    ordinary_test = study[(study["looks"] == 0) & (study["split"] == "test")]
    padded = padded_share(study)
    quality = quality_by_class(study)  # of what trains: after match_quality when it was used
    before = quality_by_class(as_before_match(study)) if config.match_quality else {}
    sample = study.groupby("looks").head(6)
    yield Output(study, data_version=DataVersion(version), metadata={
        "dataset_version": version, "rows": len(study),
        "by_split_and_class": counts_by(study, "split", "looks"),
        "persons_train": int(study.loc[study["split"] == "train", "person"].nunique()),
        "persons_val": int(study.loc[study["split"] == "val", "person"].nunique()),
        "persons_test": int(study.loc[study["split"] == "test", "person"].nunique()),
        "flipped_train_images": int(study["flipped"].sum()),
        "frontal_filter_drop_rate": MetadataValue.json(frontal_rates),
        "fairface_val_only_in_test": settings.fairface_val_only_in_test,
        "fairface_checkpoint": os.path.basename(config.fairface_checkpoint),
        "ordinary_test_fairface_splits": fairface_split_counts(ordinary_test),
        "padded_crops": MetadataValue.json(padded),
        "quality_by_class": MetadataValue.json(finite_or_none(quality)),
        "match_quality": config.match_quality,
        "match_quality_targets": MetadataValue.json(targets or {}),
        "quality_by_class_before_match": MetadataValue.json(finite_or_none(before)),
        "persons_missing_faces": MetadataValue.json(missing),
        "attribute_mix": MetadataValue.json(mixes["all"]),
        "attribute_mix_test": MetadataValue.json(mixes.get("test", {})),
        "celebrity_attribute_estimates": estimates,
        "demographic_matching": MetadataValue.json(
            built.get("demographic_matching", {"mode": "none"})),
        "study_label_csv": MetadataValue.path(str(labels_path)),
        **stage_cost(started, len(faces)),
        "sample": image_strip_md([storage.images.load(k) for k in sample["image_key"]],
                                 "ordinary then celebrity")})
    yield class_balance(study)
    yield no_identity_leakage(study)
    yield frontal_filter_parity(frontal_rates)
    yield padding_parity(padded)
    yield quality_parity(quality, config.match_quality)
    yield attribute_mix_parity(mixes)


class VariantConfig(Config):
    """Segmentation backend and mask QA for the white / random backgrounds."""

    segmenter: str = Field(default_factory=lambda: active_profile().segmenter,
                           description="auto | known | rembg | grabcut")
    rembg_model: str = Field(default="u2net_human_seg", description="rembg model name")
    rembg_model_path: str = Field(default="", description="Local ONNX loaded as a custom model")
    seed: int = 0
    mask_min: float = 0.05
    mask_max: float = 0.95


@asset(group_name="dataset", partitions_def=background_partitions,
       code_version=variant_code_version(),
       automation_condition=ON_INPUTS_CHANGED)
def face_dataset_variant(context: AssetExecutionContext, config: VariantConfig,
                         face_dataset: pd.DataFrame, storage: StudyStorage) -> Output[pd.DataFrame]:
    """The study set on its original, white (rembg) or random (swapped plate) background."""
    background = context.partition_key
    started = time.perf_counter()
    segmenter = make_segmenter(SegmenterSettings(config.segmenter, config.rembg_model,
                                                 config.rembg_model_path))
    reused, needed = masks_in_store(face_dataset, storage.images, segmenter)
    result = build_variant(face_dataset, background, storage.images, segmenter,
                           VariantSettings(config.seed, config.mask_min, config.mask_max))
    manifest = result.manifest
    version = variant_version(manifest)
    sample = manifest.groupby("looks").head(6)
    return Output(manifest, data_version=DataVersion(version), metadata={
        "dataset_version": version, "background": background, "segmenter": result.segmenter,
        "rows": len(manifest), "by_split_and_class": counts_by(manifest, "split", "looks"),
        "mask_qa_dropped": len(result.dropped),
        "mask_qa_reasons": MetadataValue.json(result.dropped["reason"].value_counts().to_dict()),
        "mean_mask_fraction": float(manifest["mask_fraction"].mean()),
        "person_masks_reused": reused, "person_masks_computed": needed - reused,
        "plates_computed": result.plates_computed,
        "chunks_computed": result.work.computed, "chunks_reused": result.work.reused,
        "steps": MetadataValue.json(result.work.steps),
        **stage_cost(started, len(face_dataset)),
        "sample": image_strip_md([storage.images.load(k) for k in sample["variant_image_key"]],
                                 f"{background}: ordinary then celebrity")})
