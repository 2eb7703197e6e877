"""Stores asset values under the data root: DataFrames as Parquet manifests, dicts as JSON."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pandas as pd
from dagster import ConfigurableIOManager, InputContext, OutputContext
from pydantic import Field

from beauty_pipeline.settings import data_root
from beauty_pipeline.storage import (
    atomic_write_json,
    paths_absolute,
    paths_relative,
    write_parquet,
)


def partition_slug(key: str) -> str:
    """A file name for a (possibly multi-dimensional) partition key."""
    return key.replace("|", "__").replace("/", "_")


def manifest_stem(root: Path, asset_path: list[str], partition: str | None) -> Path:
    """manifests/<asset>/<partition or 'latest'>, without the .parquet/.json suffix."""
    return root / "manifests" / "/".join(asset_path) / (partition_slug(partition) if partition
                                                         else "latest")


def read_manifest(stem: Path, root: Path):
    """A stored asset value (<stem>.parquet or .json) with its paths made absolute again."""
    if stem.with_suffix(".parquet").exists():
        return paths_absolute(pd.read_parquet(stem.with_suffix(".parquet")), root)
    if stem.with_suffix(".json").exists():
        return paths_absolute(json.loads(stem.with_suffix(".json").read_text()), root)
    raise FileNotFoundError(f"{stem}.parquet|json has not been materialized")


class ManifestIOManager(ConfigurableIOManager):
    """manifests/<asset>/<partition>.parquet|json: readable by people and other tools."""

    root: str = Field(default_factory=lambda: str(data_root()))

    def _file(self, context: InputContext | OutputContext, partition: str | None) -> Path:
        return manifest_stem(data_root(self.root), context.asset_key.path, partition)

    def handle_output(self, context: OutputContext, obj) -> None:
        partition = context.partition_key if context.has_asset_partitions else None
        target = self._file(context, partition)
        obj = paths_relative(obj, data_root(self.root))  # a moved data root keeps working
        if isinstance(obj, pd.DataFrame):
            write_parquet(obj, target.with_suffix(".parquet"))
        elif isinstance(obj, dict):
            atomic_write_json(target.with_suffix(".json"), obj)
        elif obj is not None:
            raise TypeError(f"{context.asset_key.to_user_string()}: cannot store {type(obj)}")

    def _read(self, path: Path):
        return read_manifest(path, data_root(self.root))

    def load_input(self, context: InputContext):
        if not context.has_asset_partitions:
            return self._read(self._file(context, None))
        keys = context.asset_partition_keys
        if typing.get_origin(context.dagster_type.typing_type) is dict:
            found, missing = {}, []
            for key in keys:  # partitions never materialized are left out, and said so once
                try:
                    found[key] = self._read(self._file(context, key))
                except FileNotFoundError:
                    missing.append(key)
            if missing:
                context.log.warning(f"{context.asset_key.to_user_string()}: {len(missing)} of "
                                    f"{len(keys)} partitions not materialized, left out: "
                                    f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
            return found
        if len(keys) != 1:
            raise ValueError(f"expected one upstream partition, got {len(keys)}")
        return self._read(self._file(context, keys[0]))
