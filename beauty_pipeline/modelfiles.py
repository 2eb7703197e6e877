"""Model files: a configured local path, else the cache, else a sha256-checked download."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from beauty_pipeline.errors import PipelineError
from beauty_pipeline.netio import NetworkError, read_body
from beauty_pipeline.settings import data_root
from beauty_pipeline.storage import atomic_write_bytes

MODELS_ENV = "BEAUTY_PIPELINE_MODELS"


class ModelFileError(PipelineError, RuntimeError):
    """A model file that is missing, corrupt or cannot be downloaded; says how to provide it."""


@dataclass(frozen=True)
class ModelSpec:
    """Where a model file comes from and what its bytes must hash to."""

    name: str           # human-readable, for messages
    filename: str       # name in the cache directory
    url: str
    sha256: str
    max_bytes: int = 500_000_000
    option: str = "model_path"  # the setting a user sets to give a local path


# OpenCV model zoo, YuNet 2023mar (232,589 bytes). The sha256 is the zoo's Git LFS object id.
YUNET = ModelSpec(
    name="YuNet face detector",
    filename="face_detection_yunet_2023mar.onnx",
    url="https://media.githubusercontent.com/media/opencv/opencv_zoo/main/models/"
        "face_detection_yunet/face_detection_yunet_2023mar.onnx",
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    max_bytes=5_000_000,
    option="detector_model_path",
)


def hopenet_state(path: str | os.PathLike) -> dict:
    """HopeNet weights as a plain state dict; a damaged file is a ModelFileError naming it."""
    from beauty_pipeline.training.checkpoints import CheckpointError, load_state

    try:
        state = load_state(Path(path).expanduser())
    except CheckpointError as error:
        raise ModelFileError(f"HopeNet weights (hopenet_weights): {error}") from error
    return {k.removeprefix("module."): v for k, v in state.items()
            if not k.removeprefix("module.").startswith("fc_finetune")}


def default_cache_dir() -> Path:
    """Model cache: $BEAUTY_PIPELINE_MODELS, else <data root>/models."""
    explicit = os.environ.get(MODELS_ENV)
    return Path(explicit).expanduser() if explicit else data_root() / "models"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def obtain_model_file(spec: ModelSpec, local_path: str | os.PathLike | None = None,
                      cache_dir: str | os.PathLike | None = None, timeout: float = 60.0,
                      verify_local: bool = False) -> Path:
    """Return a usable path for a model: local path, cached copy, or a fresh checked download."""
    if local_path:
        path = Path(local_path).expanduser()
        if not path.is_file():
            raise ModelFileError(f"{spec.name}: configured {spec.option} {path} does not exist")
        if verify_local and (actual := file_sha256(path)) != spec.sha256:
            raise ModelFileError(f"{spec.name}: {path} has sha256 {actual}, expected {spec.sha256}")
        return path
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    cached = cache / spec.filename
    if cached.is_file() and file_sha256(cached) == spec.sha256:
        return cached
    data = _download(spec, timeout)
    atomic_write_bytes(cached, data)
    return cached


def _download(spec: ModelSpec, timeout: float) -> bytes:
    """Download the model into memory with a size cap and check its sha256 before any write."""
    how = (f"Download {spec.url} on a machine with internet access (sha256 {spec.sha256}) and "
           f"set {spec.option} to its local path.")
    deadline = time.monotonic() + 10 * timeout  # the whole download, not each read
    try:
        with requests.get(spec.url, timeout=timeout, stream=True) as response:
            response.raise_for_status()
            data = read_body(response, spec.max_bytes, deadline, f"{spec.name} download")
    except NetworkError as error:
        raise ModelFileError(f"{spec.name}: {spec.url}: {error}; refusing it. {how}") from error
    except requests.RequestException as error:
        raise ModelFileError(f"{spec.name} ({spec.filename}) is not cached and could not be "
                             f"downloaded from {spec.url}: {error}. {how}") from error
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise ModelFileError(f"{spec.name}: the file downloaded from {spec.url} has sha256 "
                             f"{actual}, expected {spec.sha256}; nothing was saved. {how}")
    return data
