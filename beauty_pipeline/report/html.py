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
from beauty_pipeline.explain.verdict import MIN_IDENTITIES, THRESHOLDS
from beauty_pipeline.settings import BACKGROUNDS, MODELS
from beauty_pipeline.storage import atomic_write_bytes

REPORT_NAME = "study_report.html"
FIGURE_KINDS = ("class_average", "overlays", "accuracy_curves")


SUMMARY_METRICS = (  # (metric, column title): each shown with its 95% interval when known
    ("acc_original", "test acc"), ("acc_face_only", "face-only"),
    ("acc_person_only", "person-only"),
    ("acc_background_only", "background-only"), ("acc_mixed_same", "mixed-same"),
    ("acc_mixed_other", "mixed-other"), ("bg_gap", "BG-gap"), ("composite_cost", "composite cost"),
    ("face_features_drop", "features removed: drop"),
    ("face_features_control_drop", "same area elsewhere: drop"),
    ("family_quality_drop", "quality"), ("family_geometry_drop", "geometry"),
    ("family_colour_drop", "colour"), ("family_compression_drop", "compression"),
    ("family_position_drop", "position"), ("family_border_drop", "border"),
    ("family_noise_drop", "noise"), ("face_mass", "FaceMass"),
    ("face_mass_lift_celebrity", "lift celebrity"), ("face_mass_lift_ordinary", "lift ordinary"),
    ("acc_matched_strata", "test acc, matched strata"),  # data.demographics.strata_accuracy
    ("transfer_acc_celebrity", "transfer: celebrity"),  # explain.transfer, when a set was given
    ("transfer_acc_ordinary", "transfer: ordinary"),
)


@dataclass
class PartitionReport:
    """What the report needs from one model x background partition (metrics may be missing)."""

    model: str
    background: str
    epochs: list[dict] = field(default_factory=list)  # rows with EPOCH_COLUMNS keys
    verdict: str | None = None  # decided once, by the audit (explain.verdict.decide)
    verdict_reasons: list[str] = field(default_factory=list)
    verdict_per_seed: str | None = None  # each training seed's verdict, e.g. "face,face,inconclusive"
    metrics: dict[str, float] = field(default_factory=dict)  # name (+ _ci_low/_ci_high) -> value
    figures: dict[str, str] = field(default_factory=dict)  # kind (FIGURE_KINDS) -> PNG path
    mlflow_run_id: str | None = None
    mlflow_run_url: str | None = None
    face_region_source: str | None = None  # e.g. "known_mask" or "detection: 80, aligned_prior: 20"
    attribute_mix: dict = field(default_factory=dict)  # test set, data.demographics.attribute_mix
    strata: list[dict] = field(default_factory=list)  # accuracy per demographic stratum
    strata_attributes: str | None = None  # e.g. "gender" or "gender+age+race"
    verdict_label: str | None = None  # the verdict with its confounds, explain.confounds.decorate
    confounds: list[dict] = field(default_factory=list)  # warning parity checks of the data set

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

    def value(self, name: str) -> float | None:
        return self.metrics.get(name)

    def with_interval(self, name: str) -> str:
        low, high = self.metrics.get(f"{name}_ci_low"), self.metrics.get(f"{name}_ci_high")
        text = _num(self.value(name))
        return f"{text} [{_num(low, 2)}, {_num(high, 2)}]" if _finite(low) and _finite(high) \
            else text


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


