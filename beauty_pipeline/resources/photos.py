"""Where celebrity photos come from: Bing, a local folder per person, or the synthetic demo."""

from __future__ import annotations

import os

from dagster import ConfigurableResource
from pydantic import Field

from beauty_pipeline.demo.source import DemoPhotoSource
from beauty_pipeline.demo.synthetic import DemoSpec
from beauty_pipeline.errors import PipelineError
from beauty_pipeline.netio import private_hosts_allowed
from beauty_pipeline.settings import active_profile

PHOTO_SOURCES = ("demo", "local", "bing")


class PhotoSourceResource(ConfigurableResource):
    """Selects and configures the ImageSource behind celebrity_photos."""

    kind: str = Field(default_factory=lambda: os.environ.get(
        "BEAUTY_PIPELINE_PHOTO_SOURCE", active_profile().photo_source),
        description="demo | local | bing")
    local_dir: str = Field(default_factory=lambda: os.environ.get(
        "BEAUTY_PIPELINE_LOCAL_PHOTOS", ""), description="Folder with one sub-folder per person.")
    bing_limit: int = Field(default=60, description="Photos to try per person.")
    bing_extra_terms: str = Field(default="face", description="Appended to the person's name.")
    bing_timeout_s: float = 15.0
    bing_max_bytes: int = 15_000_000
    bing_retries: int = 3
    bing_base_url: str = "https://www.bing.com"
    allow_private_hosts: bool = Field(
        default_factory=private_hosts_allowed,
        description="Let downloads reach loopback/private/link-local addresses (tests only).")

    def build(self, demo: DemoSpec):
        """The configured PhotoSource (see beauty_pipeline.scraping.PhotoSource)."""
        if self.kind == "demo":
            return DemoPhotoSource(demo)
        if self.kind == "local":
            from beauty_pipeline.scraping import LocalFolderSource

            if not self.local_dir:
                raise PipelineError("photo source 'local' needs local_dir (or "
                                 "BEAUTY_PIPELINE_LOCAL_PHOTOS): a folder with one folder a person")
            return LocalFolderSource(self.local_dir)
        if self.kind == "bing":
            from beauty_pipeline.scraping import BingSource

            return BingSource(limit=self.bing_limit, extra_terms=self.bing_extra_terms,
                              timeout=self.bing_timeout_s, max_bytes=self.bing_max_bytes,
                              retries=self.bing_retries, base_url=self.bing_base_url,
                              allow_private=self.allow_private_hosts)
        raise PipelineError(f"unknown photo source {self.kind!r}; expected one of {PHOTO_SOURCES}")
