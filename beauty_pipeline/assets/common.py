"""Small helpers the asset modules share: previous manifests, metadata tables, versions."""


import base64
import html
import re

import cv2
import numpy as np
import pandas as pd
from dagster import AutomationCondition, MetadataValue

from beauty_pipeline.data import counterfactual
from beauty_pipeline.explain.plots import thumbnail_png
from beauty_pipeline.resources.io import manifest_stem
from beauty_pipeline.resources.storage import StudyStorage
from beauty_pipeline.storage import paths_absolute

CODE_VERSION = "0.2.0"  # 0.2: nine counterfactual sets, eight families, per-seed verdicts
# The audit's method on its own: a changed family move or verdict rule reruns the audits, and only
# them (training resumes from its finished checkpoints). 0.2.1: spatial moves without resampling
# blur; 0.3.0: the per-class face evidence swaps the inner face, its control's area is checked.
AUDIT_CODE_VERSION = "0.3.0"


def audit_code_version() -> str:
    """shortcut_audit's code version: the graph's, plus the audit method's."""
    return f"{CODE_VERSION}+audit{AUDIT_CODE_VERSION}"


def variant_code_version() -> str:
    """face_dataset_variant's code version: the graph's, plus its counterfactual sets' (a changed
    set rebuilds the variants, whose training images and data versions stay: nothing retrains)."""
    return f"{CODE_VERSION}+sets{counterfactual.COUNTERFACTUAL_SETS_VERSION}"


def step_code_version(assets) -> str:
    """The code version a study step's fingerprint carries: the audit's when it holds the audit,
    the variants' when it builds a variant, else the graph's."""
    if "shortcut_audit" in assets:
        return audit_code_version()
    return variant_code_version() if "face_dataset_variant" in assets else CODE_VERSION


# Steps that use the GPU (training, Grad-CAM, the audit's probes) are in this Dagster concurrency
# pool; dagster.yaml caps it at one step per device, across runs (CLI passes and UI backfills).
GPU_POOL = "gpu"
# On Kubernetes (k8s_job_executor) a GPU step's pod asks for one GPU; ignored elsewhere.
GPU_STEP_TAGS = {"dagster-k8s/config": {"container_config": {
    "resources": {"limits": {"nvidia.com/gpu": 1}}}}}

# celebrity_photos: only partitions that are new (never re-fetch everyone when the list changes);
# everything downstream: once, after all its inputs settled (the daemon's automation sensor).
ON_NEW_PERSON = AutomationCondition.on_missing()
ON_INPUTS_CHANGED = AutomationCondition.eager()


def previous_manifest(storage: StudyStorage, asset: str, partition: str | None) -> pd.DataFrame | None:
    """The last stored manifest of an asset partition, so reruns can skip finished work."""
    path = manifest_stem(storage.path, [asset], partition).with_suffix(".parquet")
    return paths_absolute(pd.read_parquet(path), storage.path) if path.exists() else None


_MD_SPECIAL = re.compile(r"([\\`*_\[\]()!|#~])")


def md_escape(value) -> str:
    """User text as literal Markdown: no image, link, HTML tag or table break can come through."""
    text = " ".join(str(value).split())  # newlines would end a table row
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def table_md(frame: pd.DataFrame, max_rows: int = 20) -> MetadataValue:
    """A markdown preview of a small table for the Dagster UI."""
    shown = frame.head(max_rows)
    if shown.empty:
        return MetadataValue.md("_(empty)_")
    header = "| " + " | ".join(map(md_escape, shown.columns)) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(md_escape(v) for v in row) + " |"
            for row in shown.itertuples(index=False)]
    more = [f"\n_{len(frame) - max_rows} more rows_"] if len(frame) > max_rows else []
    return MetadataValue.md("\n".join([header, rule, *body, *more]))


def counts_by(frame: pd.DataFrame, *columns: str) -> dict[str, int]:
    """Row counts per combination of columns, keyed 'a/b'."""
    if frame.empty:
        return {}
    grouped = frame.groupby(list(columns)).size()
    return {"/".join(map(str, k if isinstance(k, tuple) else (k,))): int(v)
            for k, v in grouped.items()}


def png_md(png: bytes, caption: str) -> MetadataValue:
    """A PNG rendered inline by the Dagster UI's markdown metadata."""
    alt = md_escape(caption)
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def image_strip_md(images: list[np.ndarray], caption: str, tile: int = 72) -> MetadataValue:
    """Small inline thumbnails for the UI: tiles side by side, size-capped like every figure."""
    tiles = [cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA) for image in images]
    strip = np.concatenate(tiles, axis=1)
    return png_md(thumbnail_png(strip, max_side=strip.shape[1], max_bytes=60_000), caption)
