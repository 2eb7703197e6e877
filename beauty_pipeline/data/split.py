"""The balanced study set: identity-grouped split, flip upsampling of celebrity train, balancing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from beauty_pipeline.data.demographics import match_ordinary
from beauty_pipeline.errors import PipelineError
from beauty_pipeline.settings import CLASS_NAMES
from beauty_pipeline.storage import ImageStore


@dataclass(frozen=True)
class SplitSettings:
    """How the study set is drawn; the seed makes it reproducible."""

    test_fraction: float = 0.2
    val_fraction: float = 0.1  # identity-grouped, carved from train: for anything tuned
    seed: int = 0
    flip_upsample: bool = True
    balance: bool = True
    fairface_val_only_in_test: bool = False  # the official checkpoint was trained on train
    match_attributes: tuple[str, ...] = ()  # ordinary sampled to the celebrity mix per split


def maybe_seen_by_official_checkpoint(frame: pd.DataFrame) -> pd.Series:
    """FairFace images not known to be from val: FairFace's published ResNet-34 was trained on
    train, so with that checkpoint they must stay out of the test side."""
    source = frame["source"].astype(str) if "source" in frame else pd.Series("", index=frame.index)
    split = frame["fairface_split"].fillna("").astype(str) if "fairface_split" in frame else \
        pd.Series("", index=frame.index)
    return (source == "fairface") & (split != "val")


def leakage_groups(frame: pd.DataFrame, duplicate_group: pd.Series | None = None) -> np.ndarray:
    """Connected components of 'same person' and 'near-duplicate': none may straddle the split."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    persons = frame["person"].astype(str).to_numpy()
    for person in persons:
        find(f"p:{person}")
    if duplicate_group is not None:
        for person, group in zip(persons, duplicate_group.to_numpy(), strict=True):
            a, b = find(f"p:{person}"), find(f"d:{group}")
            if a != b:
                parent[b] = a
    roots = [find(f"p:{person}") for person in persons]
    _, codes = np.unique(np.array(roots), return_inverse=True)
    return codes


SPLITS = ("train", "val", "test")


# The audit swaps backgrounds between identities of a class: test needs two of each class.
MIN_TEST_GROUPS = 2


def grouped_split(frame: pd.DataFrame, groups: np.ndarray, settings: SplitSettings) -> pd.Series:
    """Assign whole groups per class to test, then val, until each holds about its fraction."""
    rng = np.random.default_rng(settings.seed)
    split = pd.Series("train", index=frame.index)
    barred = np.unique(groups[maybe_seen_by_official_checkpoint(frame).to_numpy()]) \
        if settings.fairface_val_only_in_test else np.array([], dtype=groups.dtype)
    for looks in sorted(frame["looks"].unique()):
        in_class = (frame["looks"] == looks).to_numpy()
        class_groups = np.unique(groups[in_class])
        rng.shuffle(class_groups)
        assigned: set = set()
        for side, fraction in (("test", settings.test_fraction), ("val", settings.val_fraction)):
            target, taken, count = fraction * in_class.sum(), 0, 0
            floor = MIN_TEST_GROUPS if side == "test" else 0
            for group in class_groups:
                if taken >= target and count >= floor:
                    break
                if group in assigned or (side == "test" and group in barred):
                    continue
                if len(class_groups) - len(assigned) <= 1:
                    break  # the class's last group stays in train
                assigned.add(group)
                count += 1
                members = groups == group
                split[members] = side
                taken += members[in_class].sum()
    val = (split == "val").to_numpy()
    if val.any() and frame.loc[val, "looks"].nunique() < 2:  # too few groups: no val rather
        split[val] = "train"                                 # than a one-class val
    return split


