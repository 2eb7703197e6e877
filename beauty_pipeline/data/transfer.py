"""Transfer sets: photos of one class from another source, folder-per-person like --photos, and
their images on a model's background variant (the audit scores a white-background model on
white-background transfer photos, not on their original backgrounds)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from beauty_pipeline.data.backgrounds import background_plate, composite, on_white
from beauty_pipeline.data.variants import person_masks
from beauty_pipeline.errors import PipelineError
from beauty_pipeline.ranking import person_key
from beauty_pipeline.storage import ImageStore

TRANSFER_CLASSES = {"celebrity": 1, "ordinary": 0}


def folder_persons(root: str | Path) -> dict[str, str]:
    """person key -> sub-folder name for every visible sub-folder of a transfer folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PipelineError(f"transfer photo folder {root}: no such folder")
    found = {person_key(child.name.replace("_", " ")): child.name
             for child in sorted(root.iterdir()) if child.is_dir() and not child.name.startswith(".")}
    if not found:
        raise PipelineError(f"transfer photo folder {root} has no sub-folders: put one folder "
                            "per person in it, as for --photos")
    return found


def transfer_variant_keys(faces: pd.DataFrame, background: str, store: ImageStore, segmenter,
                          seed: int = 0) -> list[str]:
    """Each transfer face on the model's background: as it is (`original`), cut out on white
    (`white`), or composited onto another transfer photo's inpainted plate drawn at random
    (`random`: no plate of the study, so no class-typical one)."""
    if background == "original" or faces.empty:
        return faces["image_key"].astype(str).tolist()
    if background not in ("white", "random"):
        raise ValueError(f"unknown background variant {background!r}")
    faces = faces.reset_index(drop=True)
    masks, _ = person_masks(faces, store, segmenter)
    images = [store.load(key) for key in faces["image_key"]]
    if background == "white":
        return [store.put_array(on_white(image, mask)) for image, mask in zip(images, masks,
                                                                              strict=True)]
    rng = np.random.default_rng(seed)
    plates = [background_plate(image, mask) for image, mask in zip(images, masks, strict=True)]
    keys = []
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        others = [j for j in range(len(images)) if j != i] or [i]
        plate = plates[others[int(rng.integers(len(others)))]]
        if plate.shape != image.shape:
            plate = cv2.resize(plate, image.shape[1::-1], interpolation=cv2.INTER_AREA)
        keys.append(store.put_array(composite(image, mask, plate)))
    return keys
