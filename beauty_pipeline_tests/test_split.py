"""The study set: identity-grouped split, celebrity-train-only flips, balanced classes."""

import numpy as np
import pandas as pd

from beauty_pipeline.data.schema import conform
from beauty_pipeline.data.split import (
    SplitSettings,
    build_study_set,
    leakage_groups,
    study_label_csv,
)
from beauty_pipeline.storage import ImageStore


def make_faces(store: ImageStore, persons: int = 10, photos: int = 5, ordinary: int = 80):
    rng = np.random.default_rng(0)
    rows = []
    for p in range(persons):
        for _ in range(photos):
            image = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            rows.append({"image_key": store.put_array(image), "person": f"star-{p}", "looks": 1,
                         "face_x0": 2.0, "face_y0": 3.0, "face_x1": 10.0, "face_y1": 12.0})
    for i in range(ordinary):
        image = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        rows.append({"image_key": store.put_array(image), "person": f"ordinary-{i}", "looks": 0,
                     "face_x0": 2.0, "face_y0": 3.0, "face_x1": 10.0, "face_y1": 12.0})
    return conform(pd.DataFrame(rows))


def test_no_person_on_both_sides_and_balanced(tmp_path):
    store = ImageStore(tmp_path)
    study = build_study_set(make_faces(store), store, SplitSettings(test_fraction=0.2, seed=3))
    sides = study.groupby("person")["split"].nunique()
    assert (sides == 1).all()
    counts = study.groupby(["split", "looks"]).size().unstack()
    assert (counts[0] == counts[1]).all()
    assert counts.loc["test"].sum() > 0


def test_flips_only_on_celebrity_train_and_mirror_box(tmp_path):
    store = ImageStore(tmp_path)
    study = build_study_set(make_faces(store), store, SplitSettings(seed=1))
    flipped = study[study["flipped"]]
    assert len(flipped) > 0
    assert set(flipped["split"]) == {"train"} and set(flipped["looks"]) == {1}
    row = flipped.iloc[0]
    original = store.load(row["source_image_key"])
    assert np.array_equal(store.load(row["image_key"]), original[:, ::-1])
    assert (row["face_x0"], row["face_x1"]) == (16 - 10.0, 16 - 2.0)
    # a mirrored twin never lands on the test side: its source is a train image too
    sources = study.set_index("image_key").loc[flipped["source_image_key"], "split"]
    assert set(sources) == {"train"}


def test_near_duplicates_join_the_same_side(tmp_path):
    store = ImageStore(tmp_path)
    faces = make_faces(store, persons=6, photos=3, ordinary=40)
    dup = pd.Series(np.arange(len(faces)))
    dup.iloc[0] = dup.iloc[len(faces) - 1] = -1  # a celebrity photo duplicates an ordinary one
    groups = leakage_groups(faces, dup)
    assert groups[0] == groups[len(faces) - 1]
    study = build_study_set(faces, store, SplitSettings(seed=0, balance=False), dup)
    persons = {faces.at[0, "person"], faces.at[len(faces) - 1, "person"]}
    assert study[study["person"].isin(persons)]["split"].nunique() == 1


def test_study_label_csv_format(tmp_path):
    store = ImageStore(tmp_path)
    study = build_study_set(make_faces(store), store, SplitSettings())
    labels = study_label_csv(study)
    assert list(labels.columns) == ["file", "age", "gender", "race", "looks"]
    assert set(labels["looks"]) == {0, 1}


def test_validation_split_is_identity_grouped_and_balanced(tmp_path):
    store = ImageStore(tmp_path)
    study = build_study_set(make_faces(store, persons=20, ordinary=160), store, SplitSettings(seed=2))
    assert set(study["split"]) == {"train", "val", "test"}
    assert (study.groupby("person")["split"].nunique() == 1).all()
    val = study[study["split"] == "val"]
    assert val["looks"].value_counts().nunique() == 1 and val["looks"].nunique() == 2
    assert not val["flipped"].any()  # mirrored copies are for train only


def test_too_few_groups_for_a_two_class_val_means_no_val(tmp_path):
    store = ImageStore(tmp_path)
    study = build_study_set(make_faces(store, persons=3, ordinary=20), store,
                            SplitSettings(seed=0, test_fraction=0.34))
    assert "val" not in set(study["split"])
