"""Read the ordinary class from a FairFace download (folder + official label CSVs)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from PIL import Image

from beauty_pipeline.data.schema import FAIRFACE_AGES, FAIRFACE_GENDERS, FAIRFACE_RACES
from beauty_pipeline.data.split import MIN_TEST_GROUPS
from beauty_pipeline.errors import PipelineError
from beauty_pipeline.storage import ImageStore
from beauty_pipeline.textfiles import decode_csv_text
from beauty_pipeline.vision.decode import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    SUFFIXES,
    ImageDecodeError,
    decode_image,
)

LABEL_FILES = ("fairface_label_train.csv", "fairface_label_val.csv")
LABEL_COLUMNS = ("file", "age", "gender", "race", "service_test")
# Spreadsheet-mangled ages seen in circulating copies of the label CSVs.
AGE_REPAIRS = {"9-Mar": "3-9", "03-Sep": "3-9", "19-Oct": "10-19", "Oct-19": "10-19"}
MAX_IMAGE_BYTES = 50_000_000  # the same cap as a local photo folder
MAX_LABEL_BYTES = 200_000_000
VOCABULARY = {"age": FAIRFACE_AGES, "gender": FAIRFACE_GENDERS, "race": FAIRFACE_RACES}
# Each FairFace image is its own identity: the split by identity needs this many (train + test).
MIN_ORDINARY_IMAGES = MIN_TEST_GROUPS + 1
MISSING = "image file missing"
OUTSIDE = "path outside the FairFace folder"


class FairFaceError(PipelineError):
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


def read_label_file(path: Path) -> pd.DataFrame:
    """One label CSV, strictly: not empty, UTF-8, the official columns."""
    size = path.stat().st_size
    if size == 0:
        raise FairFaceError(f"FairFace label file {path} is empty (0 bytes); download it again")
    if size > MAX_LABEL_BYTES:
        raise FairFaceError(f"FairFace label file {path} is larger than {MAX_LABEL_BYTES} bytes")
    text = decode_csv_text(path.read_bytes(), f"FairFace label file {path}", FairFaceError)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise FairFaceError(f"FairFace label file {path} is not a readable CSV "
                            f"({str(error).splitlines()[0]}); download it again") from error
    missing = [c for c in LABEL_COLUMNS[:4] if c not in frame.columns]
    if missing:
        raise FairFaceError(f"FairFace label file {path} lacks columns {missing}; expected "
                            f"{LABEL_COLUMNS}")
    return frame


def _outside(root: Path, file: str) -> bool:
    """A label path that leaves the FairFace folder, literally or through a symlink."""
    if ".." in Path(file).parts or Path(file).is_absolute():
        return True
    try:
        return not (root / file).resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return True


def split_of(label_file: Path, files: pd.Series) -> pd.Series:
    """FairFace's split per row (train | val | ''): from the official CSV's name, else from the
    image's folder (FairFace ships train/… and val/…). The official checkpoint saw train."""
    for split in ("train", "val"):
        if label_file.name == f"fairface_label_{split}.csv":
            return pd.Series(split, index=files.index)
    folder = files.map(lambda f: Path(f).parts[0] if len(Path(f).parts) > 1 else "")
    return folder.where(folder.isin(["train", "val"]), "")


