"""Small helpers the asset modules share: previous manifests, metadata tables, versions."""


import base64

import cv2
import numpy as np
import pandas as pd
from dagster import AutomationCondition, MetadataValue

from beauty_pipeline.resources.io import partition_slug
from beauty_pipeline.resources.storage import StudyStorage
from beauty_pipeline.storage import encode_png

CODE_VERSION = "0.1.0"

# celebrity_photos: only partitions that are new (never re-fetch everyone when the list changes);
# everything downstream: once, after all its inputs settled (the daemon's automation sensor).
ON_NEW_PERSON = AutomationCondition.on_missing()
ON_INPUTS_CHANGED = AutomationCondition.eager()


def previous_manifest(storage: StudyStorage, asset: str, partition: str | None) -> pd.DataFrame | None:
    """The last stored manifest of an asset partition, so reruns can skip finished work."""
    path = storage.path / "manifests" / asset / f"{partition_slug(partition or 'latest')}.parquet"
    return pd.read_parquet(path) if path.exists() else None


def table_md(frame: pd.DataFrame, max_rows: int = 20) -> MetadataValue:
    """A markdown preview of a small table for the Dagster UI."""
    shown = frame.head(max_rows)
    if shown.empty:
        return MetadataValue.md("_(empty)_")
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    rule = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join(str(v).replace("|", "/") for v in row) + " |"
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


def image_strip_md(images: list[np.ndarray], caption: str, tile: int = 72,
                   max_bytes: int = 60_000) -> MetadataValue:
    """Small inline thumbnails for the UI; shrinks tiles until the PNG fits max_bytes."""
    while True:
        tiles = [cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA) for image in images]
        data = encode_png(np.concatenate(tiles, axis=1))
        if len(data) <= max_bytes or tile <= 24:
            break
        tile = int(tile * 0.75)
    encoded = base64.b64encode(data).decode()
    return MetadataValue.md(f"![{caption}](data:image/png;base64,{encoded})")
