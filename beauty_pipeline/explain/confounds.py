"""Confounds in the verdict: the data-level parity checks that warn on a model's data set, by how
much, and the verdict label that carries them.

A model called `face` looks at the face, but when the two classes also differ in how their photos
were made (face resolution, JPEG quality, face share, who is in them), the face carries the source
as well as the label. The verdict cannot tell the two apart; it says so instead of hiding it:
`face (source-confounded: face_px, race mix)`. The same rules as the checks (checks.py) decide
what warns, so the label and the Dagster UI never disagree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import pandas as pd

from beauty_pipeline.data.demographics import (
    ATTRIBUTES,
    MAX_MIX_GAP_POINTS,
    mix_by_split,
    mix_gap_points,
)
from beauty_pipeline.data.parity import (
    MAX_GAP_POINTS,
    frontal_gap_points,
    padded_gap_points,
    padded_share,
)
from beauty_pipeline.data.quality import quality_by_class

# labels that say nothing a confound could qualify: the model learned nothing
UNQUALIFIED = ("chance",)


@dataclass(frozen=True)
class Confound:
    """One parity check that warns: which check, the cue it names, and its size in words."""

    check: str
    cue: str
    magnitude: str
    numbers: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _num(value) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def quality_confounds(table: dict[str, dict]) -> list[Confound]:
    """Every quality cue that separates the classes (data/quality.py's rule), with its medians,
    standardised mean difference and person-level p."""
    found = []
    for cue, row in table.items():
        if not row.get("separates"):
            continue
        celebrity, ordinary = row["celebrity"]["median"], row["ordinary"]["median"]
        found.append(Confound("quality_parity", cue,
                              f"median celebrity {celebrity:.3g} vs ordinary {ordinary:.3g}, "
                              f"SMD {row['smd']:+.2f}",
                              {"celebrity_median": _num(celebrity), "ordinary_median": _num(ordinary),
                               "smd": _num(row["smd"]), "p_persons": _num(row["p_persons"])}))
    return found


def attribute_confounds(mixes: dict[str, dict]) -> list[Confound]:
    """Every demographic attribute whose class mixes differ by more than MAX_MIX_GAP_POINTS in the
    whole set or any split (the worst one is reported), as attribute_mix_parity judges."""
    found = []
    for attribute in ATTRIBUTES:
        gaps = [(g, name) for name, mix in mixes.items()
                if (g := mix_gap_points(mix, attribute)) is not None]
        if not gaps:
            continue
        worst, where = max(gaps)
        if worst > MAX_MIX_GAP_POINTS:
            found.append(Confound("attribute_mix_parity", f"{attribute} mix",
                                  f"{worst:.1f} points apart (worst: {where})",
                                  {"gap_points": worst, "worst_split": where,
                                   "max_gap_points": MAX_MIX_GAP_POINTS}))
    return found


def _share_confound(check: str, cue: str, gap: float | None, per_class: dict[str, dict],
                    key: str) -> list[Confound]:
    """A per-class share that differs between the classes by more than MAX_GAP_POINTS."""
    if gap is None or gap <= MAX_GAP_POINTS:
        return []
    celebrity, ordinary = (per_class[name][key] for name in ("celebrity", "ordinary"))
    return [Confound(check, cue, f"celebrity {celebrity:.0%} vs ordinary {ordinary:.0%} "
                                 f"({gap:.1f} points)",
                     {"gap_points": gap, "celebrity": celebrity, "ordinary": ordinary,
                      "max_gap_points": MAX_GAP_POINTS})]


def frontal_confounds(rates: dict[str, dict] | None) -> list[Confound]:
    """The frontal filter dropping one class's photos more often than the other's."""
    if not rates:
        return []
    return _share_confound("frontal_filter_parity", "frontal drops", frontal_gap_points(rates),
                           rates, "rate")


def padding_confounds(shares: dict[str, dict]) -> list[Confound]:
    """One class's crops reaching past the photo's border more often (padded borders)."""
    return _share_confound("padding_parity", "padding", padded_gap_points(shares), shares, "share")


def dataset_confounds(study: pd.DataFrame, frontal_rates: dict[str, dict] | None = None
                      ) -> list[Confound]:
    """Every warning parity check of a study set, measured from the set itself (the frontal
    filter's rates come from the face stage, before the set dropped those rows)."""
    return [*quality_confounds(quality_by_class(study)), *frontal_confounds(frontal_rates),
            *padding_confounds(padded_share(study)), *attribute_confounds(mix_by_split(study))]


def decorate(label: str, confounds: list[Confound]) -> str:
    """The verdict label with its confounds named, e.g. `face (source-confounded: face_px,
    race mix)`; unchanged when nothing warns or the model is at chance."""
    if not confounds or label in UNQUALIFIED:
        return label
    return f"{label} (source-confounded: {', '.join(c.cue for c in confounds)})"


def describe(confounds: list[Confound]) -> str:
    """One line for a tag or a table: each cue with its size, or 'none'."""
    return "; ".join(f"{c.cue}: {c.magnitude}" for c in confounds) or "none"
