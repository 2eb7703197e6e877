"""Background variants of the study set and their counterfactual test images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from beauty_pipeline.data.backgrounds import (
    WHITE,
    background_plate,
    composite,
    mask_fraction,
    mask_is_plausible,
    on_white,
)
from beauty_pipeline.data.counterfactual import (
    COUNTERFACTUALS,
    TestSample,
    build_counterfactuals,
    neutral_colour,
)
from beauty_pipeline.data.masks import compute_masks, load_mask, mask_jobs
from beauty_pipeline.data.split import SPLITS, balance_split
from beauty_pipeline.storage import ImageStore, frame_digest


@dataclass(frozen=True)
class VariantSettings:
    """Mask QA bounds and the seed that draws random plates."""

    seed: int = 0
    mask_min: float = 0.05
    mask_max: float = 0.95


@dataclass
class VariantResult:
    """The variant manifest plus the rows mask QA dropped (and why)."""

    manifest: pd.DataFrame
    dropped: pd.DataFrame
    segmenter: str


def person_masks(study: pd.DataFrame, store: ImageStore, segmenter,
                 workers: int = 0) -> tuple[list, list[str]]:
    """A foreground mask per row: the exact one when the source has it, else the segmenter's,
    computed once per image and segmenter (data/masks.py) and shared by every variant."""
    known = study["person_mask_key"].fillna("").astype(str) if "person_mask_key" in study else \
        pd.Series("", index=study.index)
    if (known != "").all():  # synthetic data: every mask is exact, no segmenter is needed
        return [store.load(key, "L") for key in known], ["known"] * len(known)
    if segmenter is None:
        raise ValueError("some rows have no exact person mask and no segmenter was given")
    boxes = study[["face_x0", "face_y0", "face_x1", "face_y1"]].to_numpy(dtype=float)
    jobs = mask_jobs(study["image_key"], list(boxes), segmenter)
    compute_masks([job for job, exact in zip(jobs, known, strict=True) if not exact], store,
                  segmenter, workers)
    detail = f"{segmenter.name}:{segmenter.detail}"
    masks = [store.load(exact, "L") if exact else load_mask(store, job[0])
             for job, exact in zip(jobs, known, strict=True)]
    return masks, ["known" if exact else detail for exact in known]


def build_variant(study: pd.DataFrame, background: str, store: ImageStore, segmenter,
                  settings: VariantSettings) -> VariantResult:
    """Make one background variant; mask QA drops implausible masks before rebalancing."""
    if background not in ("original", "white", "random"):
        raise ValueError(f"unknown background variant {background!r}")
    study = study.reset_index(drop=True)
    masks, backends = person_masks(study, store, segmenter)
    verdicts = [mask_is_plausible(m, settings.mask_min, settings.mask_max) for m in masks]
    ok = np.array([v[0] for v in verdicts])
    dropped = study.loc[~ok, ["sample_id", "split", "looks", "image_key"]].assign(
        reason=[v[1] for v in verdicts if not v[0]])
    images = {i: store.load(study.at[i, "image_key"]) for i in np.flatnonzero(ok)}
    rng = np.random.default_rng(settings.seed)
    # The variant's background pool, each plate labelled by the photo it came from: the original
    # photos' plates for `original` and `random` (random composites onto them), white for `white`.
    # Every random-variant image needs one, the audit's counterfactual sets the test ones.
    plated = [i for i in images if background == "random" or study.at[i, "split"] == "test"]
    plates = {i: np.full_like(images[i], WHITE) if background == "white" else
              background_plate(images[i], masks[i]) for i in plated}
    rows, arrays = [], {}
    for i, image in images.items():
        record = study.iloc[i].to_dict()
        mask = masks[i]
        if background == "white":
            image = on_white(image, mask)
        elif background == "random":
            pool = [j for j in plated if study.at[j, "split"] == record["split"] and j != i]
            plate_index = pool[int(rng.integers(len(pool)))]
            record["plate_sample_id"] = int(study.at[plate_index, "sample_id"])
            image = composite(image, mask, plates[plate_index])
        record.update(variant_image_key=store.put_array(image), mask_key=store.put_array(mask),
                      mask_backend=backends[i], mask_fraction=mask_fraction(mask))
        rows.append(record)
        arrays[record["sample_id"]] = (image, mask, plates.get(i))
    manifest = pd.DataFrame(rows)
    parts = [balance_split(manifest[manifest["split"] == side], rng) for side in SPLITS
             if (manifest["split"] == side).any()]
    manifest = pd.concat(parts).sort_values("sample_id").reset_index(drop=True)
    manifest = add_counterfactuals(manifest, arrays, store, settings.seed)
    return VariantResult(manifest, dropped.reset_index(drop=True), segmenter_label(backends))


def segmenter_label(backends: list[str]) -> str:
    """Summarise which backends made the masks, e.g. 'known' or 'known+grabcut:opencv-grabcut'."""
    return "+".join(sorted(set(backends))) or "none"


def add_counterfactuals(manifest: pd.DataFrame, arrays: dict, store: ImageStore,
                        seed: int) -> pd.DataFrame:
    """The four counterfactual versions of every test image, stored, from the variant's arrays
    still in memory (sample_id -> (image, mask, original plate)); the neutral plate's colour comes
    from the train images' backgrounds."""
    manifest = manifest.copy()
    for name in COUNTERFACTUALS:
        manifest[f"cf_{name}_key"] = ""
    test = manifest.index[manifest["split"] == "test"]
    if not len(test):
        return manifest
    train = [arrays[s] for s in manifest.loc[manifest["split"] == "train", "sample_id"]]
    neutral = neutral_colour([a[0] for a in train], [a[1] for a in train]) if train else \
        np.full(3, 128, np.uint8)
    samples = [TestSample(*arrays[manifest.at[i, "sample_id"]], int(manifest.at[i, "looks"]),
                          str(manifest.at[i, "person"]), *face_of(manifest.loc[i], store))
               for i in test]
    built = build_counterfactuals(samples, neutral, seed)
    for name, images in built.sets.items():
        manifest.loc[test, f"cf_{name}_key"] = [store.put_array(image) for image in images]
    manifest.loc[test, "cf_same_partner"] = manifest.loc[test, "sample_id"].to_numpy()[
        built.same_partner]
    manifest.loc[test, "cf_other_partner"] = manifest.loc[test, "sample_id"].to_numpy()[
        built.other_partner]
    return manifest


def face_of(row: pd.Series, store: ImageStore) -> tuple:
    """A test row's face box (stored-image pixels, None when absent) and exact face mask."""
    box = tuple(float(row.get(k, np.nan)) for k in ("face_x0", "face_y0", "face_x1", "face_y1"))
    key = row.get("face_mask_key", "")
    region = store.load(key, "L") if isinstance(key, str) and key else None
    return (box if np.isfinite(box).all() and box[2] > box[0] else None), region


def variant_version(manifest: pd.DataFrame) -> str:
    """The data-set version of a variant: which images, in which split, with which label."""
    return frame_digest(manifest, ["sample_id", "variant_image_key", "split", "looks"])