def _summary_table(parts: Sequence[PartitionReport]) -> str:
    head = ("model", "background", "verdict", *(t for _, t in SUMMARY_METRICS), "face region",
            "MLflow run")
    rows = []
    for p in parts:
        call = p.verdict_label or p.verdict or "not audited"
        why = "; ".join([*p.verdict_reasons, *(f"confound {c['cue']}: {c['magnitude']}"
                                               for c in p.confounds)])
        cells = [_link(p.model, f"#{p.anchor}"), escape(p.background),
                 f'<span class="verdict {escape((p.verdict or call).split("+")[0], quote=True)}" '
                 f'title="{escape(why, quote=True)}">{escape(call)}</span>'
                 + (f"<br><small>per seed: {escape(p.verdict_per_seed)}</small>"
                    if p.verdict_per_seed else ""),
                 *(p.with_interval(name) for name, _ in SUMMARY_METRICS),
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
                caption = (f"FaceMass {_num(part.value('face_mass'))} · BG-gap "
                           f"{_num(part.value('bg_gap'))} · {escape(part.verdict or '')} · "
                           f"{_run_link(part)}")
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


def _shares(entry: dict) -> str:
    shares = [f"{escape(v)} {share:.0%}" for v, share in entry["shares"].items() if share]
    return ", ".join(shares) if entry["known"] else "unknown"


def _demographics(part: PartitionReport) -> str:
    """Test-set attribute mix per class and accuracy within demographic strata: a high accuracy
    between 'adults of one ethnicity' and 'everyone' shows up here."""
    if not part.attribute_mix:
        return ""
    rows = []
    for name in ("celebrity", "ordinary"):
        entry = part.attribute_mix.get(name, {})
        for attribute in ("gender", "age", "race"):
            if attribute in entry:
                rows.append(f"<tr><td>{escape(name)}</td><td>{attribute}</td>"
                            f"<td>{entry[attribute]['known']:.0%}</td>"
                            f"<td>{_shares(entry[attribute])}</td></tr>")
    mix = ('<table class="mix"><thead><tr><th>class</th><th>attribute</th><th>known</th>'
           f"<th>shares of known</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    genders = [f"{g}: {part.with_interval(f'acc_gender_{g.lower()}')}" for g in ("Male", "Female")
               if f"acc_gender_{g.lower()}" in part.metrics]
    summary = (f"<p>Accuracy on the matched strata ({escape(part.strata_attributes or 'none')}; "
               f"test rows in strata both classes hold, reweighted to the celebrity mix, "
               f"{_num(part.value('matched_strata_share'), 2)} of the test set): "
               f"{part.with_interval('acc_matched_strata')}; per gender: "
               f"{escape('; '.join(genders) or 'no gender held by both classes')}.</p>")
    strata = "".join(
        f"<tr><td>{escape(str(s['stratum']))}</td><td>{s['celebrity']}</td><td>{s['ordinary']}"
        f"</td><td>{'yes' if s['matched'] else 'no'}</td><td>{_num(s['accuracy'])}</td></tr>"
        for s in part.strata)
    table = ('<table class="strata"><thead><tr><th>stratum</th><th>celebrity</th>'
             "<th>ordinary</th><th>in both</th><th>accuracy</th></tr></thead>"
             f"<tbody>{strata}</tbody></table>") if strata else ""
    return f"<h4>Demographics of the test set</h4>{mix}{summary}{table}"


def _verdict_line(part: PartitionReport) -> str:
    """The verdict with the data set's confounds (which check, by how much) and the transfer
    accuracy beside in-source accuracy: what a `face` does and does not show."""
    call = part.verdict_label or part.verdict or "not audited"
    confounds = "; ".join(f"{c['cue']} ({c['check']}): {c['magnitude']}" for c in part.confounds)
    transfer = "; ".join(f"{name} photos from another source called {name}: "
                         f"{part.with_interval(f'transfer_acc_{name}')} "
                         f"({int(part.value(f'transfer_identities_{name}') or 0)} identities)"
                         + (f", control (own test photos as hard to see) "
                            f"{part.with_interval(f'transfer_control_acc_{name}')}"
                            if part.value(f"transfer_control_acc_{name}") is not None else "")
                         for name in ("celebrity", "ordinary")
                         if part.value(f"transfer_acc_{name}") is not None)
    return (f'<p class="verdict-line">Verdict: <b>{escape(call)}</b>. In-source test accuracy '
            f"{part.with_interval('acc_original')}. Confounds of the data set: "
            f"{escape(confounds or 'none')}. Source transfer: {escape(transfer or 'not tested')}."
            "</p>")


def _partition_section(part: PartitionReport, figures: dict[str, Path], out_dir: Path) -> str:
    title = f"{part.model} × {part.background}"
    thumbs = "".join(_thumb(figures[k], out_dir, f"{title} {k}") for k in FIGURE_KINDS
                     if k in figures)
    thumbs += "".join(_thumb(path, out_dir, f"{title} {k}") for k, path in sorted(figures.items())
                      if k not in FIGURE_KINDS)
    return (f'<section id="{escape(part.anchor, quote=True)}"><h3>{escape(title)}</h3>'
            f"{_verdict_line(part)}"
            f"<p>MLflow run: {_run_link(part)}</p>{_epoch_table(part)}"
            f'<div class="figures">{thumbs}</div>{_demographics(part)}</section>')


STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;
margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:center;font-size:.9em}
.verdict{color:#b00;font-weight:bold}.verdict.face{color:#070}.verdict.chance,
.verdict.inconclusive{color:#a60}
.figures img{margin:.3em;border:1px solid #ddd}"""


def _rule() -> str:
    """The verdict rule the audit applies, stated from the same thresholds it uses."""
    t = THRESHOLDS
    return (
        "<p>Verdict rule (one function, <code>explain.verdict.decide</code>; every number with its "
        "95% bootstrap interval over identities): <b>chance</b> when the test accuracy's interval "
        f"does not clear {t.chance_ci_low}; otherwise every family whose controlled effect "
        f"(BG-gap = mixed-same − mixed-other; profile swaps of quality, geometry, colour, "
        f"compression, position, border and noise = own profile − other class's profile) "
        f"has its whole interval above {t.controlled_effect} and a control costing at most "
        f"{t.control_cost} is named, and so is the background "
        f"when background-only accuracy's interval lies above {t.background_only}; "
        "<b>inconclusive</b> when an effect's interval straddles its threshold, when a family's "
        f"control costs more than {t.control_cost} (untestable), when face-only "
        f"accuracy does not clear {t.chance_ci_low} or drops more than {t.face_only_drop}, "
        f"when the FaceMass lift of either class is at most {t.face_mass_lift_class}, or when the face "
        "evidence is missing or weak in either class; <b>face</b> only when, in each class, "
        "removing the eyes, nose and mouth costs more than "
        f"{t.face_features_drop} (whole interval) and removing the same area of the person "
        f"elsewhere costs less (whole interval). "
        "<b>face</b> means the facial features decide and no tested shortcut family was found, "
        "not that nothing else is used. "
        "Matched transforms (resample, JPEG, blur, zoom, shift, greyscale) have no class control "
        "and are reported in the audit's metadata, not used by the verdict. "
        f"With several training seeds the rule runs per seed (<code>explain.seeds</code>): "
        "<b>face</b> only when every seed says face, a family named when most seeds name it; "
        f"fewer than {MIN_IDENTITIES} test identities in a class make it <b>inconclusive</b> "
        "(too few identities).</p>")


QUALITY_CUE_TITLES = {"face_px": "face resolution (px)", "jpeg_quality": "JPEG quality",
                      "sharpness": "sharpness", "face_share": "face share of frame"}


def quality_matching_text(dataset: Mapping) -> str:
    """Whether match_quality was used, with its targets: the sentence both renderings share."""
    if not dataset.get("match_quality"):
        return "Quality matching: not used (images as the face stage made them)."
    px, q = dataset.get("target_face_px"), dataset.get("target_jpeg_quality")
    resample = f"faces resampled down to {px:.0f} px across" if _finite(px) else \
        "no resampling (no face resolution measured)"
    encode = f"JPEG re-encoded at quality {q:.0f}" if _finite(q) else \
        "no re-encoding (no JPEG source)"
    quantile = dataset.get("quantile")
    which = f" (quantile {quantile:g} of the lower class)" if _finite(quantile) else ""
    return f"Quality matching: used, both classes alike{which}: {resample}; {encode}."


def quality_parity_text(dataset: Mapping) -> str:
    return (f"quality_parity: {'PASS' if dataset.get('passed') else 'WARN'}: "
            f"{dataset.get('description', '')}")


def _quality_section(dataset: Mapping | None) -> str:
    """Per-class source quality cues of the study set, and whether they were matched."""
    if dataset is None:
        return ""
    head = ("cue", "celebrity median (n)", "ordinary median (n)", "SMD", "p persons", "p images",
            "separates")
    rows = []
    for cue, row in dataset.get("table", {}).items():
        cells = [QUALITY_CUE_TITLES.get(cue, cue),
                 f"{_num(row['celebrity']['median'])} ({row['celebrity']['n']})",
                 f"{_num(row['ordinary']['median'])} ({row['ordinary']['n']})",
                 _num(row["smd"], 2), _p(row["p_persons"]), _p(row["p_images"]),
                 "yes" if row["separates"] else "no"]
        rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (f"<h2>Preprocessing: source quality cues</h2>"
            f"<p>{escape(quality_matching_text(dataset))}</p>"
            f"<p>{escape(quality_parity_text(dataset))}</p>"
            f'<table id="quality-cues"><thead><tr>{header}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _p(value: float | None) -> str:
    return f"{value:.2g}" if _finite(value) else "–"


def _parts(partitions: Sequence[Mapping | PartitionReport]) -> list[PartitionReport]:
    return sorted((p if isinstance(p, PartitionReport) else PartitionReport.from_dict(p)
                   for p in partitions), key=_order)


def render_report(
    partitions: Sequence[Mapping | PartitionReport],
    out_dir: Path,
    title: str = "Study report: faces or shortcuts?",
    dataset: Mapping | None = None,
) -> Path:
    """Write out_dir/study_report.html (+ figures/) for every partition and return its path;
    `dataset` (data.quality.quality_summary) adds the study set's quality cues and matching."""
    parts = _parts(partitions)
    keys = [(p.model, p.background) for p in parts]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate model x background partitions")
    out_dir = Path(out_dir)
    figures_dir = out_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    figures = {(p.model, p.background): _copy_figures(p, figures_dir) for p in parts}
    flagged = sum(p.verdict not in (None, "face", "chance", "inconclusive") for p in parts)
    body = (f"<h1>{escape(title)}</h1>"
            f"<p>{len(parts)} partitions; {flagged} with a named shortcut family.</p>{_rule()}"
            f"<h2>Faces or shortcuts</h2>{_summary_table(parts)}{_quality_section(dataset)}"
            f"<h2>Class-average contrastive Grad-CAM (celebrity | ordinary)</h2>"
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


def summary_markdown(partitions: Sequence[Mapping | PartitionReport],
                     dataset: Mapping | None = None) -> str:
    """The summary table as Markdown, for the report asset's materialization metadata."""
    names = ("acc_original", "acc_face_only", "face_features_drop", "face_features_control_drop",
             "bg_gap", "family_quality_drop", "family_geometry_drop", "family_colour_drop",
             "family_compression_drop", "family_position_drop", "family_border_drop",
             "family_noise_drop", "face_mass")
    lines = ["| model | background | verdict | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for p in _parts(partitions):
        cells = [p.model, p.background, p.verdict_label or p.verdict or "not audited",
                 *(p.with_interval(n) for n in names)]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    if dataset is not None:
        lines += ["", _md_cell(quality_matching_text(dataset)), "",
                  _md_cell(quality_parity_text(dataset))]
    return "\n".join(lines)
