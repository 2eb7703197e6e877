"""Does the face stage treat both classes alike? Frontal-filter drops and border padding per class.

A filter that drops one class's photos more often (say, by camera angle) or a crop that pads one
class's images more often (faces near the border) is a class shortcut the preprocessing made.
"""

from __future__ import annotations

import pandas as pd

CLASS_NAMES = {0: "ordinary", 1: "celebrity"}
# Rows the frontal filter judged: they passed decoding, detection and the size rule.
JUDGED = ("", "non_frontal", "not_upright", "near_duplicate")
FRONTAL_DROPS = ("non_frontal", "not_upright")
MAX_GAP_POINTS = 10.0


def frontal_drop_rates(faces: pd.DataFrame) -> dict[str, dict]:
    """Per class: faces the frontal filter judged, how many it dropped and the rate (0-1). Rows
    taken as they are (the study's FairFace mode) were never judged and do not count."""
    as_is = faces.get("preprocessing", pd.Series("", index=faces.index)).astype(str).str.startswith(
        "as_is")
    judged = faces[faces["drop_reason"].isin(JUDGED) & ~as_is]
    rates = {}
    for looks, name in CLASS_NAMES.items():
        rows = judged[judged["looks"].astype(int) == looks]
        dropped = int(rows["drop_reason"].isin(FRONTAL_DROPS).sum())
        rates[name] = {"judged": len(rows), "dropped": dropped,
                       "rate": dropped / len(rows) if len(rows) else None}
    return rates


def frontal_gap_points(rates: dict[str, dict]) -> float | None:
    """|celebrity rate - ordinary rate| in percentage points; None when a class was not judged."""
    values = [rates[name]["rate"] for name in CLASS_NAMES.values()]
    if any(v is None for v in values):
        return None
    return abs(values[0] - values[1]) * 100.0


def padded_share(study: pd.DataFrame) -> dict[str, dict]:
    """Per class: crops made here, the share that reached past the photo's border, and the mean
    padded fraction of those. Images not cropped here (known boxes, as-is) have no pad_fraction."""
    pad = study["pad_fraction"] if "pad_fraction" in study else pd.Series(float("nan"),
                                                                            index=study.index)
    shares = {}
    for looks, name in CLASS_NAMES.items():
        values = pad[study["looks"].astype(int) == looks].dropna()
        padded = values[values > 0]
        shares[name] = {"cropped": len(values), "padded": len(padded),
                        "share": len(padded) / len(values) if len(values) else None,
                        "mean_pad_fraction": float(padded.mean()) if len(padded) else 0.0}
    return shares


def padded_gap_points(shares: dict[str, dict]) -> float | None:
    """|celebrity share - ordinary share| of padded crops in points; None if a class has none."""
    values = [shares[name]["share"] for name in CLASS_NAMES.values()]
    if any(v is None for v in values):
        return None
    return abs(values[0] - values[1]) * 100.0
