"""The FairFace reader on the real layout: labels, repaired ages, missing files recorded."""

import shutil

import pandas as pd
import pytest
from conftest import require_shared

from beauty_pipeline.data.schema import FAIRFACE_AGES, FAIRFACE_GENDERS, FAIRFACE_RACES
from beauty_pipeline.fairface import FairFaceError, read_fairface


def test_reads_fairface_margin025():
    root = require_shared("data", "fairface_margin025")
    kept, skipped = read_fairface(root)
    assert len(kept) == 1940 and skipped.empty
    assert set(kept["gender"]) == set(FAIRFACE_GENDERS)
    assert set(kept["race"]) == set(FAIRFACE_RACES)
    assert set(kept["age"]) <= set(FAIRFACE_AGES)
    assert kept["gender"].value_counts().to_dict() == {"Male": 970, "Female": 970}


def test_official_two_file_layout_with_mangled_ages_and_missing_files(tmp_path):
    root = require_shared("data", "fairface_margin025")
    labels = pd.read_csv(root / "labels.csv", dtype=str).head(6)
    for file in labels["file"]:
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / file, tmp_path / file)
    train = labels[labels["file"].str.startswith("train/")].copy()
    train.loc[train.index[0], "age"] = "9-Mar"
    extra = pd.DataFrame([{"file": "train/999999.jpg", "age": "20-29", "gender": "Male",
                           "race": "White", "service_test": "False"},
                          {"file": "../escape.jpg", "age": "20-29", "gender": "Male",
                           "race": "White", "service_test": "False"}])
    pd.concat([train, extra]).to_csv(tmp_path / "fairface_label_train.csv", index=False)
    labels[labels["file"].str.startswith("val/")].to_csv(tmp_path / "fairface_label_val.csv",
                                                         index=False)
    kept, skipped = read_fairface(tmp_path)
    assert len(kept) == 6
    assert kept.loc[kept["file"] == train["file"].iloc[0], "age"].item() == "3-9"
    assert sorted(skipped["reason"]) == ["image file missing", "path outside the FairFace folder"]


def test_folder_without_labels_is_a_clear_error(tmp_path):
    with pytest.raises(FairFaceError, match="fairface_label_train.csv"):
        read_fairface(tmp_path)
