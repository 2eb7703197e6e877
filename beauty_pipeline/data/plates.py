"""Background plates computed once per (image, mask, method), kept in the image store.

A plate's key is derived from what made it, like a person mask's (data/masks.py): the image's
content key, the mask's content key and the fill method. Every variant that needs the plate of an
image (`original` and `random` for their counterfactual sets, `random` for its composites) and
every rerun read the one stored plate instead of inpainting again.
"""

from __future__ import annotations

import hashlib

from beauty_pipeline.data.backgrounds import PLATE_METHOD, background_plate
from beauty_pipeline.storage import ImageStore, atomic_write_bytes


def plate_key(image_key: str, mask_key: str, method: str = PLATE_METHOD) -> str:
    """The job key of a plate: sha256 of (image content, mask content, fill method)."""
    return hashlib.sha256(f"background-plate|{image_key}|{mask_key}|{method}".encode()).hexdigest()


def _alias(store: ImageStore, key: str):
    """Where the content key of the plate a job key names is recorded."""
    return store.root / "plate-index" / key[:2] / key


def stored_plate_key(store: ImageStore, key: str) -> str | None:
    """The content key of a computed plate, or None when it is not (fully) stored."""
    alias = _alias(store, key)
    if not alias.is_file():
        return None
    content = alias.read_text().strip()
    return content if content and store.exists(content) else None


def plate_for(store: ImageStore, image_key: str, mask_key: str,
              method: str = PLATE_METHOD) -> tuple[str, bool]:
    """(content key of the plate, whether it was computed now): read when stored, else made."""
    key = plate_key(image_key, mask_key, method)
    content = stored_plate_key(store, key)
    if content is not None:
        return content, False
    plate = background_plate(store.load(image_key), store.load(mask_key, "L"), method=method)
    content = store.put_array(plate)
    atomic_write_bytes(_alias(store, key), content.encode())
    return content, True


def plate_chunk(store_root: str, jobs: list) -> list:
    """Pool task: [plate content key, 1 if computed now else 0] per (image key, mask key, method)."""
    store = ImageStore(store_root)
    out = []
    for image_key, mask_key, method in jobs:
        content, computed = plate_for(store, image_key, mask_key, method)
        out.append([content, int(computed)])
    return out
