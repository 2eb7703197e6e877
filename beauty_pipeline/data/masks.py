"""Person masks computed once per image and segmenter, kept in the image store for every variant.

A mask's key is derived from what made it — the image's key, the segmenter's identity (backend,
model, settings) and, for backends seeded by it, the face box — so the `original`, `white` and
`random` variants and the counterfactual sets all read one mask, and a rerun computes nothing.
"""

from __future__ import annotations

import hashlib
import os

import cv2
import numpy as np

from beauty_pipeline.parallel import run_in_pool
from beauty_pipeline.settings import available_cpus
from beauty_pipeline.storage import ImageStore, atomic_write_bytes

MIN_POOL_MASKS = 8   # fewer missing masks than this: a pool's start-up costs more than it saves
BATCH = 4            # masks per pool task


def mask_key(image_key: str, segmenter_id: str, face_box=None) -> str:
    """The store key of a person mask: sha256 of (image, segmenter, face box when it seeds)."""
    box = "" if face_box is None else ",".join(f"{float(v):.1f}" for v in face_box)
    return hashlib.sha256(f"person-mask|{image_key}|{segmenter_id}|{box}".encode()).hexdigest()


def segmenter_id(segmenter) -> str:
    """Backend + model + settings; falls back to name:detail for segmenters without a cache_id."""
    return getattr(segmenter, "cache_id", None) or f"{segmenter.name}:{segmenter.detail}"


def mask_jobs(image_keys, boxes, segmenter) -> list[tuple[str, str, tuple | None]]:
    """(mask key, image key, face box or None) per image, for this segmenter."""
    ident = segmenter_id(segmenter)
    seeded = getattr(segmenter, "uses_face_box", True)
    jobs = []
    for image_key, box in zip(image_keys, boxes, strict=True):
        box = tuple(float(v) for v in box) if seeded and box is not None and np.all(
            np.isfinite(box)) else None
        jobs.append((mask_key(image_key, ident, box), image_key, box))
    return jobs


def _alias(store: ImageStore, key: str):
    """Where the content key of the mask a job key names is recorded (the store itself stays
    content-addressed and verified)."""
    return store.root / "mask-index" / key[:2] / key


def stored_mask_key(store: ImageStore, key: str) -> str | None:
    """The content key of a computed mask, or None when it is not (fully) stored."""
    alias = _alias(store, key)
    if not alias.is_file():
        return None
    content = alias.read_text().strip()
    return content if content and store.exists(content) else None


def load_mask(store: ImageStore, key: str) -> np.ndarray:
    """A computed mask by its job key, verified against its content hash."""
    content = stored_mask_key(store, key)
    if content is None:
        raise KeyError(f"person mask {key} has not been computed")
    return store.load(content, "L")


def missing_masks(jobs, store: ImageStore) -> list[tuple]:
    """Jobs whose mask is not in the store yet, each mask once."""
    seen, missing = set(), []
    for job in jobs:
        if job[0] not in seen and stored_mask_key(store, job[0]) is None:
            seen.add(job[0])
            missing.append(job)
    return missing


def _save(store: ImageStore, key: str, mask: np.ndarray) -> None:
    content = store.put_array(np.asarray(mask, dtype=np.uint8))
    atomic_write_bytes(_alias(store, key), content.encode())


def _segment(segmenter, store: ImageStore, jobs) -> int:
    for key, image_key, box in jobs:
        face_box = None if box is None else np.array(box, dtype=float)
        _save(store, key, segmenter.mask(store.load(image_key), face_box=face_box))
    return len(jobs)


_WORKER: dict = {}


def _segment_batch(store_root: str, spec: tuple, jobs: list) -> int:
    """Pool task: the worker's segmenter (rembg session made once per process) on a batch."""
    from beauty_pipeline.vision.segmentation import segmenter_from_spec

    if _WORKER.get("spec") != spec:
        _WORKER.update(spec=spec, segmenter=segmenter_from_spec(spec, threads=1))
    return _segment(_WORKER["segmenter"], ImageStore(store_root), jobs)


def compute_masks(jobs, store: ImageStore, segmenter, workers: int = 0) -> int:
    """Segment the images whose masks are missing (in a process pool when it pays); the count."""
    todo = missing_masks(jobs, store)
    cap = workers or available_cpus()
    spec = getattr(segmenter, "spec", None)
    if spec is not None and min(cap, -(-len(todo) // BATCH)) > 1 and len(todo) >= MIN_POOL_MASKS:
        batches = [(str(store.root), spec, todo[i:i + BATCH]) for i in range(0, len(todo), BATCH)]
        if run_in_pool(_segment_batch, batches, cap) is not None:
            return len(todo)
        todo = missing_masks(todo, store)  # the pool broke: finish what it left here
    return _segment(segmenter, store, todo)


def masks_in_store(study, store: ImageStore, segmenter) -> tuple[int, int]:
    """(already in the store, needed) over the rows without an exact mask: how many a variant
    reuses rather than computes."""
    known = study["person_mask_key"].fillna("").astype(str) if "person_mask_key" in study else None
    rows = study if known is None else study[known == ""]
    boxes = list(rows[["face_x0", "face_y0", "face_x1", "face_y1"]].to_numpy(dtype=float))
    keys = {job[0] for job in mask_jobs(rows["image_key"], boxes, segmenter)}
    return sum(stored_mask_key(store, key) is not None for key in keys), len(keys)