def first_per_split(labels: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The first rows of each FairFace split in proportion to its size, `limit` in all: a small
    sample keeps val images, which the official checkpoint's ordinary test side needs."""
    if limit >= len(labels):
        return labels
    shares = labels["fairface_split"].value_counts(sort=False) / len(labels)
    quota = (shares * limit).round().astype(int)
    quota.iloc[-1] = max(0, limit - int(quota.iloc[:-1].sum()))
    return labels[labels.groupby("fairface_split", sort=False).cumcount()
                  < labels["fairface_split"].map(quota)].reset_index(drop=True)


def file_problem(root: Path, file: str) -> tuple[str, str]:
    """('', '') for a label row whose file is an image inside the folder, else (reason, detail):
    only the header is read here, the full decode comes when the image is stored."""
    if _outside(root, file):
        return OUTSIDE, ""
    path = root / file
    if path.is_dir():
        return "not_a_file", f"{file} is a folder"
    if not path.exists():
        return MISSING, ""
    if not path.is_file():
        return "not_a_file", f"{file} is not a regular file"
    try:
        with Image.open(path) as image:
            fmt = image.format
    except Exception as error:  # Pillow raises many types for bytes that are not an image
        return "undecodable", f"{file}: not an image ({type(error).__name__})"
    if fmt not in ALLOWED_FORMATS:
        return "undecodable", f"{file}: unsupported image format {fmt}"
    return "", ""


def canonical_labels(labels: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Labels spelled as FairFace's vocabulary where the repair is certain (case, spacing), and
    per row the first value that is not FairFace's ('' when all are)."""
    labels = labels.copy()
    problems = pd.Series("", index=labels.index)
    for column, vocabulary in VOCABULARY.items():
        lookup = {value.casefold(): value for value in vocabulary}
        raw = labels[column].astype(str)
        repaired = raw.map(lambda v, lookup=lookup: lookup.get(" ".join(v.split()).casefold(), ""))
        bad = (repaired == "") & (problems == "")
        problems[bad] = [f"{column} {value!r} is not one of FairFace's values "
                         f"({' | '.join(vocabulary)})" for value in raw[bad]]
        labels[column] = repaired.where(repaired != "", raw)
    return labels, problems


def require_ordinary_class(root: Path | str, usable: int, skipped: pd.DataFrame,
                           stage: str = "label rows", minimum: int = MIN_ORDINARY_IMAGES) -> None:
    """Refuse an ordinary class below `minimum` images, naming the folder and what was missing."""
    if usable >= minimum:
        return
    reasons = skipped["reason"].value_counts() if "reason" in skipped else pd.Series(dtype=int)
    why = ", ".join(f"{reason}: {count}" for reason, count in reasons.items()) or "none skipped"
    raise FairFaceError(
        f"FairFace folder {root}: {usable} of {usable + len(skipped)} {stage} have a usable image, "
        f"{int(reasons.get(MISSING, 0))} image files missing ({why}); the ordinary class needs at "
        f"least {minimum}: check that fairface_dir is the folder the label files' "
        "paths are relative to")


def read_fairface(root: Path | str, limit: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows with an image file and FairFace labels, plus the rows skipped and why (missing,
    outside the folder, not_a_file, undecodable, labels outside FairFace's vocabulary)."""
    root = Path(root).expanduser()
    files = label_files(root)
    labels = pd.concat([read_label_file(path).pipe(lambda f, p=path: f.assign(
        fairface_split=split_of(p, f["file"]))) for path in files], ignore_index=True)
    if labels.empty:
        raise FairFaceError(f"FairFace label file(s) {', '.join(str(f) for f in files)} have a "
                            "header but no rows; download them again")
    labels["age"] = labels["age"].replace(AGE_REPAIRS)
    labels, label_problems = canonical_labels(labels)
    checked = [file_problem(root, f) for f in labels["file"]]
    reason = pd.Series([r for r, _ in checked], index=labels.index)
    detail = pd.Series([d for _, d in checked], index=labels.index)
    unlabelled = (reason == "") & (label_problems != "")
    reason[unlabelled], detail[unlabelled] = "not_fairface_label", label_problems[unlabelled]
    bad = reason != ""
    skipped = labels[bad].assign(reason=reason[bad], detail=detail[bad]).reset_index(drop=True)
    kept = labels[~bad].reset_index(drop=True)
    require_ordinary_class(root, len(kept), skipped, minimum=1)  # the split's floor: fairface_faces
    if limit is not None:
        kept = first_per_split(kept, limit)
    kept = kept.assign(path=[str((root / f).resolve()) for f in kept["file"]])
    return kept, skipped


def store_fairface_images(labels: pd.DataFrame, store: ImageStore,
                          max_bytes: int = MAX_IMAGE_BYTES,
                          max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Size-capped, fully decoded FairFace images into the store: (rows with image_key, refused)."""
    keys, reasons = [], []
    for path in labels["path"]:
        key, reason = "", ""
        try:
            if Path(path).stat().st_size > max_bytes:
                reason = f"too large: more than {max_bytes} bytes"
            else:
                data = Path(path).read_bytes()
                _, fmt = decode_image(data, max_pixels)
                key = store.put_bytes(data, SUFFIXES[fmt])
        except OSError as error:
            reason = f"unreadable: {error.strerror}"
        except ImageDecodeError as error:
            reason = str(error)
        keys.append(key)
        reasons.append(reason)
    frame = labels.assign(image_key=keys, reason=reasons)
    ok = frame["reason"] == ""
    return (frame[ok].drop(columns="reason").reset_index(drop=True),
            frame[~ok].drop(columns=["image_key", "path"]).reset_index(drop=True))
