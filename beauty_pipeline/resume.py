"""Which steps of a study pass are done, so a rerun (after Ctrl-C, a crash or a new person)
continues where the last one stopped instead of redoing hours of detection and training.

A step is done under a fingerprint: its run config, the resources' settings, the code version and
the data versions Dagster recorded for its inputs. Change any of them and the step runs again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from beauty_pipeline.storage import atomic_write_json

log = logging.getLogger(__name__)
DATA_VERSION_TAG = "dagster/data_version"


def fingerprint(*parts) -> str:
    """A stable digest of JSON-able parts (sorted keys; other objects by their str)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def data_version(instance: DagsterInstance, asset: str, partition: str | None = None) -> str:
    """The data version of an asset (partition)'s latest materialization; '' when none."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset),
                           asset_partitions=[partition] if partition else None), limit=1).records
    if not records:
        return ""
    materialization = records[0].asset_materialization
    return (materialization.tags or {}).get(DATA_VERSION_TAG, "") if materialization else ""


def folder_listing(folder: Path) -> list[tuple[str, int, int]]:
    """Names, sizes and modification times under a folder: adding or replacing a photo shows."""
    if not folder.is_dir():
        return []
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in folder.rglob("*") if p.is_file())


class StepLedger:
    """steps.json in the data root: step name -> fingerprint of its last complete run."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.steps: dict[str, str] = {}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text())
                self.steps = {str(k): str(v) for k, v in loaded.items()}
            except (ValueError, AttributeError, OSError) as error:
                log.warning("%s is unreadable (%s): every step runs again", self.path, error)

    def done(self, step: str, digest: str) -> bool:
        return self.steps.get(step) == digest

    def record(self, step: str, digest: str) -> None:
        """Mark a step complete; written atomically, after the step's outputs are stored."""
        self.steps[step] = digest
        atomic_write_json(self.path, self.steps)
