"""Render the study report: one HTML page saying which models learned faces and which backgrounds.

The page is self-contained (figures embedded as small thumbnails) and links each thumbnail to the
full-size figure, copied next to it under ``figures/`` with a deterministic name.
"""

from __future__ import annotations

import base64
import math
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from html import escape
from pathlib import Path
from urllib.parse import urlparse

from beauty_pipeline.explain.plots import EPOCH_COLUMNS, figure_name, thumbnail_png
from beauty_pipeline.explain.verdict import ShortcutThresholds, shortcut_reasons, verdict
from beauty_pipeline.settings import BACKGROUNDS, MODELS
from beauty_pipeline.storage import atomic_write_bytes

REPORT_NAME = "study_report.html"
FIGURE_KINDS = ("class_average", "overlays", "accuracy_curves")


@dataclass
class PartitionReport:
    """What the report needs from one model x background partition (metrics may be None)."""

    model: str
    background: str
    epochs: list[dict] = field(default_factory=list)  # rows with EPOCH_COLUMNS keys
    face_mass_celebrity: float | None = None
    face_mass_ordinary: float | None = None
    face_mass_all: float | None = None  # default: mean of the two classes
    face_mass_lift_celebrity: float | None = None
    face_mass_lift_ordinary: float | None = None
    acc_original: float | None = None
    acc_face_only: float | None = None
    acc_background_only: float | None = None
    acc_swapped: float | None = None
    bg_gap: float | None = None
    figures: dict[str, str] = field(default_factory=dict)  # kind (FIGURE_KINDS) -> PNG path
    mlflow_run_id: str | None = None
    mlflow_run_url: str | None = None
    face_region_source: str | None = None  # e.g. "known_mask" or "detection: 80, aligned_prior: 20"

    @classmethod
    def from_dict(cls, data: Mapping) -> PartitionReport:
        """From a plain dict, rejecting unknown keys so a typo cannot silently drop a number."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown partition report keys: {sorted(unknown)}")
        return cls(**dict(data))

    @property
    def anchor(self) -> str:
        return figure_name(self.model, self.background, "x")[: -len("__x.png")]

    @property
    def overall_face_mass(self) -> float | None:
        if self.face_mass_all is not None:
            return self.face_mass_all
        known = [v for v in (self.face_mass_celebrity, self.face_mass_ordinary) if _finite(v)]
        return sum(known) / len(known) if known else None


def _finite(value: float | None) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _num(value: float | None, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if _finite(value) else "–"


def _safe_url(url: str | None) -> str | None:
    """Only http(s) and relative links reach an href (no javascript: and friends)."""
    if not url:
        return None
    return url if urlparse(url).scheme in ("", "http", "https") else None


def _link(text: str, url: str | None) -> str:
    safe = _safe_url(url)
    label = escape(text)
    return f'<a href="{escape(safe, quote=True)}">{label}</a>' if safe else label


def _order(part: PartitionReport) -> tuple:
    model_rank = MODELS.index(part.model) if part.model in MODELS else len(MODELS)
    known = part.background in BACKGROUNDS
    bg_rank = BACKGROUNDS.index(part.background) if known else len(BACKGROUNDS)
    return (model_rank, part.model, bg_rank, part.background)


def _copy_figures(part: PartitionReport, figures_dir: Path) -> dict[str, Path]:
    """Copy a partition's figures under deterministic names; return kind -> copied path."""
    copied = {}
    for kind, source in sorted(part.figures.items()):
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"{part.model}/{part.background} figure {kind!r}: {source}")
        target = figures_dir / figure_name(part.model, part.background, kind)
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        copied[kind] = target
    return copied


def _thumb(path: Path, out_dir: Path, alt: str, max_side: int = 260) -> str:
    data = base64.b64encode(thumbnail_png(path, max_side=max_side)).decode()
    href = escape(path.relative_to(out_dir).as_posix(), quote=True)
    return (f'<a href="{href}"><img alt="{escape(alt, quote=True)}" '
            f'src="data:image/png;base64,{data}"></a>')


def _run_link(part: PartitionReport) -> str:
    label = part.mlflow_run_id or ("MLflow run" if part.mlflow_run_url else "–")
    return _link(label, part.mlflow_run_url)


