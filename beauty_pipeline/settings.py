"""Typed settings shared by the CLI, the resources and the domain code, overridable by env vars."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from beauty_pipeline.errors import PipelineError

HOME_ENV = "BEAUTY_PIPELINE_HOME"
MLFLOW_URI_ENV = "BEAUTY_PIPELINE_MLFLOW_URI"
DEVICE_ENV = "BEAUTY_PIPELINE_DEVICE"
DEVICE_HELP = "torch device for training, Grad-CAM and the audit: auto | cpu | cuda | cuda:N"


CPUS_ENV = "BEAUTY_PIPELINE_CPUS"


def available_cpus() -> int:
    """Cores this process may use: $BEAUTY_PIPELINE_CPUS (a pod's CPU request, set through the
    downward API), else the CPU affinity mask, else every core. Worker pools size themselves by
    it, so a step in a 4-CPU pod on a 64-core node starts 4 workers, not 64."""
    value = os.environ.get(CPUS_ENV, "").strip()
    if value:
        try:
            cores = int(float(value))
        except ValueError:
            raise PipelineError(f"{CPUS_ENV}={value!r}: expected a whole number of cores") from None
        if cores < 1:
            raise PipelineError(f"{CPUS_ENV}={value!r}: at least 1 core")
        return cores
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def checked_device(name: str) -> str:
    """The --device value when it is auto, cpu, cuda or cuda:N; else a PipelineError saying so."""
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", name or ""):
        raise PipelineError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N (e.g. cuda:1)")
    return name

CLASS_NAMES = ("ordinary", "celebrity")  # looks = 0 / 1, the study's label order
BACKGROUNDS = ("original", "white", "random")
MODELS = ("fairface_resnet34", "resnet18", "resnet34", "resnet50", "efficientnet_b0")
# The demo's default pair: the study's from-scratch baseline and its FairFace transfer model
# ("Custom Model"); --models adds the rest (10 min on 2 cores buys two models x three backgrounds).
DEMO_MODELS = ("fairface_resnet34", "resnet18")


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Resolve the data root: explicit value, then the env var, then ./data."""
    value = explicit or os.environ.get(HOME_ENV) or "data"
    return Path(value).expanduser().resolve()


def default_mlflow_uri(root: Path) -> str:
    """MLflow's SQLite store inside the data root unless the env var points at a server."""
    return os.environ.get(MLFLOW_URI_ENV) or f"sqlite:///{root / 'mlflow.db'}"


# The smallest value each numeric setting accepts (0 epochs, batch 0 or a 0-pixel image make no run).
MINIMUMS = {"image_size": 8, "epochs": 1, "batch_size": 1, "backbone_epochs": 1,
            "learning_rate": 1e-12, "seeds": 1}


@dataclass(frozen=True)
class TrainSettings:
    """The study's training settings (Adam, lr 1e-4, 10 epochs, batch 32, 224 px) as defaults."""

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-4
    image_size: int = 224
    seed: int = 0
    device: str = field(default_factory=lambda: os.environ.get(DEVICE_ENV, "auto"))
    amp: bool = True
    channels_last: bool = True
    threads: int = 0  # 0 = torch default
    eval_batch_size: int = 0  # 0 = max(batch, 64) on the CPU; on CUDA as large as memory allows

    def __post_init__(self):
        for name in ("epochs", "batch_size", "image_size", "learning_rate"):
            value, floor = getattr(self, name), MINIMUMS[name]
            if not isinstance(value, int | float) or value != value or value < floor:
                raise PipelineError(f"training setting {name}={value!r} is out of range: it must "
                                    f"be at least {floor}; set it to e.g. "
                                    f"{getattr(TrainSettings, name)}")


PROFILE_ENV = "BEAUTY_PIPELINE_PROFILE"
FAIRFACE_DIR_ENV = "BEAUTY_PIPELINE_FAIRFACE_DIR"
FAIRFACE_CHECKPOINT_ENV = "BEAUTY_PIPELINE_FAIRFACE_CHECKPOINT"


@dataclass(frozen=True)
class Profile:
    """Defaults for every stage: 'demo' runs offline on synthetic data, 'study' is the real study."""

    name: str
    ranking: str            # "demo", "" (the packaged list), or a path / http(s) URL
    photo_source: str       # demo | local | bing
    ordinary_source: str    # demo | fairface
    face_detector: str      # known (source supplies the face box) | yunet
    segmenter: str          # auto | known | rembg | grabcut
    image_size: int
    epochs: int
    batch_size: int
    backbone_epochs: int
    learning_rate: float
    seeds: int  # training repeats per classifier partition


PROFILES = {
    # tiny synthetic images train from scratch in minutes only with a larger step than the study's
    "demo": Profile("demo", "demo", "demo", "demo", "known", "auto", 48, 10, 16, 3, 1e-3, 1),
    "study": Profile("study", "", "bing", "fairface", "yunet", "rembg", 224, 10, 32, 10, 1e-4, 3),
}


def env_number(name: str, kind: type, default, minimum=None):
    """A numeric env var, read where it is used: a bad value is one clear PipelineError."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise PipelineError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number; "
                            f"set it to e.g. {default} or unset it") from None
    if value != value or (minimum is not None and value < minimum):  # NaN, or below the floor
        raise PipelineError(f"{name}={raw!r} is out of range: it must be at least {minimum}; "
                            f"set it to e.g. {default} or unset it")
    return value


def active_profile() -> Profile:
    """The profile named by BEAUTY_PIPELINE_PROFILE (default demo) with numeric env overrides."""
    name = os.environ.get(PROFILE_ENV, "demo")
    if name not in PROFILES:
        raise PipelineError(f"{PROFILE_ENV}={name!r} is not a profile; set one of {sorted(PROFILES)}")
    base = PROFILES[name]
    overrides = {}
    for field_name, kind in (("image_size", int), ("epochs", int), ("batch_size", int),
                             ("backbone_epochs", int), ("learning_rate", float), ("seeds", int)):
        overrides[field_name] = env_number(f"BEAUTY_PIPELINE_{field_name.upper()}", kind,
                                           getattr(base, field_name), MINIMUMS[field_name])
    return Profile(**{**base.__dict__, **overrides})
