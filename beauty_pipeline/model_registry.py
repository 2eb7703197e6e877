"""MLflow's side of a trained classifier: the logged model, its registry entry carrying the audit's
verdict, the data sets it was trained and tested on, and the listing `beauty-pipeline models`
prints. Called from the Dagster assets; domain code never imports this."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from torch import nn

from beauty_pipeline.storage import frame_digest
from beauty_pipeline.training.packaged import CLASS_NAMES, PackagedClassifier

LATEST = "latest"  # MLflow's own reserved alias: always the newest version (never set here)
AUDITED_FACE = "audited-face"
MODEL_ARTIFACT = "model"
DATASET_COLUMNS = ("sample_id", "person", "variant_image_key", "split", "looks")


def registered_name(model: str, background: str) -> str:
    """One registered model per partition: `<model>-<background>`."""
    return f"{model}-{background}"


def requirements() -> list[str]:
    """Pinned versions of what the model needs besides beauty_pipeline itself (its pickled wrapper
    class lives there); given explicitly because MLflow's own inference loads the model in a
    subprocess, seconds per partition for nothing."""
    import timm
    import torchvision

    return [f"torch=={torch.__version__.split('+')[0]}",
            f"torchvision=={torchvision.__version__.split('+')[0]}", f"timm=={timm.__version__}",
            f"numpy=={np.__version__}"]


def log_classifier_model(network: nn.Module, image_size: int, registered_model: str,
                         test_accuracy: float):
    """Log the network, wrapped to take uint8 NHWC RGB at the training size, as the active run's
    `model` and register it as a new version of `registered_model` (`@latest` then resolves to it).

    Pickled, not MLflow 3's default torch.export (pt2): export costs seconds per model and fixes
    the batch size of a one-picture example. The input example is a mid-grey picture, never a
    study photo: photos stay in the data root."""
    packaged = PackagedClassifier(network.cpu().eval(), image_size, CLASS_NAMES).eval()
    example = np.full((1, image_size, image_size, 3), 128, dtype=np.uint8)
    with quiet_logger("mlflow.pytorch"):  # its pickle notice each time: the README says it once
        info = _log_model(packaged, example, registered_model, image_size)
    version = str(info.registered_model_version)
    MlflowClient().set_model_version_tag(registered_model, version, "test_accuracy",
                                         f"{test_accuracy:.6g}")
    return info


@contextmanager
def quiet_logger(name: str, level: int = logging.ERROR):
    """Raise one logger's level for the duration of a call."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def signature(image_size: int):
    """uint8 (-1, size, size, 3) in, float32 (-1, classes) logits out; written out rather than
    inferred, which would run the network once more (MLflow already runs it on the example)."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, image_size, image_size, 3))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(CLASS_NAMES)))]))


def _log_model(packaged: PackagedClassifier, example: np.ndarray, registered_model: str,
               image_size: int):
    """The one `log_model` call: the signature, the example, class names as model metadata."""
    return mlflow.pytorch.log_model(
        packaged, name=MODEL_ARTIFACT, signature=signature(image_size),
        input_example=example, registered_model_name=registered_model,
        pip_requirements=requirements(), serialization_format="pickle",
        metadata={"class_names": list(CLASS_NAMES), "input": "uint8 RGB NHWC",
                  "image_size": int(image_size), "output": "logits, index = class_names"})


def log_data_sets(manifest: pd.DataFrame, data_version: str, name: str,
                  source: Path | None) -> None:
    """The variant's manifest as two MLflow inputs of the active run: train+val rows (`training`,
    digest = the Dagster data version) and the test rows (`evaluation`)."""
    from mlflow.data import from_pandas

    columns = [c for c in DATASET_COLUMNS if c in manifest.columns]
    split = manifest["split"]
    train = manifest.loc[split.isin(["train", "val"]), columns].reset_index(drop=True)
    test = manifest.loc[split == "test", columns].reset_index(drop=True)
    where = str(source) if source is not None and source.exists() else None
    mlflow.log_input(from_pandas(train, source=where, targets="looks", name=f"{name}/train",
                                 digest=data_version), context="training")
    mlflow.log_input(from_pandas(test, source=where, targets="looks", name=f"{name}/test",
                                 digest=frame_digest(test)), context="evaluation")


def record_verdict(registered_model: str, version: str, verdict: str, named_families: str,
                   test_accuracy: float | None) -> dict[str, str]:
    """Tag an audited version with its verdict; `audited-face` follows the newest audited version
    whose verdict is `face`, and leaves when a newer version is not `face`. Returns its tags."""
    client = MlflowClient()
    tags = {"verdict": verdict, "named_families": named_families}
    if test_accuracy is not None:
        tags["test_accuracy"] = f"{test_accuracy:.6g}"
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, version, key, value)
    holder = alias_version(client, registered_model, AUDITED_FACE)
    if verdict == "face":
        if holder is None or int(holder) <= int(version):
            client.set_registered_model_alias(registered_model, AUDITED_FACE, version)
    elif holder is not None and int(holder) <= int(version):
        client.delete_registered_model_alias(registered_model, AUDITED_FACE)
    return tags


def alias_version(client: MlflowClient, registered_model: str, alias: str) -> str | None:
    """The version an alias points at, None when it is not set."""
    try:
        return str(client.get_model_version_by_alias(registered_model, alias).version)
    except MlflowException:
        return None


@dataclass(frozen=True)
class ModelRow:
    """One registered version as `beauty-pipeline models` prints it."""

    name: str
    version: int
    created_ms: int
    test_accuracy: str
    verdict: str
    named_families: str
    aliases: tuple[str, ...]
    run_id: str


def registered_versions(client: MlflowClient) -> list[ModelRow]:
    """Every version of every registered model, newest first (read from MLflow itself)."""
    rows, token = [], None
    while True:
        page = client.search_model_versions(max_results=1000, page_token=token)
        for v in page:
            rows.append(ModelRow(v.name, int(v.version), int(v.creation_timestamp or 0),
                                 v.tags.get("test_accuracy", ""), v.tags.get("verdict", "not audited"),
                                 v.tags.get("named_families", ""), tuple(sorted(v.aliases or ())),
                                 v.run_id or ""))
        token = page.token
        if not token:
            break
    newest = {}
    for row in rows:
        newest[row.name] = max(newest.get(row.name, 0), row.version)
    rows = [replace(r, aliases=tuple(sorted({*r.aliases, LATEST}))) if r.version == newest[r.name]
            else r for r in rows]
    return sorted(rows, key=lambda r: (-r.created_ms, r.name, -r.version))


def models_table(rows: list[ModelRow]) -> str:
    """A fixed-width table of registered versions for the terminal."""
    header = ("model", "version", "test_accuracy", "verdict", "named_families", "aliases")
    body = [(r.name, str(r.version), r.test_accuracy or "-", r.verdict, r.named_families or "-",
             ",".join(r.aliases) or "-") for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in [header, *body])


def list_registered(tracking_uri: str) -> str:
    """What `beauty-pipeline models` prints for one tracking store."""
    rows = registered_versions(MlflowClient(tracking_uri=tracking_uri,
                                            registry_uri=tracking_uri))
    if not rows:
        return f"no registered models in {tracking_uri}"
    return models_table(rows)
