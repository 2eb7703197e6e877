"""Background variants of the study set and their counterfactual test images."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from beauty_pipeline.data.backgrounds import (
    PLATE_METHOD,
    WHITE,
    as_alpha,
    composite,
    fraction_is_plausible,
    mask_fraction,
    on_white,
)
from beauty_pipeline.data import counterfactual
from beauty_pipeline.data.counterfactual import (
    COUNTERFACTUALS,
    FACE_AREAS,
    TestSample,
    partners,
    sample_sets,
)
from beauty_pipeline.data.masks import (
    compute_masks,
    mask_jobs,
    stored_mask_key,
)
from beauty_pipeline.data.plates import plate_chunk
from beauty_pipeline.data.split import SPLITS, balance_split
from beauty_pipeline.parallel import ChunkCount, kept_pools, run_chunks
from beauty_pipeline.storage import ChunkLedger, ImageStore, frame_digest


@dataclass(frozen=True)
class VariantSettings:
    """Mask QA bounds and the seed that draws random plates."""

    seed: int = 0
    mask_min: float = 0.05
    mask_max: float = 0.95
    workers: int = 0  # processes for the per-image steps; 0 = every core, 1 = this process
    plate_method: str = PLATE_METHOD


@dataclass
class VariantResult:
    """The variant manifest plus the rows mask QA dropped (and why)."""

    manifest: pd.DataFrame
    dropped: pd.DataFrame
    segmenter: str
    work: ChunkCount = field(default_factory=ChunkCount)
    plates_computed: int = 0


def person_masks(study: pd.DataFrame, store: ImageStore, segmenter,
                 workers: int = 0) -> tuple[list, list[str]]:
    """A foreground mask per row: the exact one when the source has it, else the segmenter's,
    computed once per image and segmenter (data/masks.py) and shared by every variant."""
    keys, backends = person_mask_keys(study, store, segmenter, workers)
    return [store.load(key, "L") for key in keys], backends


def person_mask_keys(study: pd.DataFrame, store: ImageStore, segmenter,
                     workers: int = 0) -> tuple[list[str], list[str]]:
    """The content key of every row's person mask (exact, or the segmenter's, computed once per
    image and segmenter) and which backend made it: workers then load masks by key."""
    known = study["person_mask_key"].fillna("").astype(str) if "person_mask_key" in study else \
        pd.Series("", index=study.index)
    if (known != "").all():
        return list(known), ["known"] * len(known)
    if segmenter is None:
        raise ValueError("some rows have no exact person mask and no segmenter was given")
    boxes = study[["face_x0", "face_y0", "face_x1", "face_y1"]].to_numpy(dtype=float)
    jobs = mask_jobs(study["image_key"], list(boxes), segmenter)
    compute_masks([job for job, exact in zip(jobs, known, strict=True) if not exact], store,
                  segmenter, workers)
    detail = f"{segmenter.name}:{segmenter.detail}"
    keys = [exact or stored_mask_key(store, job[0]) for job, exact in zip(jobs, known, strict=True)]
    return keys, ["known" if exact else detail for exact in known]


CHUNK = 16  # images per pool task and per ledger entry
MIN_POOL_IMAGES = 64  # fewer images than this to compute in a step: this process makes them


def _chunked(step: str, function, store: ImageStore, jobs: list, settings: VariantSettings,
             count: ChunkCount, on_chunk=None, on_fresh=None, background: str = "") -> list:
    """One per-image step of a variant over the pool, resumable through the store's ledger."""
    return run_chunks(step, function, (str(store.root),), jobs,
                      ledger=ChunkLedger(store.root / "chunk-ledger"), workers=settings.workers,
                      chunk_size=CHUNK, count=count,
                      on_chunk=on_chunk, still_valid=lambda out: _keys_stored(store, out),
                      min_pool_jobs=MIN_POOL_IMAGES, on_fresh=on_fresh,
                      label=f"{background} variant: {step}" if background else step)


