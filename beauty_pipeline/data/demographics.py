"""Demographics: each class's gender / age / race mix, sampling the ordinary class to match it, and
accuracy within matched strata, so a high accuracy that comes from 'adults of one ethnicity vs
everyone' shows as such.

Sources per attribute (recorded in `<attribute>_source`): `label` (FairFace's own labels for
ordinary faces), `ranking` (the ranking's gender for celebrities), `estimate` (the FairFace model
for celebrities, with its softmax confidence in `<attribute>_confidence`), `unknown`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from beauty_pipeline.data.schema import FAIRFACE_AGES, FAIRFACE_GENDERS, FAIRFACE_RACES

ATTRIBUTES = ("gender", "age", "race")
VOCABULARIES = {"gender": FAIRFACE_GENDERS, "age": FAIRFACE_AGES, "race": FAIRFACE_RACES}
SOURCES = ("label", "ranking", "estimate", "unknown")
CLASS_NAMES = {0: "ordinary", 1: "celebrity"}
# Which attributes DatasetConfig.match_demographics matches on, coarsest last.
MATCH_MODES = {"none": (), "gender": ("gender",), "gender_age_race": ("gender", "age", "race")}
# Two classes' mixes may differ by this much total variation distance (points) before a WARN.
MAX_MIX_GAP_POINTS = 10.0
# The matching falls back to a coarser stratification below this share of celebrity rows kept.
MIN_KEPT_CELEBRITY = 0.5
# Accuracy within strata uses the finest stratification whose shared strata hold this share of
# the test rows (else the coarsest): finer strata that few rows share say little.
MIN_MATCHED_SHARE = 0.5
ESTIMATE_IMAGE_SIZE = 224  # the official FairFace model's input size
_GENDER_WORDS = {"male": "Male", "m": "Male", "man": "Male", "female": "Female", "f": "Female",
                 "woman": "Female"}


def canonical_gender(value) -> str:
    """The ranking's male/female (any case, M/F) in FairFace's Male/Female vocabulary, or ''."""
    return _GENDER_WORDS.get(str(value).strip().lower(), "") if isinstance(value, str) else ""


def known(frame: pd.DataFrame, attribute: str) -> pd.Series:
    """Rows whose attribute holds a value of FairFace's vocabulary (anything else is unknown)."""
    if attribute not in frame:
        return pd.Series(False, index=frame.index)
    return frame[attribute].isin(VOCABULARIES[attribute])


def with_ranking_gender(faces: pd.DataFrame, ranking: pd.DataFrame) -> pd.DataFrame:
    """Celebrity gender from the ranking (joined on person); sources recorded for every attribute,
    so per-person celebrity_faces partitions stay as they are."""
    faces = faces.copy()
    for attribute in ATTRIBUTES:
        if attribute not in faces:
            faces[attribute] = ""
        faces[attribute] = faces[attribute].fillna("").astype(str)
    celebrity = faces["looks"].astype(int) == 1
    by_person = dict(zip(ranking["person"].astype(str),
                         ranking["gender"].map(canonical_gender), strict=True))
    from_ranking = faces["person"].astype(str).map(by_person).fillna("")
    fill = celebrity & ~known(faces, "gender") & (from_ranking != "")
    faces.loc[fill, "gender"] = from_ranking[fill]
    for attribute in ATTRIBUTES:
        source = np.where(known(faces, attribute), "label", "unknown")
        if attribute == "gender":
            source = np.where(fill, "ranking", source)
        previous = faces.get(f"{attribute}_source")
        if previous is not None:  # an earlier, more specific record wins
            source = np.where(previous.fillna("").astype(str) != "", previous, source)
        faces[f"{attribute}_source"] = source
    return faces


