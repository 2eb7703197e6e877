"""One real study for the real-data tests (test_real_study, test_transfer_real): public figures'
web crops against FairFace through `beauty-pipeline study`, four figures held out of the study as
its `--transfer-photos`, then the same study again with match_quality as a controlled experiment.
One study serves both test modules: each costs minutes on a 2-core CI machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from conftest import ranking_from_labels, require_shared
from dagster import AssetCheckKey, AssetKey, DagsterInstance

MODELS = ("resnet18", "fairface_resnet34")
BACKGROUNDS = ("original", "white")
TRANSFER = ("Barack_Obama", "Daniel_Radcliffe", "Jessica_Alba", "Tom_Hanks")


def study_yaml(root: Path, crops: Path, fairface: Path, yunet: Path) -> str:
    """The run as a user writes it: one YAML file with the flags' keys."""
    return "\n".join([
        f"home: {root / 'home'}", f"ranking: {root / 'ranking.csv'}", f"photos: {crops}",
        f"transfer-photos: {root / 'transfer'}", f"fairface: {fairface}", "limit-ordinary: 300",
        f"models: [{', '.join(MODELS)}]", f"backgrounds: [{', '.join(BACKGROUNDS)}]",
        "image_size: 48", "epochs: 3", "backbone_epochs: 2", "seeds: 1",
        f"detector_model: {yunet}", "segmenter: grabcut", ""])


def audits(home: Path) -> dict[str, dict]:
    folder = home / "manifests" / "shortcut_audit"
    return {f"{m}/{b}": json.loads((folder / f"{b}__{m}.json").read_text())
            for m in MODELS for b in BACKGROUNDS if (folder / f"{b}__{m}.json").exists()}


def latest_check(home: Path, name: str):
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        key = AssetCheckKey(AssetKey("face_dataset"), name)
        [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        return record.event.dagster_event.event_specific_data


def run_real_study(root: Path) -> dict:
    """The study, what it printed and wrote, then the match_quality rerun's audit and check."""
    crops = require_shared("data", "celebrity_crops_glint")
    fairface = require_shared("data", "fairface_margin025")
    yunet = require_shared("models", "face_detection_yunet_2026may.onnx")
    labels = pd.read_csv(crops / "labels.csv")
    held = [p for p in TRANSFER if (crops / p).is_dir()]
    folders = labels["file"].str.split("/").str[0]
    ranking_from_labels(labels[~folders.isin(held)], root / "ranking.csv", "public_figures")
    for person in held:  # copies: the photo source does not follow linked folders
        shutil.copytree(crops / person, root / "transfer" / person)
    (root / "study.yaml").write_text(study_yaml(root, crops, fairface, yunet))
    command = [sys.executable, "-m", "beauty_pipeline.cli", "study", "--config",
               str(root / "study.yaml")]
    started = time.perf_counter()
    first = subprocess.run(command, capture_output=True, text=True, timeout=1500)
    minutes = (time.perf_counter() - started) / 60
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-4000:]
    home = root / "home"
    found = {"stdout": first.stdout, "minutes": minutes, "audits": audits(home), "home": home,
             "held": held, "quality": latest_check(home, "quality_parity"),
             "study": pd.read_parquet(home / "manifests" / "face_dataset" / "latest.parquet"),
             "report_html": (home / "outputs" / "report" / "study_report.html").read_text(),
             "transfer_photos": sum(len(list((root / "transfer" / p).iterdir())) for p in held)}
    print(f"\nreal study: {minutes:.1f} min\n" + first.stdout[first.stdout.find("model/back"):])
    # the controlled experiment: both classes through the same degradation, the same training
    matched = subprocess.run([*command, "--match-quality", "--models", "resnet18",
                              "--backgrounds", "original"], capture_output=True, text=True,
                             timeout=1500)
    assert matched.returncode == 0, matched.stdout[-2000:] + matched.stderr[-4000:]
    found["matched_audit"] = audits(home)["resnet18/original"]
    found["matched_quality"] = latest_check(home, "quality_parity")
    found["matched_stdout"] = matched.stdout
    print("with match_quality:\n" + matched.stdout[matched.stdout.find("model/back"):])
    return found