def _keys_stored(store: ImageStore, results) -> bool:
    """Whether every image key a ledger entry names is still in the store (a deleted or damaged
    file means the chunk is made again)."""
    if isinstance(results, str):
        return len(results.split(".", 1)[0]) != 64 or store.exists(results)
    if isinstance(results, list):
        return all(_keys_stored(store, item) for item in results)
    return True


def _fraction_chunk(store_root: str, keys: list) -> list:
    """Pool task: the share of the frame each person mask covers."""
    store = ImageStore(store_root)
    return [mask_fraction(store.load(key, "L")) for key in keys]


def _variant_chunk(store_root: str, jobs: list) -> list:
    """Pool task: [variant image key, mask key] per (background, image, mask, plate) — the photo
    as it is, on white, or composited onto the drawn plate — stored."""
    store = ImageStore(store_root)
    out = []
    for background, image_key, mask_key, plate in jobs:
        if background == "original" and _is_png(image_key) and _is_png(mask_key):
            out.append([image_key, mask_key])  # already stored as they are: nothing to make
            continue
        image, mask = store.load(image_key), store.load(mask_key, "L")
        if background == "white":
            image = on_white(image, mask)
        elif background == "random":
            image = composite(image, mask, store.load(plate))
        out.append([store.put_array(image),
                    mask_key if _is_png(mask_key) else store.put_array(mask)])
    return out


def _is_png(key: str) -> bool:
    """A store key of losslessly stored pixels (no suffix: PNG), which need no re-encoding."""
    return "." not in key


def _background_sum_chunk(store_root: str, jobs: list) -> list:
    """Pool task: per (image, mask), the summed RGB of its background pixels and their count —
    exact integers, so chunked sums add up to neutral_colour's."""
    store = ImageStore(store_root)
    out = []
    for image_key, mask_key in jobs:
        image, mask = store.load(image_key), store.load(mask_key, "L")
        outside = as_alpha(mask)[..., 0] < 0.5
        out.append([*(int(v) for v in image[outside].reshape(-1, 3).sum(axis=0)),
                    int(outside.sum())])
    return out


def _counterfactual_chunk(store_root: str, jobs: list) -> list:
    """Pool task: every counterfactual set's key per test image (COUNTERFACTUALS order), then the
    face tests' areas (FACE_AREAS), made by sample_sets from the image and its two partners."""
    store = ImageStore(store_root)
    out = []
    for sample, same, other, neutral in jobs:
        images, areas = sample_sets(
            stored_sample(store, sample), stored_sample(store, same), stored_sample(store, other),
            np.asarray(neutral, np.uint8))
        out.append([*(store.put_array(image) for image in images), *areas])
    return out


def sample_ref(row) -> tuple:
    """What a worker needs to load one test row as a TestSample: keys, label, person, face."""
    box = tuple(float(getattr(row, k, np.nan)) for k in ("face_x0", "face_y0", "face_x1",
                                                         "face_y1"))
    face_key = getattr(row, "face_mask_key", "")
    return (row.variant_image_key, row.mask_key, row.plate_key, int(row.looks), str(row.person),
            box if np.isfinite(box).all() and box[2] > box[0] else None,
            face_key if isinstance(face_key, str) else "")


def stored_sample(store: ImageStore, ref: tuple) -> TestSample:
    """A TestSample from the store by the keys sample_ref recorded."""
    image_key, mask_key, plate_key, label, person, box, face_key = ref
    return TestSample(store.load(image_key), store.load(mask_key, "L"), store.load(plate_key),
                      label, person, box, store.load(face_key, "L") if face_key else None)