def estimate_attributes(model, images: np.ndarray, batch_size: int = 64,
                        device=None) -> pd.DataFrame:
    """The FairFace model's age group, gender and race per image with each one's softmax
    confidence (its top probability), since celebrities carry no such labels."""
    import torch

    from beauty_pipeline.training.backbone import OFFICIAL_RACES
    from beauty_pipeline.training.loop import predict_logits
    from beauty_pipeline.training.models import FAIRFACE_OUTPUTS, FAIRFACE_SLICES

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"estimate_attributes needs (N, H, W, 3) uint8 images, got "
                         f"{images.shape} {images.dtype}")
    logits = predict_logits(model, images, batch_size, device)
    if len(images) and logits.shape[1] != FAIRFACE_OUTPUTS:
        raise ValueError(f"the model has {logits.shape[1]} outputs, expected FairFace's "
                         f"{FAIRFACE_OUTPUTS} (7 race + 2 gender + 9 age)")
    vocabularies = {"race": OFFICIAL_RACES, "gender": FAIRFACE_GENDERS, "age": FAIRFACE_AGES}
    out = {}
    for attribute in ATTRIBUTES:
        part = torch.as_tensor(logits[:, FAIRFACE_SLICES[attribute]]).double()
        probabilities = torch.softmax(part, dim=1).numpy() if len(images) else \
            np.zeros((0, len(vocabularies[attribute])))
        best = probabilities.argmax(axis=1)
        out[f"{attribute}_estimate"] = np.asarray(vocabularies[attribute], dtype=object)[best]
        out[f"{attribute}_confidence"] = probabilities[np.arange(len(best)), best]
    return pd.DataFrame(out)


def pool_by_person(estimates: pd.DataFrame, persons, attributes: tuple[str, ...] = ("race",)
                   ) -> pd.DataFrame:
    """One value per person for attributes a person keeps across photos (race): the value with
    the largest summed confidence, its confidence that sum over the person's photos."""
    estimates = estimates.copy()
    persons = pd.Series(np.asarray(persons).astype(str), index=estimates.index)
    for attribute in attributes:
        votes = estimates.groupby([persons, estimates[f"{attribute}_estimate"]])[
            f"{attribute}_confidence"].sum()
        votes.index.names = ["person", "value"]
        best = votes.sort_index().groupby(level="person").idxmax()
        value = {person: key[1] for person, key in best.items()}
        photos = persons.value_counts()
        confidence = {person: votes[key] / photos[person] for person, key in best.items()}
        estimates[f"{attribute}_estimate"] = persons.map(value)
        estimates[f"{attribute}_confidence"] = persons.map(confidence).astype(float)
    return estimates


def with_estimates(faces: pd.DataFrame, estimates: pd.DataFrame, rows: np.ndarray,
                   attributes: tuple[str, ...] = ATTRIBUTES) -> pd.DataFrame:
    """Estimates stored for the given row positions; an attribute still unknown there takes its
    estimate (source 'estimate'), a known one keeps its value and the estimate sits beside it."""
    faces = faces.copy()
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) != len(estimates):
        raise ValueError(f"{len(estimates)} estimates for {len(rows)} rows")
    index = faces.index[rows]
    for attribute in ATTRIBUTES:
        for suffix, empty in (("estimate", ""), ("confidence", np.nan)):
            column = f"{attribute}_{suffix}"
            if column not in faces:
                faces[column] = empty
            faces.loc[index, column] = estimates[column].to_numpy()
        if attribute not in attributes:
            continue
        fill = pd.Series(False, index=faces.index)
        fill[index] = ~known(faces.loc[index], attribute)
        faces.loc[fill, attribute] = faces.loc[fill, f"{attribute}_estimate"]
        faces.loc[fill, f"{attribute}_source"] = "estimate"
    return faces


