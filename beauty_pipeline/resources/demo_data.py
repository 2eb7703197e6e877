"""The synthetic demo study's size and seed, shared by the ranking, photo and ordinary sources."""

from __future__ import annotations

import os

from dagster import ConfigurableResource
from pydantic import Field

from beauty_pipeline.demo.synthetic import DemoSpec


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(f"BEAUTY_PIPELINE_DEMO_{name.upper()}", default))


class DemoDataResource(ConfigurableResource):
    """Synthetic faces with a planted background shortcut (used by the demo profile)."""

    image_size: int = Field(default_factory=lambda: _env_int("image_size", DemoSpec.image_size))
    persons: int = Field(default_factory=lambda: _env_int("persons", DemoSpec.persons))
    photos_per_person: int = Field(
        default_factory=lambda: _env_int("photos_per_person", DemoSpec.photos_per_person))
    ordinary: int = Field(default_factory=lambda: _env_int("ordinary", DemoSpec.ordinary))
    seed: int = Field(default_factory=lambda: _env_int("seed", DemoSpec.seed))
    shortcut: float = Field(default=DemoSpec.shortcut,
                            description="Chance a photo's background follows its class.")

    face_signal: float = Field(default=DemoSpec.face_signal,
                               description="Chance a face's look follows its class.")

    def spec(self) -> DemoSpec:
        return DemoSpec(self.image_size, self.persons, self.photos_per_person, self.ordinary,
                        self.seed, self.shortcut, self.face_signal)
