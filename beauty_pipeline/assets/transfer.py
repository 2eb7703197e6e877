"""Group faces: the source-transfer sets (photos of either class from another source) through the
same face stage as the study's photos; shortcut_audit scores every model on them."""

import pandas as pd
from dagster import AssetExecutionContext, Config, asset
from pydantic import Field

from beauty_pipeline.assets.common import CODE_VERSION, ON_INPUTS_CHANGED, previous_manifest
from beauty_pipeline.assets.faces import face_output, merge_face_report
from beauty_pipeline.data.schema import FACE_COLUMNS, conform
from beauty_pipeline.data.transfer import TRANSFER_CLASSES, folder_persons
from beauty_pipeline.resources import FacePreprocessing, StudyStorage


class TransferConfig(Config):
    """Folders (one sub-folder per person, as --photos) of each class from another source."""

    celebrity_dir: str = Field(default="", description="celebrity-class photos from another "
                                                       "source (--transfer-photos)")
    ordinary_dir: str = Field(default="", description="ordinary-class photos from another source "
                                                      "(--transfer-ordinary)")


def folder_faces(root: str, looks: int, storage: StudyStorage,
                 face_stage: FacePreprocessing) -> pd.DataFrame:
    """Every person's photos of one transfer folder through the face stage (kept and dropped)."""
    from beauty_pipeline.scraping import LocalFolderSource
    from beauty_pipeline.vision.faces import process_photos

    source, frames = LocalFolderSource(root), []
    for person, folder in folder_persons(root).items():
        photos = source.fetch(person, folder.replace("_", " "), storage.images)
        ok = photos[photos["outcome"] != "failed"]
        if ok.empty:
            continue
        kept, report = process_photos(ok[["image_key"]].assign(row_id=ok["sha256"]),
                                      storage.images, face_stage.face_config(),
                                      person=f"transfer:{person}", looks=looks, source="transfer")
        frames.append(merge_face_report(kept, report, looks=looks))
    return pd.concat(frames, ignore_index=True) if frames else no_faces()


def no_faces() -> pd.DataFrame:
    """An empty face manifest: no transfer set was given."""
    return conform(pd.DataFrame(columns=list(FACE_COLUMNS))).assign(drop_reason="")


@asset(group_name="faces", code_version=CODE_VERSION, automation_condition=ON_INPUTS_CHANGED)
def transfer_faces(context: AssetExecutionContext, config: TransferConfig,
                   storage: StudyStorage, face_stage: FacePreprocessing):
    """Photos of the celebrity (and ordinary) class from another source, cropped and filtered by
    the same face stage; empty when no transfer folder is configured."""
    dirs = {"celebrity": config.celebrity_dir, "ordinary": config.ordinary_dir}
    frames = [folder_faces(root, TRANSFER_CLASSES[name], storage, face_stage)
              for name, root in dirs.items() if root]
    faces = pd.concat(frames, ignore_index=True) if frames else no_faces()
    return face_output(faces, storage)


def stored_transfer_faces(storage: StudyStorage) -> pd.DataFrame:
    """The kept faces of the last transfer_faces materialization (empty when never made)."""
    faces = previous_manifest(storage, "transfer_faces", None)
    if faces is None or faces.empty:
        return no_faces()
    return faces[faces["drop_reason"] == ""].reset_index(drop=True)


def variant_segmenter(variant: pd.DataFrame):
    """The segmenter the model's variant used for computed masks (GrabCut when it cannot be
    rebuilt here, e.g. rembg without its weights on disk); None when no mask is needed."""
    from beauty_pipeline.vision.segmentation import SegmenterSettings, make_segmenter

    backends = variant.get("mask_backend", pd.Series(dtype=str)).fillna("").astype(str)
    computed = sorted({b.split(":")[0] for b in backends if b and b != "known"})
    backend = computed[0] if computed else "auto"
    return make_segmenter(SegmenterSettings("auto" if backend == "rembg" else backend))


def score_transfer_sets(trained, variant: pd.DataFrame, storage: StudyStorage, background: str,
                        batch_size: int, device: str, seed: int
                        ) -> tuple[dict, dict, dict, dict, str]:
    """Every model seed on the stored transfer faces, put on the model's background variant:
    (estimates, images, identities, controls) per class present (controls: the variant's own test
    photos made as hard to see as the transfer photos), and the segmenter used ('' if none)."""
    from beauty_pipeline.data.transfer import transfer_variant_keys
    from beauty_pipeline.explain.transfer import score_transfer, score_transfer_controls

    faces = stored_transfer_faces(storage)
    if faces.empty:
        return {}, {}, {}, {}, ""
    segmenter = None if background == "original" else variant_segmenter(variant)
    keys = transfer_variant_keys(faces, background, storage.images, segmenter, seed)
    estimates, images, identities = score_transfer(trained, faces, keys, storage.images,
                                                   storage.folder("cache"), batch_size, device,
                                                   seed)
    controls = score_transfer_controls(trained, variant, faces, keys, storage.images,
                                       storage.folder("cache"), batch_size, device, seed)
    used = "" if segmenter is None else f"{segmenter.name}:{segmenter.detail}"
    return estimates, images, identities, controls, used