def attribute_mix(frame: pd.DataFrame) -> dict[str, dict]:
    """Per class and attribute: rows, the share with a known value, and each value's share among
    the known ones (all FairFace values listed, zeros included, so mixes line up)."""
    mix = {}
    for looks, name in CLASS_NAMES.items():
        rows = frame[frame["looks"].astype(int) == looks]
        entry: dict = {"rows": len(rows)}
        for attribute in ATTRIBUTES:
            values = rows.loc[known(rows, attribute), attribute] if attribute in rows else \
                pd.Series(dtype=str)
            counts = values.value_counts()
            entry[attribute] = {
                "known": len(values) / len(rows) if len(rows) else 0.0,
                "shares": {v: (int(counts.get(v, 0)) / len(values) if len(values) else 0.0)
                           for v in VOCABULARIES[attribute]}}
            if f"{attribute}_source" in rows:
                entry[attribute]["sources"] = {str(k): int(v) for k, v in rows[
                    f"{attribute}_source"].value_counts().sort_index().items()}
            if f"{attribute}_confidence" in rows and rows[f"{attribute}_confidence"].notna().any():
                entry[attribute]["mean_confidence"] = float(rows[f"{attribute}_confidence"].mean())
        mix[name] = entry
    return mix


def mix_by_split(study: pd.DataFrame) -> dict[str, dict]:
    """The attribute mix of the whole set ('all') and of each split: test is where accuracy is
    measured, and an identity-grouped split can skew it while the whole set looks even."""
    mixes = {"all": attribute_mix(study)}
    if "split" in study:
        for split in ("train", "val", "test"):
            part = study[study["split"] == split]
            if len(part):
                mixes[split] = attribute_mix(part)
    return mixes


def mix_gap_points(mix: dict[str, dict], attribute: str) -> float | None:
    """Total variation distance between the classes' shares of one attribute, in points; None when
    a class has no known value of it (not compared)."""
    a, b = (mix[name][attribute] for name in CLASS_NAMES.values())
    if not a["known"] or not b["known"]:
        return None
    values = VOCABULARIES[attribute]
    return 50.0 * sum(abs(a["shares"][v] - b["shares"][v]) for v in values)


@dataclass
class MatchResult:
    """The matched rows and how the matching went (strata short of ordinary rows, fallbacks)."""

    faces: pd.DataFrame
    attributes: tuple[str, ...]
    report: dict = field(default_factory=dict)


def usable_attributes(faces: pd.DataFrame, requested: tuple[str, ...]) -> tuple[tuple[str, ...],
                                                                                 list[str]]:
    """The requested attributes known for every celebrity row and some ordinary rows, and why
    each other one is left out."""
    celebrity = faces["looks"].astype(int) == 1
    usable, reasons = [], []
    for attribute in requested:
        missing = int((celebrity & ~known(faces, attribute)).sum())
        if missing:
            reasons.append(f"{attribute} not matched: unknown for {missing} of "
                           f"{int(celebrity.sum())} celebrity rows")
        elif not (~celebrity & known(faces, attribute)).any():
            reasons.append(f"{attribute} not matched: unknown for every ordinary row")
        else:
            usable.append(attribute)
    return tuple(usable), reasons


def stratum_keys(frame: pd.DataFrame, attributes: tuple[str, ...]) -> pd.Series:
    """'Male|20-29|White'-style keys; '' where any of the attributes is unknown."""
    if not attributes:
        return pd.Series("all", index=frame.index)
    parts = frame[list(attributes)].fillna("").astype(str)
    keys = parts.agg("|".join, axis=1)
    ok = np.logical_and.reduce([known(frame, a).to_numpy() for a in attributes])
    return keys.where(ok, "")