def flip_horizontal(frame: pd.DataFrame, store: ImageStore) -> pd.DataFrame:
    """Mirrored copies (image, masks and face box) stored as derived images."""
    rows = []
    for row in frame.itertuples(index=False):
        record = row._asdict()
        image = store.load(row.image_key)
        width = image.shape[1]
        record["image_key"] = store.put_array(image[:, ::-1])
        for column in ("face_mask_key", "person_mask_key"):
            if record.get(column):
                record[column] = store.put_array(store.load(record[column], "L")[:, ::-1])
        if not np.isnan(record["face_x0"]):
            record["face_x0"], record["face_x1"] = width - row.face_x1, width - row.face_x0
        record["flipped"] = True
        record["source_image_key"] = row.image_key
        rows.append(record)
    return pd.DataFrame(rows, columns=list(frame.columns) + ["flipped", "source_image_key"])


def balance_split(part: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Downsample the larger class at random to the size of the smaller one."""
    counts = part["looks"].value_counts()
    if len(counts) < 2:
        raise ValueError(f"split has a single class ({dict(counts)}); need both to balance")
    smallest = counts.min()
    keep = [grp.iloc[rng.permutation(len(grp))[:smallest]] for _, grp in part.groupby("looks")]
    return pd.concat(keep)


def build_study_set(faces: pd.DataFrame, store: ImageStore, settings: SplitSettings,
                    duplicate_group: pd.Series | None = None,
                    report: dict | None = None) -> pd.DataFrame:
    """Split by identity, match the ordinary mix to the celebrity one per split (if asked),
    flip-upsample celebrity train only, then balance each side; report gets the matching's record."""
    if faces.empty:
        raise ValueError("no faces to build the study set from")
    faces = faces.reset_index(drop=True)
    groups = leakage_groups(faces, duplicate_group)
    for looks, name in enumerate(CLASS_NAMES):
        persons = faces.loc[faces["looks"] == looks, "person"].nunique()
        if persons < MIN_TEST_GROUPS + 1:
            raise PipelineError(
                f"the {name} class has {persons} person(s) with kept faces "
                f"({int((faces['looks'] == looks).sum())} images); a split by identity needs at "
                f"least {MIN_TEST_GROUPS + 1} (train, and {MIN_TEST_GROUPS} in test so that "
                f"backgrounds can be swapped between identities): see the drop reasons of "
                f"{'celebrity_faces' if looks else 'fairface_faces'}")
    faces = faces.assign(leak_group=groups, split=grouped_split(faces, groups, settings),
                         flipped=False, source_image_key=faces["image_key"])
    if settings.match_attributes:  # before flips and balancing: equal counts per stratum
        matched = match_ordinary(faces, settings.match_attributes, settings.seed + 2)
        faces = matched.faces.reset_index(drop=True)
        if report is not None:
            report["demographic_matching"] = matched.report
    rng = np.random.default_rng(settings.seed + 1)
    parts = []
    for side in SPLITS:
        part = faces[faces["split"] == side]
        if part.empty:
            continue
        if side == "train" and settings.flip_upsample:
            celebrity = part[part["looks"] == 1]
            deficit = int((part["looks"] == 0).sum() - len(celebrity))
            if deficit > 0 and len(celebrity):
                chosen = celebrity.iloc[rng.permutation(len(celebrity))[:deficit]]
                mirrored = flip_horizontal(chosen.drop(columns=["flipped", "source_image_key"]),
                                           store)
                part = pd.concat([part, mirrored], ignore_index=True)
        parts.append(balance_split(part, rng) if settings.balance else part)
    study = pd.concat(parts, ignore_index=True)
    order = {side: i for i, side in enumerate(SPLITS)}
    study = study.sort_values(["split", "looks", "image_key"], key=lambda c: c.map(order)
                              if c.name == "split" else c, kind="stable").reset_index(drop=True)
    study.insert(0, "sample_id", np.arange(len(study)))
    return study


def study_label_csv(study: pd.DataFrame) -> pd.DataFrame:
    """The study's own label format: file,age,gender,race,looks (looks 0 ordinary, 1 celebrity)."""
    return pd.DataFrame({
        "file": study["split"] + "/" + study["image_key"] + ".png",
        "age": study["age"], "gender": study["gender"], "race": study["race"],
        "looks": study["looks"].astype(int),
    })