def _summary_table(parts: Sequence[PartitionReport], thresholds: ShortcutThresholds) -> str:
    head = ("model", "background", "verdict", "FaceMass celebrity", "FaceMass ordinary",
            "lift celebrity", "lift ordinary", "acc original", "acc face-only",
            "acc background-only", "acc swapped", "BG-gap", "face region", "MLflow run")
    rows = []
    for p in parts:
        call = verdict(p.overall_face_mass, p.bg_gap, p.acc_background_only, thresholds,
                   acc_original=p.acc_original)
        why = "; ".join(shortcut_reasons(p.overall_face_mass, p.bg_gap, p.acc_background_only,
                                         thresholds))
        cells = [_link(p.model, f"#{p.anchor}"), escape(p.background),
                 f'<span class="verdict {call}" title="{escape(why, quote=True)}">{call}</span>',
                 *(_num(v) for v in (p.face_mass_celebrity, p.face_mass_ordinary)),
                 *(_num(v, 2) for v in (p.face_mass_lift_celebrity, p.face_mass_lift_ordinary)),
                 *(_num(v) for v in (p.acc_original, p.acc_face_only, p.acc_background_only,
                                     p.acc_swapped, p.bg_gap)),
                 escape(p.face_region_source or "–"), _run_link(p)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (f'<table id="summary"><thead><tr>{header}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _heatmap_grid(parts: Sequence[PartitionReport], figures: dict, out_dir: Path) -> str:
    models = list(dict.fromkeys(p.model for p in parts))
    backgrounds = list(dict.fromkeys(p.background for p in sorted(parts, key=_order)))
    backgrounds.sort(key=lambda b: BACKGROUNDS.index(b) if b in BACKGROUNDS else len(BACKGROUNDS))
    by_key = {(p.model, p.background): p for p in parts}
    header = "<th>model</th>" + "".join(f"<th>{escape(b)}</th>" for b in backgrounds)
    rows = []
    for model in models:
        cells = [f"<th>{escape(model)}</th>"]
        for background in backgrounds:
            part = by_key.get((model, background))
            path = figures.get((model, background), {}).get("class_average") if part else None
            if part is None:
                cells.append("<td>not run</td>")
            elif path is None:
                cells.append(f"<td>{_link('no heatmap', f'#{part.anchor}')}</td>")
            else:
                caption = (f"FaceMass {_num(part.overall_face_mass)} · BG-gap {_num(part.bg_gap)}"
                           f" · {_run_link(part)}")
                cells.append(f"<td>{_thumb(path, out_dir, f'{model} {background}')}"
                             f"<br>{caption}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table id="heatmap-grid"><thead><tr>{header}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _epoch_table(part: PartitionReport) -> str:
    header = "".join(f"<th>{escape(c)}</th>" for c in EPOCH_COLUMNS)
    rows = []
    for row in part.epochs:
        cells = [escape(str(row.get("epoch", "")))]
        cells += [_num(row.get(c), 4) for c in EPOCH_COLUMNS[1:]]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    body = "".join(rows) or f'<tr><td colspan="{len(EPOCH_COLUMNS)}">no epochs recorded</td></tr>'
    return (f'<table class="epochs" id="epochs-{escape(part.anchor, quote=True)}">'
            f"<thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>")


def _partition_section(part: PartitionReport, figures: dict[str, Path], out_dir: Path) -> str:
    title = f"{part.model} × {part.background}"
    thumbs = "".join(_thumb(figures[k], out_dir, f"{title} {k}") for k in FIGURE_KINDS
                     if k in figures)
    thumbs += "".join(_thumb(path, out_dir, f"{title} {k}") for k, path in sorted(figures.items())
                      if k not in FIGURE_KINDS)
    return (f'<section id="{escape(part.anchor, quote=True)}"><h3>{escape(title)}</h3>'
            f"<p>MLflow run: {_run_link(part)}</p>{_epoch_table(part)}"
            f'<div class="figures">{thumbs}</div></section>')


STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;
margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:center;font-size:.9em}
.verdict.background{color:#b00;font-weight:bold}.verdict.face{color:#070;font-weight:bold}
.figures img{margin:.3em;border:1px solid #ddd}"""


def render_report(
    partitions: Sequence[Mapping | PartitionReport],
    out_dir: Path,
    title: str = "Study report: faces or backgrounds?",
    thresholds: ShortcutThresholds = ShortcutThresholds(),
) -> Path:
    """Write out_dir/study_report.html (+ figures/) for every partition and return its path."""
    parts = sorted((p if isinstance(p, PartitionReport) else PartitionReport.from_dict(p)
                    for p in partitions), key=_order)
    keys = [(p.model, p.background) for p in parts]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate model x background partitions")
    out_dir = Path(out_dir)
    figures_dir = out_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    figures = {(p.model, p.background): _copy_figures(p, figures_dir) for p in parts}
    flagged = sum(verdict(p.overall_face_mass, p.bg_gap, p.acc_background_only, thresholds,
                   acc_original=p.acc_original)
                  == "background" for p in parts)
    body = (f"<h1>{escape(title)}</h1>"
            f"<p>{len(parts)} partitions; {flagged} flagged as looking at the background "
            f"(FaceMass &lt; {thresholds.face_mass_min}, BG-gap &gt; {thresholds.bg_gap_max} or "
            f"background-only accuracy &gt; {thresholds.background_only_max}).</p>"
            f"<h2>Faces or backgrounds</h2>{_summary_table(parts, thresholds)}"
            f"<h2>Class-average Grad-CAM (celebrity | ordinary)</h2>"
            f"{_heatmap_grid(parts, figures, out_dir)}"
            f"<h2>Per-epoch accuracy</h2>"
            + "".join(_partition_section(p, figures[(p.model, p.background)], out_dir)
                      for p in parts))
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body>{body}</body></html>\n")
    return atomic_write_bytes(out_dir / REPORT_NAME, page.encode("utf-8"))


def _md_cell(text: str) -> str:
    """A Markdown table cell that shows its text literally (no links, images or HTML)."""
    text = escape(" ".join(str(text).split()), quote=False)
    return re.sub(r"([\\`*_\[\]()!|#~])", r"\\\1", text)


def summary_markdown(
    partitions: Sequence[Mapping | PartitionReport],
    thresholds: ShortcutThresholds = ShortcutThresholds(),
) -> str:
    """The summary table as Markdown, for the report asset's materialization metadata."""
    parts = sorted((p if isinstance(p, PartitionReport) else PartitionReport.from_dict(p)
                    for p in partitions), key=_order)
    lines = ["| model | background | verdict | FaceMass | BG-gap | acc original | acc swapped |",
             "|---|---|---|---|---|---|---|"]
    for p in parts:
        call = verdict(p.overall_face_mass, p.bg_gap, p.acc_background_only, thresholds,
                   acc_original=p.acc_original)
        cells = [p.model, p.background, call, _num(p.overall_face_mass), _num(p.bg_gap),
                 _num(p.acc_original), _num(p.acc_swapped)]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines)