def _match_side(part: pd.DataFrame, attributes: tuple[str, ...],
                rng: np.random.Generator) -> tuple[pd.DataFrame, list[dict]]:
    """Per stratum as many ordinary rows as celebrity rows; where the pool is short, the celebrity
    rows of that stratum shrink to what it holds (so the mixes stay equal) and it is recorded."""
    keys = stratum_keys(part, attributes)
    looks = part["looks"].astype(int)
    keep, shortfalls = [], []
    for stratum in sorted(set(keys[looks == 1]) - {""}):
        celebrity = np.flatnonzero(((keys == stratum) & (looks == 1)).to_numpy())
        ordinary = np.flatnonzero(((keys == stratum) & (looks == 0)).to_numpy())
        take = min(len(celebrity), len(ordinary))
        if take < len(celebrity):
            shortfalls.append({"stratum": stratum, "celebrity": len(celebrity),
                               "ordinary_available": len(ordinary)})
        keep += [celebrity[rng.permutation(len(celebrity))[:take]],
                 ordinary[rng.permutation(len(ordinary))[:take]]]
    rows = np.sort(np.concatenate(keep)) if keep else np.array([], dtype=np.int64)
    return part.iloc[rows], shortfalls


def match_ordinary(faces: pd.DataFrame, requested: tuple[str, ...], seed: int,
                   min_kept: float = MIN_KEPT_CELEBRITY) -> MatchResult:
    """Sample the ordinary class stratum by stratum to the celebrity class's mix, within each split
    when a `split` column is present (so test is matched too). Falls back to coarser strata (then
    to none) when too few celebrity rows would survive, beyond what class balancing drops anyway,
    recording why."""
    if not requested:
        return MatchResult(faces, (), {"mode": "none"})
    attributes, reasons = usable_attributes(faces, requested)
    sides = faces["split"] if "split" in faces else pd.Series("all", index=faces.index)
    # what class balancing alone would keep per split: matching is judged by what it costs beyond
    looks = faces["looks"].astype(int)
    celebrity_rows = int(sum(min((looks[sides == side] == 1).sum(), (looks[sides == side] == 0)
                                 .sum()) for side in sides.unique()))
    candidates = [attributes[:n] for n in range(len(attributes), 0, -1)]
    for attempt in candidates:
        rng = np.random.default_rng(seed)
        parts, shortfalls, emptied = [], [], []
        for side in sorted(sides.unique()):
            part = faces[sides == side]
            matched, short = _match_side(part, attempt, rng)
            if part["looks"].nunique() == 2 and matched["looks"].nunique() < 2:
                emptied.append(str(side))
            parts.append(matched)
            shortfalls += [{"split": str(side), **s} for s in short]
        matched = pd.concat(parts).sort_index()
        kept = int((matched["looks"].astype(int) == 1).sum()) / max(celebrity_rows, 1)
        if kept >= min_kept and not emptied:
            report = {"mode": "+".join(requested), "matched_on": list(attempt),
                      "not_matched": reasons, "strata": int(stratum_keys(matched, attempt)
                                                            .nunique()),
                      "celebrity_rows_kept": kept, "shortfalls": shortfalls,
                      "ordinary_rows_before": int((faces["looks"].astype(int) == 0).sum()),
                      "ordinary_rows_after": int((matched["looks"].astype(int) == 0).sum())}
            matched = matched.assign(match_stratum=stratum_keys(matched, attempt))
            return MatchResult(matched, attempt, report)
        why = f"split(s) {emptied} left with one class" if emptied else \
            f"only {kept:.0%} of celebrity rows would remain (< {min_kept:.0%})"
        reasons.append(f"matching on {'+'.join(attempt)} abandoned: {why}")
    reasons.append("no matching done: the classes' mixes are as sampled")
    return MatchResult(faces, (), {"mode": "+".join(requested), "matched_on": [],
                                   "not_matched": reasons, "shortfalls": []})


def strata_weights(keys: pd.Series, labels: np.ndarray) -> np.ndarray:
    """Weights giving each class the celebrity class's stratum mix over the strata both classes
    share (each class sums to 1); 0 for rows outside those strata."""
    keys, labels = keys.to_numpy(), np.asarray(labels).astype(int)
    shared = (set(keys[labels == 1]) & set(keys[labels == 0])) - {""}
    inside = np.isin(keys, sorted(shared))
    weights = np.zeros(len(keys))
    if not shared:
        return weights
    celebrity = pd.Series(keys[inside & (labels == 1)]).value_counts(normalize=True)
    for label in (0, 1):
        counts = pd.Series(keys[inside & (labels == label)]).value_counts()
        for stratum, n in counts.items():
            weights[inside & (labels == label) & (keys == stratum)] = celebrity[stratum] / n
    return weights


