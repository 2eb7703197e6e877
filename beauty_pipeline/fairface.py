"""Read the ordinary class from a FairFace download (folder + official label CSVs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

LABEL_FILES = ("fairface_label_train.csv", "fairface_label_val.csv")
LABEL_COLUMNS = ("file", "age", "gender", "race", "service_test")
# Spreadsheet-mangled ages seen in circulating copies of the label CSVs.
AGE_REPAIRS = {"9-Mar": "3-9", "03-Sep": "3-9", "19-Oct": "10-19", "Oct-19": "10-19"}


class FairFaceError(ValueError):
    """A FairFace folder that cannot be read as the official layout."""


def label_files(root: Path) -> list[Path]:
    """The official train/val label CSVs, or a single labels.csv in the same columns."""
    found = [root / name for name in LABEL_FILES if (root / name).is_file()]
    if not found and (root / "labels.csv").is_file():
        found = [root / "labels.csv"]
    if not found:
        raise FairFaceError(
            f"{root}: no {' / '.join(LABEL_FILES)} (or labels.csv) found; point fairface_dir at the "
            "folder holding the FairFace images and its label CSVs")
    return found


def split_of(label_file: Path, files: pd.Series) -> pd.Series:
    """FairFace's split per row (train | val | ''): from the official CSV's name, else from the
    image's folder (FairFace ships train/… and val/…). The official checkpoint saw train."""
    for split in ("train", "val"):
        if label_file.name == f"fairface_label_{split}.csv":
            return pd.Series(split, index=files.index)
    folder = files.map(lambda f: Path(f).parts[0] if len(Path(f).parts) > 1 else "")
    return folder.where(folder.isin(["train", "val"]), "")


def read_fairface(root: Path | str, limit: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows with an existing image file, plus the rows skipped and why (missing, bad labels)."""
    root = Path(root).expanduser()
    frames = []
    for path in label_files(root):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in LABEL_COLUMNS[:4] if c not in frame.columns]
        if missing:
            raise FairFaceError(f"{path.name} lacks columns {missing}; expected {LABEL_COLUMNS}")
        frames.append(frame.assign(fairface_split=split_of(path, frame["file"])))
    labels = pd.concat(frames, ignore_index=True)
    labels["age"] = labels["age"].replace(AGE_REPAIRS)
    exists = labels["file"].map(lambda f: (root / f).is_file())
    traversal = labels["file"].map(lambda f: ".." in Path(f).parts or Path(f).is_absolute())
    skipped = labels[~exists | traversal].assign(
        reason=["path outside the FairFace folder" if t else "image file missing"
                for t in traversal[~exists | traversal]])
    kept = labels[exists & ~traversal].reset_index(drop=True)
    if limit is not None:
        kept = kept.iloc[:limit]
    kept = kept.assign(path=[str(root / f) for f in kept["file"]])
    return kept, skipped.reset_index(drop=True)
