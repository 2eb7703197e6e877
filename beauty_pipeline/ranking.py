"""The ranking list: load, validate, give every person a stable filesystem-safe key, hash it."""

from __future__ import annotations

import hashlib
import io
import re
import time
import unicodedata
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import pandas as pd
import requests

from beauty_pipeline.errors import PipelineError
from beauty_pipeline.netio import NetworkError, read_body
from beauty_pipeline.textfiles import decode_csv_text

REQUIRED_COLUMNS = ("name", "gender", "rank", "list", "year")
OPTIONAL_COLUMNS = ("country", "birth_year")
RANKING_COLUMNS = ("person",) + REQUIRED_COLUMNS + OPTIONAL_COLUMNS
DEFAULT_RESOURCE = "ranking_2024.csv"
MAX_RANKING_BYTES = 5_000_000

_GENDERS = {"male": "Male", "m": "Male", "man": "Male", "female": "Female", "f": "Female",
            "woman": "Female"}
_SAFE_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
             *(f"lpt{i}" for i in range(10))}
_MAX_SLUG = 60


class RankingError(PipelineError):
    """A ranking that cannot be used; the message names every offending row."""


def normal_name(name: str) -> str:
    """Canonical identity form of a name: NFC, case-folded, single spaces."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


_normal_name = normal_name


def _slug(name: str) -> tuple[str, bool]:
    """ASCII slug of a name, and whether letters were lost on the way (e.g. Hangul, kana)."""
    folded = unicodedata.normalize("NFKD", name)
    kept, lost = [], False
    for char in folded:
        if unicodedata.combining(char):
            continue
        if char.isascii():
            kept.append(char.lower() if char.isalnum() else "-")
        elif char.isalnum():
            lost = True
            kept.append("-")
        else:
            kept.append("-")
    slug = re.sub(r"-+", "-", "".join(kept)).strip("-")
    return slug, lost


def _name_hash(name: str, length: int = 8) -> str:
    return hashlib.sha1(_normal_name(name).encode("utf-8")).hexdigest()[:length]


def person_key(name: str) -> str:
    """Stable key for one name: an ASCII slug, with a name hash when the slug alone would lie."""
    slug, lost = _slug(name)
    if len(slug) > _MAX_SLUG:
        slug, lost = slug[:_MAX_SLUG].rstrip("-"), True
    if not slug:
        return f"p-{_name_hash(name, 10)}"
    if lost or slug in _RESERVED:
        return f"{slug}-{_name_hash(name)}"
    return slug


def assign_person_keys(names: Iterable[str]) -> dict[str, str]:
    """Keys for a set of names; different names sharing a slug are split deterministically."""
    by_identity: dict[str, str] = {}
    for name in names:
        by_identity.setdefault(_normal_name(name), name)
    groups: dict[str, list[str]] = {}
    for identity, name in by_identity.items():
        groups.setdefault(person_key(name), []).append(identity)
    keys: dict[str, str] = {}
    for key, identities in groups.items():
        # The ASCII-only, then alphabetically first name keeps the plain key; others get a hash.
        identities.sort(key=lambda ident: (not ident.isascii(), ident))
        keys[identities[0]] = key
        for identity in identities[1:]:
            keys[identity] = f"{key[:_MAX_SLUG]}-{_name_hash(identity)}"
    return {name: keys[_normal_name(name)] for name in names}


def assign_newcomers(names: Iterable[str], taken: set[str]) -> dict[str, str]:
    """Keys for identities never seen before; a key already taken goes to nobody new."""
    fresh = assign_person_keys(names)
    keys: dict[str, str] = {}
    for name, key in sorted(fresh.items(), key=lambda item: normal_name(item[0])):
        identity = normal_name(name)
        if identity in keys:
            continue
        length = 8
        while key in taken:
            key = f"{person_key(name)[:_MAX_SLUG]}-{_name_hash(name, length)}"
            length += 2
        taken.add(key)
        keys[identity] = key
    return keys


def check_person_key(key: str) -> str:
    """Refuse a person key that is not a plain slug, so it can never leave a directory root."""
    if not isinstance(key, str) or not _SAFE_KEY.match(key):
        raise PipelineError(f"unsafe person key {key!r}: expected [a-z0-9-], at most 80 characters")
    return key


def _read_source(source: str | Path | None, timeout: float) -> tuple[str, str]:
    """Text of the ranking CSV and a label for error messages."""
    if source is None:
        resource = resources.files("beauty_pipeline") / "resources_data" / DEFAULT_RESOURCE
        return resource.read_text(encoding="utf-8"), f"package resource {DEFAULT_RESOURCE}"
    text_source = str(source)
    if re.match(r"^https?://", text_source, flags=re.IGNORECASE):
        deadline = time.monotonic() + timeout  # the whole fetch, not each read
        try:
            with requests.get(text_source, timeout=timeout, stream=True) as response:
                response.raise_for_status()
                data = read_body(response, MAX_RANKING_BYTES, deadline, f"ranking {text_source}")
        except (requests.RequestException, NetworkError) as error:
            raise RankingError(f"could not fetch ranking from {text_source}: {error}; check the "
                               "URL or use a local copy") from error
        return decode_csv_text(data, f"ranking {text_source}", RankingError), text_source
    path = Path(text_source).expanduser()
    if not path.is_file():
        raise RankingError(f"ranking file {path} does not exist")
    if path.stat().st_size > MAX_RANKING_BYTES:
        raise RankingError(f"ranking file {path} is larger than {MAX_RANKING_BYTES} bytes")
    return decode_csv_text(path.read_bytes(), f"ranking file {path}", RankingError), str(path)


def load_ranking(source: str | Path | None = None, timeout: float = 30.0,
                 registry=None) -> pd.DataFrame:
    """Load and validate a ranking from a path, an http(s) URL, or the shipped 2024 list."""
    text, label = _read_source(source, timeout)
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise RankingError(f"{label} is not a readable CSV: {error}") from error
    return validate_ranking(raw, label=label, registry=registry)


def _year_from_list(list_name: str) -> str:
    match = re.search(r"(?<!\d)(19|20)\d{2}(?!\d)", list_name)
    return match.group(0) if match else ""


def _as_int(text: str) -> int | None:
    text = text.strip()
    return int(text) if re.fullmatch(r"\d+", text) else None


def validate_ranking(raw: pd.DataFrame, label: str = "ranking", registry=None) -> pd.DataFrame:
    """Normalise a raw ranking; RankingError names every bad row (the header is row 1).

    registry (a PersonKeyRegistry) keeps every key once given; without it keys are computed."""
    raw = raw.rename(columns={c: str(c).strip().lower() for c in raw.columns}).fillna("")
    raw = raw.astype(str)
    if "year" not in raw and "list" in raw:
        raw["year"] = raw["list"].map(_year_from_list)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw]
    if missing:
        raise RankingError(f"{label} lacks column(s) {missing}; needs {list(REQUIRED_COLUMNS)}")
    problems: list[str] = []
    rows = []
    for position, record in enumerate(raw.to_dict("records")):
        row_no = position + 2
        name = " ".join(unicodedata.normalize("NFC", record["name"]).split())
        gender = _GENDERS.get(record["gender"].strip().lower())
        rank = _as_int(record["rank"])
        year = _as_int(record["year"] or _year_from_list(record["list"]))
        list_name = record["list"].strip()
        birth = record.get("birth_year", "").strip()
        errors = []
        if not name or not any(ch.isalnum() for ch in name):
            errors.append("empty name")
        elif any(unicodedata.category(ch) == "Cc" for ch in name):
            errors.append(f"control character in name {name!r}")
        if gender is None:
            errors.append(f"bad gender {record['gender']!r} (male/female)")
        if rank is None or rank < 1:
            errors.append(f"bad rank {record['rank']!r} (a whole number >= 1)")
        if year is None or not 1900 <= year <= 2100:
            errors.append(f"bad year {record['year']!r}")
        if not list_name:
            errors.append("empty list name")
        if birth and (_as_int(birth) is None or not 1850 <= int(birth) <= 2100):
            errors.append(f"bad birth_year {birth!r}")
        if errors:
            problems.append(f"row {row_no}: {'; '.join(errors)}")
            continue
        rows.append({"row": row_no, "name": name, "gender": gender, "rank": rank,
                     "list": list_name, "year": year,
                     "country": record.get("country", "").strip(),
                     "birth_year": int(birth) if birth else pd.NA})
    problems += _duplicate_problems(rows)
    if problems:
        raise RankingError(f"{label} has {len(problems)} bad row(s):\n  " + "\n  ".join(problems))
    if not rows:
        raise RankingError(f"{label} has no persons (only a header, or empty): a truncated export? "
                           "Nothing was changed; fix the file and try again")
    frame = pd.DataFrame(rows, columns=["row", *REQUIRED_COLUMNS, *OPTIONAL_COLUMNS])
    names = frame["name"].tolist()
    keys = registry.assign(names) if registry is not None else assign_person_keys(names)
    frame.insert(0, "person", frame["name"].map(keys))
    frame = frame.drop(columns="row").astype(
        {"rank": "int64", "year": "int64", "birth_year": "Int64"})
    return frame.sort_values(["year", "list", "rank", "person"], kind="stable").reset_index(
        drop=True)[list(RANKING_COLUMNS)]


def _duplicate_problems(rows: list[dict]) -> list[str]:
    """A person listed twice in one list, or a rank given twice in one list."""
    problems = []
    seen_person: dict[tuple, int] = {}
    seen_rank: dict[tuple, int] = {}
    for row in rows:
        person = (row["list"], row["year"], _normal_name(row["name"]))
        rank = (row["list"], row["year"], row["rank"])
        if person in seen_person:
            problems.append(f"row {row['row']}: duplicate of row {seen_person[person]} "
                            f"({row['name']!r} twice in {row['list']} {row['year']})")
        elif rank in seen_rank:
            problems.append(f"row {row['row']}: rank {row['rank']} already taken by row "
                            f"{seen_rank[rank]} in {row['list']} {row['year']}")
        seen_person.setdefault(person, row["row"])
        seen_rank.setdefault(rank, row["row"])
    return problems


def ranking_digest(frame: pd.DataFrame) -> str:
    """Content hash of a validated ranking, independent of row order: the asset's data version."""
    columns = [c for c in RANKING_COLUMNS if c in frame]
    canonical = frame[columns].astype(str).sort_values(columns).to_csv(index=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def person_keys(frame: pd.DataFrame) -> list[str]:
    """The sorted distinct person keys of a ranking: the dynamic partition keys."""
    return sorted(set(frame["person"]))


def diff_persons(old_keys: Iterable[str], new_keys: Iterable[str]) -> tuple[list[str], list[str]]:
    """(added, removed) person keys between two rankings, sorted."""
    old, new = set(old_keys), set(new_keys)
    return sorted(new - old), sorted(old - new)