def strata_accuracy(rows: pd.DataFrame, correct: np.ndarray, boot) -> dict:
    """Accuracy within each gender both classes hold, per stratum of the attributes known for
    every row, and on the matched subset reweighted to one stratum mix, with identity-bootstrap
    95% intervals (boot: an IdentityBootstrap over these rows)."""
    labels = rows["looks"].astype(int).to_numpy()
    correct = np.asarray(correct, dtype=np.float64)
    result: dict = {}
    genders = rows["gender"] if "gender" in rows else pd.Series("", index=rows.index)
    for gender in FAIRFACE_GENDERS:
        select = (genders == gender).to_numpy()
        if select[labels == 1].any() and select[labels == 0].any():
            result.update(boot.mean(correct, select).as_metrics(f"acc_gender_{gender.lower()}"))
    attributes = tuple(a for a in ATTRIBUTES if known(rows, a).all())
    keys, weights = pd.Series("", index=rows.index), np.zeros(len(rows))
    for n in range(len(attributes), 0, -1):  # finest strata that still cover enough test rows
        keys = stratum_keys(rows, attributes[:n])
        weights = strata_weights(keys, labels)
        if (weights > 0).mean() >= MIN_MATCHED_SHARE:
            attributes = attributes[:n]
            break
    else:
        attributes = attributes[:1]
    result["strata_attributes"] = "+".join(attributes) or "none"
    result["matched_strata_share"] = float((weights > 0).mean()) if len(weights) else 0.0
    result["matched_strata"] = int(keys[weights > 0].nunique())
    result.update(boot.weighted_mean(correct, weights).as_metrics("acc_matched_strata"))
    strata = []
    for stratum in sorted(set(keys) - {""}):
        select = (keys == stratum).to_numpy()
        strata.append({"stratum": stratum, "celebrity": int((select & (labels == 1)).sum()),
                       "ordinary": int((select & (labels == 0)).sum()),
                       "matched": bool(weights[select].any()),
                       "accuracy": float(correct[select].mean())})
    result["strata"] = strata
    return result


def estimates_status(checkpoint: str) -> str:
    """'made' when the checkpoint file is there, else why celebrity age and race stay unknown."""
    from pathlib import Path

    if not checkpoint:
        return "not made: no official FairFace checkpoint configured"
    if not Path(checkpoint).is_file():
        return f"not made: checkpoint {Path(checkpoint).name} not found"
    return "made"


def estimate_celebrity_attributes(faces: pd.DataFrame, checkpoint: str, store, cache_dir,
                                  batch_size: int = 64) -> pd.DataFrame:
    """Celebrity age group (per photo) and race (pooled per person) from the official FairFace
    checkpoint; only that file can serve here, the backbone trained here comes later. Gender's
    estimate is kept beside the ranking's."""
    from pathlib import Path

    from beauty_pipeline.training.backbone import load_official_backbone
    from beauty_pipeline.training.cache import decoded_images
    from beauty_pipeline.training.loop import resolve_device

    rows = np.flatnonzero((faces["looks"].astype(int) == 1).to_numpy())
    if not len(rows):
        return faces
    device = resolve_device("auto")
    model = load_official_backbone(Path(checkpoint)).to(device)
    images = decoded_images(faces["image_key"].iloc[rows].tolist(), store, ESTIMATE_IMAGE_SIZE,
                            Path(cache_dir))
    estimates = estimate_attributes(model, images, batch_size, device)
    estimates = pool_by_person(estimates, faces["person"].iloc[rows])
    return with_estimates(faces, estimates, rows)
