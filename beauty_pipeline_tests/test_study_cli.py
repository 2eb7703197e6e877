"""`beauty-pipeline study`: options from flags and YAML, and real runs on copied public-figure
photos that continue after Ctrl-C and rerun only what a new photo changes."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import ranking_from_labels, require_shared

from beauty_pipeline.cli import parse_args
from beauty_pipeline.errors import PipelineError
from beauty_pipeline.fairface import first_per_split
from beauty_pipeline.study_options import read_config_file, study_options

PERSONS = ("Barack_Obama", "Drew_Barrymore", "Will_Smith", "Victoria_Beckham", "Daniel_Radcliffe")


def options(tmp_path, *flags):
    (tmp_path / "photos").mkdir(exist_ok=True)
    (tmp_path / "ff").mkdir(exist_ok=True)
    return study_options(parse_args(["study", "--photos", str(tmp_path / "photos"),
                                     "--fairface", str(tmp_path / "ff"), *flags]))


def test_yaml_supplies_options_and_flags_win(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text("models: [resnet18, fairface_resnet34]\nimage-size: 64\nepochs: 4\n"
                      "match_quality: true\nmatch_demographics: gender\n")
    chosen = options(tmp_path, "--config", str(config), "--epochs", "2")
    assert chosen.models == ("resnet18", "fairface_resnet34")
    assert (chosen.image_size, chosen.epochs) == (64, 2)
    assert chosen.match_quality and chosen.match_demographics == "gender"
    assert options(tmp_path).backgrounds == ("original", "white", "random")  # the study's


@pytest.mark.parametrize("text, message", [
    ("epoch: 3\n", "unknown keys ['epoch']"),
    ("epochs: 2.5\n", "is not a whole number"),
    ("models: 7\n", "must be a list of names"),
    ("- a\n- b\n", "must be a mapping"),
    ("match_demographics: race\n", "choose from"),
])
def test_bad_yaml_is_a_clear_error(tmp_path, text, message):
    config = tmp_path / "study.yaml"
    config.write_text(text)
    with pytest.raises(PipelineError, match=re.escape(message)):
        options(tmp_path, "--config", str(config))


def test_exactly_one_photo_source_and_known_models(tmp_path, capsys):
    from beauty_pipeline.cli import main

    (tmp_path / "ff").mkdir()
    assert main(["study", "--bing", "--photos", str(tmp_path), "--fairface",
                 str(tmp_path / "ff")]) == 2
    assert "exactly one photo source" in capsys.readouterr().err
    assert main(["study", "--photos", str(tmp_path / "nope"), "--fairface",
                 str(tmp_path / "ff")]) == 2
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(PipelineError, match="out of range"):
        options(tmp_path, "--epochs", "0")
    (tmp_path / "empty.yaml").write_text("")
    assert read_config_file(tmp_path / "empty.yaml") == {}


def test_fairface_limit_keeps_train_and_val_in_proportion():
    labels = pd.DataFrame({"file": [f"f{i}" for i in range(100)],
                           "fairface_split": ["train"] * 80 + ["val"] * 20})
    kept = first_per_split(labels, 10)
    assert kept["fairface_split"].value_counts().to_dict() == {"train": 8, "val": 2}
    assert kept["file"].tolist() == [*(f"f{i}" for i in range(8)), "f80", "f81"]
    assert len(first_per_split(labels, 500)) == 100


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    """Five public figures (copied: the local source refuses links) and 150 FairFace faces."""
    crops = require_shared("data", "celebrity_crops_glint")
    fairface = require_shared("data", "fairface_margin025")
    yunet = require_shared("models", "face_detection_yunet_2026may.onnx")
    root = tmp_path_factory.mktemp("study_cli")
    labels = pd.read_csv(crops / "labels.csv")
    chosen = labels[labels["file"].str.split("/").str[0].isin(PERSONS)]
    held_back = {}
    for person, rows in chosen.groupby(labels["file"].str.split("/").str[0]):
        files = sorted(rows["file"])
        held_back[person] = files[-1]
        for name in files[:-1]:
            (root / "photos" / person).mkdir(parents=True, exist_ok=True)
            shutil.copy(crops / name, root / "photos" / name)
    ranking_from_labels(chosen, root / "ranking.csv")
    command = [sys.executable, "-m", "beauty_pipeline.cli", "study", "--home", str(root / "home"),
               "--ranking", str(root / "ranking.csv"), "--photos", str(root / "photos"),
               "--fairface", str(fairface), "--limit-ordinary", "150", "--models", "resnet18",
               "--backgrounds", "original", "--image-size", "32", "--epochs", "6",
               "--backbone-epochs", "1", "--seeds", "1", "--detector-model", str(yunet),
               "--segmenter", "grabcut", "--workers", "2"]
    return root, command, held_back, crops


def reused(output: str) -> int:
    found = re.search(r"(\d+) steps done before were reused", output)
    return int(found.group(1)) if found else 0


def run(command, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)


def test_ctrl_c_keeps_finished_work_and_the_rerun_continues(small_study):
    root, command, held_back, crops = small_study
    checkpoints = root / "home" / "checkpoints" / "resnet18__original"  # not the backbone's
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 900
    while not list(checkpoints.rglob("epoch_*.pt")) and process.poll() is None:
        assert time.monotonic() < deadline, "no epoch checkpoint within 15 min"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 130, output[-3000:]
    assert "run the same command again to continue" in output
    assert not list((root / "home").rglob("*.tmp")), "Ctrl-C left half-written files"
    ledger = json.loads((root / "home" / "study-steps.json").read_text())
    assert {f"person:{p.lower().replace('_', '-')}" for p in PERSONS} <= set(ledger)
    assert "model:resnet18/original" not in ledger

    again = run(command, root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert reused(again.stdout) == len(PERSONS) + 4  # persons, FairFace, set, backbone, variant
    row = next(line for line in again.stdout.splitlines() if line.startswith("resnet18/original"))
    accuracy, low, high = map(float, re.search(
        r"(\d\.\d+) \[(\d\.\d+),(\d\.\d+)\]", row).groups())
    # two or so test celebrities: the interval (t with identities - 1 degrees of freedom) is wide
    assert 0.0 <= low <= accuracy <= high <= 1.0 and high - low > 0
    for place in ("study_report.html", "mlflow ui --backend-store-uri", "dagster dev"):
        assert place in again.stdout

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'home' / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([experiment.experiment_id], "tags.kind = 'classifier'")
    assert len(runs) == 1 and int(runs[0].data.tags["resumed_from_epoch"]) >= 1
    history = client.get_metric_history(runs[0].info.run_id, "val_accuracy")
    assert sorted(m.step for m in history) == list(range(1, 7))


def test_rerun_reuses_everything_and_a_new_photo_reruns_its_person_and_downstream(small_study):
    root, command, held_back, crops = small_study
    finished = run(command, root)  # the study done once (all reused after the Ctrl-C test)
    assert finished.returncode == 0, finished.stderr[-3000:]
    same = run(command, root)
    assert same.returncode == 0, same.stderr[-3000:]
    ledger = json.loads((root / "home" / "study-steps.json").read_text())
    assert reused(same.stdout) == len(ledger)

    person = "Will_Smith"
    shutil.copy(crops / held_back[person], root / "photos" / held_back[person])
    changed = run(command, root)
    assert changed.returncode == 0, changed.stderr[-3000:]
    # the other four persons and the FairFace faces are reused; the rest depends on the new photo
    assert reused(changed.stdout) == len(PERSONS) - 1 + 1


def test_paths_are_made_absolute_for_the_env_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ranking.csv").write_text("name\n")
    chosen = options(tmp_path, "--ranking", "ranking.csv")
    assert chosen.ranking == str(tmp_path / "ranking.csv")
    assert options(tmp_path, "--ranking", "https://example.org/r.csv").ranking == \
        "https://example.org/r.csv"


def test_epochs_checkpointed_but_never_logged_reach_mlflow(tmp_path):
    """Killed between an epoch's checkpoint and its MLflow call: the resumed run logs it after."""
    import mlflow

    from beauty_pipeline.assets.models import log_unlogged_epochs
    from beauty_pipeline.training.loop import EpochMetrics

    history = [EpochMetrics(e, 0.5, 0.6, 0.5, 0.6, 0.5, 0.1 * e, 1.0, 10.0) for e in (1, 2, 3)]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run() as run:
            mlflow.log_metrics({"val_accuracy": 0.2}, step=2)
            log_unlogged_epochs(run.info.run_id, "", history)
        values = {m.step: m.value for m in
                  mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_accuracy")}
    finally:
        mlflow.set_tracking_uri("")
    assert values == {1: pytest.approx(0.1), 2: pytest.approx(0.2), 3: pytest.approx(0.3)}


def test_an_audit_method_change_reruns_the_audit_steps_and_no_data_step(monkeypatch):
    from beauty_pipeline.assets import common
    from beauty_pipeline.data import counterfactual
    from beauty_pipeline.study_run import PER_MODEL_ASSETS, PERSON_ASSETS

    data_step, model_step = common.step_code_version(PERSON_ASSETS), common.step_code_version(
        PER_MODEL_ASSETS)
    assert data_step == common.CODE_VERSION  # unchanged: existing ledgers keep their data steps
    monkeypatch.setattr(common, "AUDIT_CODE_VERSION", "9.9.9")
    assert common.step_code_version(PER_MODEL_ASSETS) not in (model_step, data_step)
    assert common.step_code_version(PERSON_ASSETS) == data_step
    assert common.step_code_version(["face_dataset"]) == data_step
    # a changed counterfactual set rebuilds the variants (whose training images stay the same)
    variant_step = common.step_code_version(["face_dataset_variant"])
    monkeypatch.setattr(counterfactual, "COUNTERFACTUAL_SETS_VERSION", "99")
    assert common.step_code_version(["face_dataset_variant"]) != variant_step
    assert common.step_code_version(["face_dataset"]) == data_step


def test_step_fingerprints_ignore_the_demo_and_speed_settings(tmp_path, monkeypatch):
    """A real study's steps keep their fingerprint when the demo's defaults or --workers change,
    and each step counts only the settings it reads: a new detector reruns the face steps only."""
    from dagster import instance_for_test

    from beauty_pipeline.study_run import Steps, StudyPlan

    face_steps = ("celebrity_photos", "celebrity_faces")
    model_steps = ("classifier", "gradcam", "shortcut_audit")

    def digests(*flags):
        plan = StudyPlan(options(tmp_path, "--home", str(tmp_path / "home"), *flags))
        steps = Steps(instance, plan, ledger=None)
        return {keys: steps.digest(keys, None, (), None)
                for keys in (face_steps, ("fairface_faces",), model_steps)}

    with instance_for_test() as instance:
        before = digests()
        monkeypatch.setenv("BEAUTY_PIPELINE_DEMO_PERSONS", "999")  # the demo's size changed
        assert digests() == before
        assert digests("--workers", "7") == before
        detector = tmp_path / "other_detector.onnx"
        detector.write_bytes(b"another detector")
        changed = digests("--detector-model", str(detector))
        assert changed[face_steps] != before[face_steps]
        assert changed[model_steps] == before[model_steps]
        assert digests("--epochs", "3")[model_steps] != before[model_steps]
