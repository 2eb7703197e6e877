"""Shared test helpers: where ../shared (fixtures for real-data tests) lives, skip when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_ENV = "BEAUTY_PIPELINE_SHARED"


def shared_dir() -> Path | None:
    """../shared next to the repository (or $BEAUTY_PIPELINE_SHARED), None when it is absent."""
    explicit = os.environ.get(SHARED_ENV)
    candidate = Path(explicit) if explicit else Path(__file__).resolve().parents[2] / "shared"
    return candidate if (candidate / "data").is_dir() else None


def require_shared(*parts: str) -> Path:
    """A path inside ../shared, or skip the test saying what is missing."""
    root = shared_dir()
    if root is None:
        pytest.skip(f"../shared test fixtures not found (set {SHARED_ENV} to their folder)")
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared fixture {path} not found")
    return path


@pytest.fixture(scope="session")
def yunet_model() -> Path:
    """The YuNet ONNX test fixture from ../shared/models."""
    return require_shared("models", "face_detection_yunet_2026may.onnx")
