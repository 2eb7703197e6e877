"""Options of `beauty-pipeline study`: the same keys as flags and in a YAML file, checked once."""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from beauty_pipeline.data.demographics import MATCH_MODES
from beauty_pipeline.errors import PipelineError
from beauty_pipeline.resources.face_stage import YUNET_ENV
from beauty_pipeline.settings import (
    BACKGROUNDS,
    DEVICE_HELP,
    FAIRFACE_CHECKPOINT_ENV,
    FAIRFACE_DIR_ENV,
    HOME_ENV,
    MINIMUMS,
    MODELS,
    PROFILES,
    checked_device,
)

STUDY = PROFILES["study"]
SEGMENTERS = ("rembg", "grabcut", "auto")
PREPROCESSING = ("uniform", "study")
PATH_OPTIONS = ("ranking", "photos", "fairface", "fairface_checkpoint", "detector_model",
                "rembg_model_path", "transfer_photos", "transfer_ordinary")


def _opt(default, help: str, **extra):
    """A dataclass field carrying its flag's help text (and choices) for the parser."""
    if isinstance(default, tuple | list):
        return field(default_factory=lambda: tuple(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class StudyOptions:
    """Everything one study run needs; defaults are the study's (224 px, 10 epochs, 3 seeds)."""

    home: str = _opt("", "data root: images, manifests, Dagster and MLflow stores "
                         f"(default: ${HOME_ENV} or ./study-data)")
    ranking: str = _opt("", "ranking CSV path or http(s) URL; empty = the packaged 2024 lists")
    photos: str = _opt("", "local photo folder with one sub-folder per person")
    bing: bool = _opt(False, "download photos from Bing instead of --photos")
    transfer_photos: str = _opt("", "source-transfer test: photos of celebrity-class people from "
                                    "another source, one sub-folder per person (as --photos)")
    transfer_ordinary: str = _opt("", "source-transfer test the other way: ordinary-class photos "
                                      "from another source, one sub-folder per person")
    fairface: str = _opt("", f"FairFace folder with its label CSVs (default ${FAIRFACE_DIR_ENV})")
    fairface_checkpoint: str = _opt("", "the official FairFace ResNet-34 checkpoint (.pt); the "
                                        "ordinary test side is then FairFace val only")
    limit_ordinary: int = _opt(0, "use at most this many FairFace images, in proportion from "
                                  "train and val (0 = all)")
    models: tuple[str, ...] = _opt(MODELS, "classifiers to train", choices=MODELS)
    backgrounds: tuple[str, ...] = _opt(BACKGROUNDS, "background variants", choices=BACKGROUNDS)
    image_size: int = _opt(STUDY.image_size, "training image side in pixels")
    epochs: int = _opt(STUDY.epochs, "classifier epochs")
    backbone_epochs: int = _opt(STUDY.backbone_epochs,
                                "FairFace pre-training epochs (without --fairface-checkpoint)")
    batch_size: int = _opt(STUDY.batch_size, "training batch size")
    learning_rate: float = _opt(STUDY.learning_rate, "Adam learning rate")
    seeds: int = _opt(STUDY.seeds, "training repeats per model x background (mean and spread)")
    seed: int = _opt(0, "first seed: split, sampling and training")
    detector_model: str = _opt("", f"local YuNet ONNX (default ${YUNET_ENV}, else downloaded and "
                                   "checksum-verified)")
    segmenter: str = _opt(STUDY.segmenter, "person segmentation for white/random backgrounds",
                          choices=SEGMENTERS)
    rembg_model_path: str = _opt("", "local ONNX that rembg loads as a custom model")
    preprocessing: str = _opt("uniform", "uniform: FairFace through the same face stage; study: "
                                         "FairFace crops as-is, as the study did",
                              choices=PREPROCESSING)
    match_quality: bool = _opt(False, "put both classes through the same degradation (face "
                                      "resolution, JPEG quality) before the split")
    match_demographics: str = _opt("none", "sample FairFace to the celebrities' mix per split: "
                                           "gender (from the ranking) or gender_age_race (needs "
                                           "--fairface-checkpoint for celebrity estimates)",
                                   choices=tuple(MATCH_MODES))
    workers: int = _opt(0, "face-stage processes (0 = one per core)")
    device: str = _opt("auto", DEVICE_HELP)

    def __post_init__(self):
        if bool(self.photos) == bool(self.bing):
            raise PipelineError("give exactly one photo source: --photos DIR (a folder per person) "
                                "or --bing")
        if not self.fairface:
            raise PipelineError(f"give --fairface DIR (a FairFace download with its label CSVs) "
                                f"or set {FAIRFACE_DIR_ENV}")
        for name in PATH_OPTIONS:  # absolute, so the env file works from any folder
            value = getattr(self, name)
            if value and not (name == "ranking" and "://" in value):
                object.__setattr__(self, name, str(Path(value).expanduser().resolve()))
        for name in ("photos", "fairface", "transfer_photos", "transfer_ordinary"):
            value = getattr(self, name)
            if value and not Path(value).expanduser().is_dir():
                raise PipelineError(f"--{name.replace('_', '-')} {value}: no such folder")
        for name in ("fairface_checkpoint", "detector_model", "rembg_model_path"):
            value = getattr(self, name)
            if value and not Path(value).expanduser().is_file():
                raise PipelineError(f"--{name.replace('_', '-')} {value}: no such file")
        for name in ("models", "backgrounds"):
            allowed = dict(MODELS=MODELS, BACKGROUNDS=BACKGROUNDS)[name.upper()]
            values = getattr(self, name)
            unknown = [v for v in values if v not in allowed]
            if not values or unknown:
                raise PipelineError(f"{name}: {unknown or 'none given'}; choose from "
                                    f"{', '.join(allowed)}")
        for name, floor in (*MINIMUMS.items(), ("limit_ordinary", 0), ("seed", 0),
                            ("workers", 0)):
            value = getattr(self, name)
            if value < floor:
                raise PipelineError(f"{name} = {value} is out of range: at least {floor}")
        checked_device(self.device)
        for name, allowed in (("segmenter", SEGMENTERS), ("preprocessing", PREPROCESSING),
                              ("match_demographics", tuple(MATCH_MODES))):
            if getattr(self, name) not in allowed:
                raise PipelineError(f"{name} = {getattr(self, name)!r}; choose from {allowed}")

    @property
    def root(self) -> Path:
        return Path(self.home or os.environ.get(HOME_ENV) or "study-data").expanduser().resolve()


OPTION_FIELDS = {f.name: f for f in fields(StudyOptions)}


def _default(name: str):
    f = OPTION_FIELDS[name]
    return f.default_factory() if f.default is MISSING else f.default


def add_study_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per option; unset flags stay None so a YAML file can supply them."""
    parser.add_argument("--config", help="YAML file with the same keys as these flags "
                                         "(flags given here win)")
    for name, f in OPTION_FIELDS.items():
        flag, default = f"--{name.replace('_', '-')}", _default(name)
        shown = " ".join(default) if isinstance(default, tuple) else default
        helptext = f"{f.metadata['help']} (default: {shown})" if default not in ("", False) \
            else f.metadata["help"]
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", default=None, help=helptext)
        elif isinstance(default, tuple):
            parser.add_argument(flag, nargs="+", choices=f.metadata.get("choices"), help=helptext,
                                metavar=name.upper().rstrip("S"))
        else:
            parser.add_argument(flag, type=type(default), help=helptext,
                                choices=f.metadata.get("choices"))


def read_config_file(path: str | Path) -> dict:
    """A YAML mapping of option keys (underscores or dashes); unknown keys are an error."""
    import yaml

    path = Path(path).expanduser()
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PipelineError(f"study config {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise PipelineError(f"study config {path} is not valid YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise PipelineError(f"study config {path} must be a mapping of option: value")
    values = {str(k).replace("-", "_"): v for k, v in loaded.items()}
    unknown = sorted(set(values) - set(OPTION_FIELDS))
    if unknown:
        raise PipelineError(f"study config {path}: unknown keys {unknown}; known keys: "
                            f"{', '.join(OPTION_FIELDS)}")
    return {k: _coerce(k, v, path) for k, v in values.items()}


def _coerce(name: str, value, path: Path):
    """A YAML value as the option's type: a list for models, a single name becomes a list."""
    default = _default(name)
    if isinstance(default, tuple):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise PipelineError(f"study config {path}: {name} must be a list of names")
        return tuple(items)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise PipelineError(f"study config {path}: {name} must be true or false")
        return value
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                (isinstance(default, int) and value != int(value)):
            raise PipelineError(f"study config {path}: {name} = {value!r} is not a "
                                f"{'whole ' if isinstance(default, int) else ''}number")
        return type(default)(value)
    return "" if value is None else str(value)


def study_options(args: argparse.Namespace) -> StudyOptions:
    """Defaults, then the YAML file, then the flags given on the command line."""
    values = read_config_file(args.config) if getattr(args, "config", None) else {}
    for name in OPTION_FIELDS:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = tuple(given) if isinstance(given, list) else given
    for name, env in (("fairface", FAIRFACE_DIR_ENV), ("fairface_checkpoint",
                                                       FAIRFACE_CHECKPOINT_ENV),
                      ("detector_model", YUNET_ENV)):
        values.setdefault(name, os.environ.get(env, ""))
    return StudyOptions(**values)
