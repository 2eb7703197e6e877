"""The study report renders every partition: tables, heatmap grid, figure and MLflow links."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from beauty_pipeline.explain.plots import (
    figure_name,
    plot_accuracy_curves,
    plot_class_averages,
    plot_overlays,
)
from beauty_pipeline.report.html import PartitionReport, render_report, summary_markdown

MODELS = ("resnet18", "efficientnet_b0")
BACKGROUNDS = ("original", "random")


class _Collector(HTMLParser):
    """Tables (as lists of row texts), hrefs and ids of the page."""

    def __init__(self):
        super().__init__()
        self.tables, self.hrefs, self.ids, self._row, self._cell = {}, [], set(), None, None
        self._table = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table":
            self._table = attrs.get("id", f"table{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "a":
            self.hrefs.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._table:
            self.tables[self._table].append(self._row)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _partition(tmp: Path, model: str, background: str, index: int) -> dict:
    rng = np.random.default_rng(index)
    heat, labels = rng.random((4, 24, 24)).astype(np.float32), np.array([0, 1, 0, 1])
    images = (rng.random((4, 24, 24, 3)) * 255).astype(np.uint8)
    epochs = [{"epoch": e, "train_accuracy": 0.6 + 0.1 * e, "val_accuracy": 0.5 + 0.05 * e,
               "test_accuracy": 0.55 + 0.05 * e, "train_loss": 0.9 / e, "val_loss": 1.1 / e,
               "test_loss": 1.0 / e} for e in (1, 2, 3)]
    shortcut = background == "original"
    gap = 0.59 if shortcut else 0.02
    return {
        "model": model, "background": background, "epochs": epochs,
        "verdict": "background" if shortcut else "face",
        "verdict_reasons": ["background/mixed_other_vs_mixed_same: +0.59"] if shortcut else [],
        "metrics": {"face_mass": 0.2 if shortcut else 0.4, "acc_original": 0.99,
                    "acc_original_ci_low": 0.95, "acc_original_ci_high": 1.0,
                    "bg_gap": gap, "bg_gap_ci_low": gap - 0.1, "bg_gap_ci_high": gap + 0.1},
        "figures": {
            "class_average": str(plot_class_averages(heat, labels, tmp / f"{index}_avg.png")),
            "overlays": str(plot_overlays(images, heat, tmp / f"{index}_ov.png", labels=labels)),
            "accuracy_curves": str(plot_accuracy_curves(epochs, tmp / f"{index}_acc.png")),
        },
        "mlflow_run_id": f"run{index}", "mlflow_run_url": f"http://mlflow.local/#/runs/run{index}",
        "face_region_source": "known_mask",
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    src = tmp_path_factory.mktemp("figs")
    parts = [_partition(src, m, b, i)
             for i, (m, b) in enumerate((m, b) for m in MODELS for b in BACKGROUNDS)]
    out = tmp_path_factory.mktemp("report")
    path = render_report(parts, out)
    collector = _Collector()
    collector.feed(path.read_text())
    return parts, out, path, collector


def test_every_partition_in_summary_with_verdict(rendered):
    parts, _, _, page = rendered
    header, rows = page.tables["summary"][0], page.tables["summary"][1:]
    assert {"person-only", "features removed: drop", "same area elsewhere: drop", "compression",
            "position", "border", "noise", "lift celebrity", "lift ordinary"} <= set(header)
    assert {(r[0], r[1]) for r in rows} == {(p["model"], p["background"]) for p in parts}
    for row in rows:
        assert row[2] == ("background" if row[1] == "original" else "face")
        assert row[-1].startswith("run")
        gap = 0.59 if row[1] == "original" else 0.02
        assert row[3] == "0.990 [0.95, 1.00]"  # every figure with its interval
        assert row[header.index("BG-gap")] == f"{gap:.3f} [{gap - 0.1:.2f}, {gap + 0.1:.2f}]"


def test_header_states_the_rule_the_code_applies(rendered):
    from beauty_pipeline.explain.verdict import THRESHOLDS

    _, _, path, _ = rendered
    text = path.read_text()
    assert "explain.verdict.decide" in text
    for value in (THRESHOLDS.chance_ci_low, THRESHOLDS.controlled_effect,
                  THRESHOLDS.background_only, THRESHOLDS.face_only_drop,
                  THRESHOLDS.control_cost, THRESHOLDS.face_features_drop):
        assert str(value) in text
    assert "FaceMass &lt; 0.5" not in text  # the old rule, which the code no longer applies


def test_every_epoch_table_present(rendered):
    parts, _, _, page = rendered
    for p in parts:
        table = page.tables[f"epochs-{p['model']}__{p['background']}"]
        assert table[0] == ["epoch", "train_accuracy", "val_accuracy", "test_accuracy",
                            "train_loss", "val_loss", "test_loss"]
        assert [r[0] for r in table[1:]] == ["1", "2", "3"]
        assert float(table[1][3]) == pytest.approx(p["epochs"][0]["test_accuracy"])


def test_heatmap_grid_and_links(rendered):
    parts, out, _, page = rendered
    grid = page.tables["heatmap-grid"]
    assert grid[0] == ["model", "original", "random"]
    assert [r[0] for r in grid[1:]] == list(MODELS)
    for p in parts:
        assert p["mlflow_run_url"] in page.hrefs
        assert f"#{p['model']}__{p['background']}" in page.hrefs
        for kind in p["figures"]:
            rel = f"figures/{figure_name(p['model'], p['background'], kind)}"
            assert rel in page.hrefs and (out / rel).is_file()


def test_text_is_escaped_and_unsafe_urls_not_linked(tmp_path):
    evil = {"model": "<script>alert(1)</script>", "background": "original",
            "mlflow_run_id": '"><img src=x onerror=alert(1)>',
            "mlflow_run_url": "javascript:alert(1)"}
    html = render_report([evil], tmp_path).read_text()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "javascript:" not in html
    assert "&lt;script&gt;" in html


def test_rejects_unknown_keys_and_duplicates(tmp_path):
    with pytest.raises(ValueError):
        PartitionReport.from_dict({"model": "resnet18", "background": "white", "bggap": 0.1})
    same = {"model": "resnet18", "background": "white"}
    with pytest.raises(ValueError):
        render_report([same, dict(same)], tmp_path)


def test_markdown_summary_and_rerender_is_stable(rendered, tmp_path):
    parts, out, path, _ = rendered
    md = summary_markdown(parts)
    assert md.count("\n") == len(parts) + 1 and "| resnet18 | original | background |" in md
    again = render_report(parts, out)
    assert again == path and again.read_bytes() == path.read_bytes()