@kept_pools()  # one set of workers for all the build's steps
def build_variant(study: pd.DataFrame, background: str, store: ImageStore, segmenter,
                  settings: VariantSettings, on_chunk=None) -> VariantResult:
    """Make one background variant; mask QA drops implausible masks before rebalancing.

    Every per-image step (mask QA, plates, variant images, counterfactual sets) runs over a
    process pool in chunks that a rerun reads back (storage.ChunkLedger); plates are stored by
    (image, mask, method) and shared by every variant (data/plates.py)."""
    if background not in ("original", "white", "random"):
        raise ValueError(f"unknown background variant {background!r}")
    count = ChunkCount()
    study = study.reset_index(drop=True)
    mask_keys, backends = person_mask_keys(study, store, segmenter, settings.workers)
    fractions = _chunked("mask QA", _fraction_chunk, store, mask_keys, settings, count, on_chunk,
                         background=background)
    verdicts = [fraction_is_plausible(f, settings.mask_min, settings.mask_max)
                for f in fractions]
    ok = np.array([v[0] for v in verdicts])
    dropped = study.loc[~ok, ["sample_id", "split", "looks", "image_key"]].assign(
        reason=[v[1] for v in verdicts if not v[0]])
    kept = [int(i) for i in np.flatnonzero(ok)]
    rng = np.random.default_rng(settings.seed)
    # The variant's background pool, each plate labelled by the photo it came from: the original
    # photos' plates for `original` and `random` (random composites onto them), white for `white`.
    # Every random-variant image needs one, the audit's counterfactual sets the test ones.
    plated = [i for i in kept if background == "random" or study.at[i, "split"] == "test"]
    plates, computed = _plates(study, plated, mask_keys, background, store, settings, count,
                               on_chunk)
    jobs, draws = [], {}
    donors = plate_donors(study, plated)
    for i in kept:
        plate = ""
        if background == "random":
            draws[i] = donors.draw(i, str(study.at[i, "split"]), rng)
            plate = plates[draws[i]]
        jobs.append((background, str(study.at[i, "image_key"]), mask_keys[i], plate))
    made = _chunked("images", _variant_chunk, store, jobs, settings, count, on_chunk,
                    background=background)
    rows = []
    for i, (image_key, mask_key) in zip(kept, made, strict=True):
        record = study.iloc[i].to_dict()
        if i in draws:
            record["plate_sample_id"] = int(study.at[draws[i], "sample_id"])
        record.update(variant_image_key=image_key, mask_key=mask_key, mask_backend=backends[i],
                      mask_fraction=fractions[i], plate_key=plates.get(i, ""))
        rows.append(record)
    manifest = pd.DataFrame(rows)
    parts = [balance_split(manifest[manifest["split"] == side], rng) for side in SPLITS
             if (manifest["split"] == side).any()]
    manifest = pd.concat(parts).sort_values("sample_id").reset_index(drop=True)
    manifest = add_counterfactuals(manifest, store, settings, count, on_chunk, background)
    manifest = manifest.drop(columns=["plate_key"])
    return VariantResult(manifest, dropped.reset_index(drop=True), segmenter_label(backends),
                         count, computed)


@dataclass
class PlateDonors:
    """The photos whose plates a split's random composites draw from, in study order."""

    by_split: dict[str, list[int]]
    position: dict[int, int]

    def draw(self, i: int, split: str, rng: np.random.Generator) -> int:
        """Another photo of the same split, uniformly (the same draw as from the list without
        i, in linear rather than quadratic time over a variant)."""
        donors = self.by_split[split]
        at = self.position.get(i)  # i itself is a donor of its own split when it is plated
        pick = int(rng.integers(len(donors) - (at is not None)))
        return donors[pick + 1 if at is not None and pick >= at else pick]


def plate_donors(study: pd.DataFrame, plated: list[int]) -> PlateDonors:
    """Index the plated photos by split once per variant."""
    by_split: dict[str, list[int]] = {}
    position: dict[int, int] = {}
    splits = study["split"].astype(str)
    for j in plated:
        donors = by_split.setdefault(splits.iat[j], [])
        position[j] = len(donors)
        donors.append(j)
    return PlateDonors(by_split, position)


