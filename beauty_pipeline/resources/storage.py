"""Where everything lives under the data root (BEAUTY_PIPELINE_HOME)."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from beauty_pipeline.settings import data_root
from beauty_pipeline.storage import ImageStore


class StudyStorage(ConfigurableResource):
    """The data root: content-addressed images, manifests, caches, checkpoints, outputs."""

    root: str = Field(default_factory=lambda: str(data_root()),
                      description="Data root; defaults to $BEAUTY_PIPELINE_HOME or ./data.")

    @property
    def path(self) -> Path:
        return data_root(self.root)

    @property
    def images(self) -> ImageStore:
        return ImageStore(self.path / "images")

    def folder(self, *parts: str) -> Path:
        """A folder under the data root, created on demand."""
        target = self.path.joinpath(*parts)
        target.mkdir(parents=True, exist_ok=True)
        return target
