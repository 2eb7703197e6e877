"""`--transfer-photos` on a real folder: four public figures of celebrity_crops_glint are held out
of the real study (real_study_support.py) and given as its transfer set; their figures must reach
the CLI table, the report and MLflow, and the verdict must carry the data set's confounds (web
crops vs FairFace)."""

import re

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def transfer_study(real_study):
    """resnet18's cells of the shared real study, as its first run left them."""
    if len(real_study["held"]) < 2:
        pytest.skip(f"fewer than two transfer figures in the crops: {real_study['held']}")
    audits = {cell.split("/")[1]: audit for cell, audit in real_study["audits"].items()
              if cell.startswith("resnet18/")}
    return {"stdout": real_study["stdout"], "home": real_study["home"], "audits": audits,
            "held": real_study["held"], "photos": real_study["transfer_photos"],
            "report_html": real_study["report_html"]}


def test_held_out_persons_are_scored_with_an_identity_interval(transfer_study):
    study = pd.read_parquet(transfer_study["home"] / "manifests" / "face_dataset" / "latest.parquet")
    held_keys = {p.lower().replace("_", "-") for p in transfer_study["held"]}
    assert not held_keys & set(study["person"])  # held out of the study
    faces = pd.read_parquet(transfer_study["home"] / "manifests" / "transfer_faces" /
                            "latest.parquet")
    kept = faces[faces["drop_reason"] == ""]
    assert set(faces["person"]) == {f"transfer:{k}" for k in held_keys}
    assert (faces["looks"] == 1).all() and len(faces) <= transfer_study["photos"]
    for background, audit in transfer_study["audits"].items():
        assert audit["transfer_images_celebrity"] == len(kept), background
        assert audit["transfer_identities_celebrity"] == len(held_keys)
        low, value, high = (audit["transfer_acc_celebrity_ci_low"],
                            audit["transfer_acc_celebrity"], audit["transfer_acc_celebrity_ci_high"])
        assert 0 <= low <= value <= high <= 1
        # the control: the study's own celebrity test photos, as hard to see as the transfer set
        low, value, high = (audit[f"transfer_control_acc_celebrity{s}"]
                            for s in ("_ci_low", "", "_ci_high"))
        assert 0 <= low <= value <= high <= 1
        assert "transfer_acc_ordinary" not in audit  # no --transfer-ordinary given
        assert "transfer_control_acc_ordinary" not in audit
    assert transfer_study["audits"]["original"]["transfer_segmenter"] == ""  # no mask needed
    if "white" in transfer_study["audits"]:
        assert transfer_study["audits"]["white"]["transfer_segmenter"].startswith("grabcut")


def test_figures_reach_the_table_the_report_and_mlflow(transfer_study):
    import mlflow

    stdout, home = transfer_study["stdout"], transfer_study["home"]
    header = next(line for line in stdout.splitlines() if line.startswith("model/background"))
    assert "transfer cele." in header and "t.control cele." in header
    for background, audit in transfer_study["audits"].items():
        row = next(line for line in stdout.splitlines()
                   if line.startswith(f"resnet18/{background}"))
        assert f"{audit['transfer_acc_celebrity']:.2f} [" in row
        assert row.rstrip().endswith(audit["verdict_label"])
    html = transfer_study["report_html"]
    assert "transfer: celebrity" in html and "Source transfer: celebrity photos" in html
    assert "control (own test photos as hard to see)" in html
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    for audit in transfer_study["audits"].values():
        run = client.get_run(audit["mlflow_run_id"])
        for name in ("transfer_acc_celebrity", "transfer_acc_celebrity_ci_low",
                     "transfer_acc_celebrity_ci_high", "transfer_control_acc_celebrity",
                     "transfer_control_acc_celebrity_ci_low",
                     "transfer_control_acc_celebrity_ci_high"):
            assert run.data.metrics[name] == pytest.approx(audit[name])
        assert run.data.tags["verdict"] == audit["verdict"]
        assert run.data.tags["verdict_label"] == audit["verdict_label"]
        assert run.data.tags["confounds"] != ""


def test_the_verdict_carries_the_sources_confounds(transfer_study):
    """Web crops against FairFace differ in face resolution (quality_parity warns on it on this
    data, test_real_study): the label names it, with its size, wherever the verdict is shown."""
    for background, audit in transfer_study["audits"].items():
        cues = [c["cue"] for c in audit["confounds"]]
        assert "face_px" in cues, (background, cues)
        if audit["verdict"] != "chance":
            assert re.fullmatch(re.escape(audit["verdict"]) + r" \(source-confounded: .+\)",
                                audit["verdict_label"])
            assert "face_px" in audit["verdict_label"]
        face_px = next(c for c in audit["confounds"] if c["cue"] == "face_px")
        assert face_px["numbers"]["smd"] < -1  # celebrities' faces are the smaller ones
    print({b: (round(a["acc_original"], 3), round(a["transfer_acc_celebrity"], 3),
               a["verdict_label"]) for b, a in transfer_study["audits"].items()})