def _plates(study: pd.DataFrame, plated: list[int], mask_keys: list[str], background: str,
            store: ImageStore, settings: VariantSettings, count: ChunkCount,
            on_chunk) -> tuple[dict[int, str], int]:
    """Row -> plate content key, and how many plates were inpainted now (not read back)."""
    if background == "white":  # one white plate per image size
        whites: dict[tuple, str] = {}
        plates = {}
        for i in plated:
            shape = store.size(study.at[i, "image_key"])
            if shape not in whites:
                whites[shape] = store.put_array(np.full((*shape, 3), WHITE, np.uint8))
            plates[i] = whites[shape]
        return plates, 0
    jobs = [(str(study.at[i, "image_key"]), mask_keys[i], settings.plate_method) for i in plated]
    inpainted = []
    made = _chunked("background plates", plate_chunk, store, jobs, settings, count, on_chunk,
                    on_fresh=lambda out: inpainted.extend(flag for _, flag in out),
                    background=background)
    return {i: key for i, (key, _) in zip(plated, made, strict=True)}, sum(inpainted)


def segmenter_label(backends: list[str]) -> str:
    """Summarise which backends made the masks, e.g. 'known' or 'known+grabcut:opencv-grabcut'."""
    return "+".join(sorted(set(backends))) or "none"


def add_counterfactuals(manifest: pd.DataFrame, store: ImageStore, settings: VariantSettings,
                        count: ChunkCount | None = None, on_chunk=None,
                        background: str = "") -> pd.DataFrame:
    """Every counterfactual version of every test image (COUNTERFACTUALS), stored, from the
    variant's images, masks and plates by key; the neutral plate's colour comes from the train
    images' backgrounds. Partners are drawn as build_counterfactuals draws them, each image's sets
    made over the pool by the same sample_sets."""
    count = count or ChunkCount()
    manifest = manifest.copy()
    for name in COUNTERFACTUALS:
        manifest[f"cf_{name}_key"] = ""
    test = manifest.index[manifest["split"] == "test"]
    if not len(test):
        return manifest
    train = manifest[manifest["split"] == "train"]
    pairs = list(zip(train["variant_image_key"], train["mask_key"], strict=True))
    sums = _chunked("neutral plate", _background_sum_chunk, store, pairs, settings, count,
                    on_chunk, background=background)
    neutral = _neutral(sums) if len(train) else np.full(3, 128, np.uint8)
    rows = manifest.loc[test]
    labels = rows["looks"].astype(int).to_numpy()
    identities = rows["person"].astype(str).tolist()
    same = partners(labels, identities, True, settings.seed)
    other = partners(labels, identities, False, settings.seed + 1)
    refs = [sample_ref(row) for row in rows.itertuples(index=False)]
    jobs = [(refs[i], refs[j], refs[k], [int(v) for v in neutral])
            for i, (j, k) in enumerate(zip(same, other, strict=True))]
    made = _chunked(f"counterfactual sets v{counterfactual.COUNTERFACTUAL_SETS_VERSION}",
                    _counterfactual_chunk, store, jobs, settings, count,
                    on_chunk, background=background)
    for n, name in enumerate(COUNTERFACTUALS):
        manifest.loc[test, f"cf_{name}_key"] = [m[n] for m in made]
    for n, name in enumerate(FACE_AREAS):  # pixels each face test and its control change
        manifest.loc[test, f"cf_{name}_area"] = [m[len(COUNTERFACTUALS) + n] for m in made]
    manifest.loc[test, "cf_same_partner"] = manifest.loc[test, "sample_id"].to_numpy()[same]
    manifest.loc[test, "cf_other_partner"] = manifest.loc[test, "sample_id"].to_numpy()[other]
    return manifest


def _neutral(sums: list) -> np.ndarray:
    """neutral_colour from the workers' exact background sums."""
    total = np.sum(np.asarray(sums, dtype=np.int64), axis=0)
    if total[3] == 0:
        return np.full(3, 128, np.uint8)
    return np.clip(np.rint(total[:3] / total[3]), 0, 255).astype(np.uint8)


def variant_version(manifest: pd.DataFrame) -> str:
    """The data-set version of a variant: which images, in which split, with which label."""
    return frame_digest(manifest, ["sample_id", "variant_image_key", "split", "looks"])
