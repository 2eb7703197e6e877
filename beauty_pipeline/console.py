"""What the `beauty-pipeline` commands print: progress bars, the results table, where to look."""

from __future__ import annotations

import resource
import shutil
import sys
from pathlib import Path

from beauty_pipeline.progress import ProgressEvent

DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


def _interval(result: dict, name: str, signed: bool = False) -> str:
    value = result.get(name)
    if value is None:
        return ""
    low, high = result.get(f"{name}_ci_low"), result.get(f"{name}_ci_high")
    fmt = "+.2f" if signed else ".2f"
    return f"{value:{fmt}} [{low:{fmt}},{high:{fmt}}]" if low is not None else f"{value:{fmt}}"


def results_table(partitions: dict[str, dict]) -> str:
    """One row per model x background: accuracies and the audit's effects with 95% intervals."""
    columns = (("test acc", "acc_original", False), ("face-only", "acc_face_only", False),
               ("BG-gap", "bg_gap", True), ("quality", "family_quality_drop", True),
               ("geometry", "family_geometry_drop", True), ("colour", "family_colour_drop", True))
    transfer = [(f"transfer {name[:4]}.", f"transfer_acc_{name}", False)
                for name in ("celebrity", "ordinary")
                if any(f"transfer_acc_{name}" in (o.get("shortcut_audit") or {})
                       for o in partitions.values())]  # only when a transfer set was given
    columns = (*columns, *transfer)
    header = f"{'model/background':<28} {'val':>5} " + \
        " ".join(f"{title:>20}" for title, _, _ in columns) + f" {'lift':>5}  verdict"
    lines = [header, "-" * len(header)]
    for name, outputs in partitions.items():
        if "classifier" not in outputs:
            continue
        last = outputs["classifier"]["history"][-1]
        audit = outputs.get("shortcut_audit") or {}
        lift = (outputs.get("gradcam") or {}).get("face_mass_lift")
        lines.append(f"{name:<28} {last['val_accuracy']:>5.2f} " +
                     " ".join(f"{_interval(audit, key, signed):>20}" for _, key, signed in columns)
                     + f" {'' if lift is None else f'{lift:.2f}':>5}  "
                     f"{audit.get('verdict_label') or audit.get('verdict', '')}")
    return "\n".join(lines)


def prepare_home(home: Path, env: dict[str, str], name: str) -> Path:
    """A Dagster home inside the data root and `<name>.env` for `dagster dev` on the same data."""
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    if DAGSTER_YAML.exists():  # a source checkout: same instance settings as `dagster dev`
        shutil.copy(DAGSTER_YAML, home / "dagster" / "dagster.yaml")
    env_file = home / f"{name}.env"
    env_file.write_text("".join(f"export {k}={v}\n" for k, v in env.items()))
    return env_file


def closing_summary(home: Path, env_file: Path, report, minutes: float) -> str:
    """The results table, the run's time and memory, and how to open both UIs on this data."""
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    summary = report.partitions.get("study_report") or {}
    html = f"  (report: {summary['html']})" if "html" in summary else ""
    reused = f"; {len(report.skipped)} steps done before were reused" if report.skipped else ""
    return f"""
{results_table(report.partitions)}

finished in {minutes:.1f} min (peak memory {peak_gib:.1f} GiB){reused}
  Dagster storage : {home / 'dagster'}
  MLflow store    : {home / 'mlflow.db'} (artifacts in {home / 'mlartifacts'})
  outputs         : {home / 'outputs'}{html}

Open the Dagster UI on this data:
  . {env_file} && dagster dev -m beauty_pipeline.definitions -h 127.0.0.1 -p 3000
Open the MLflow UI on this data:
  mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'} -h 127.0.0.1 -p 5000"""


class ProgressView:
    """Progress events as rich bars on a terminal, as one line per finished task in a log file."""

    # in a log, a person's few photos through detection are not worth a line each
    min_logged = {"face detection": 200}

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bars = None
        self.tasks: dict[str, int] = {}
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bars = Progress(TextColumn("{task.description:<34}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[detail]}"),
                                 console=Console(file=self.stream), transient=False)

    def __enter__(self) -> ProgressView:
        if self.bars is not None:
            self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bars is not None:
            self.bars.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if self.bars is None:
            if event.done >= event.total and event.total >= self.min_logged.get(event.task, 1):
                detail = f" ({event.detail})" if event.detail else ""
                print(f"  [{event.task}] {event.done}/{event.total} done{detail}",
                      file=self.stream, flush=True)
            return
        if event.task not in self.tasks:
            self.tasks[event.task] = self.bars.add_task(event.task, total=event.total, detail="")
        self.bars.update(self.tasks[event.task], completed=event.done, total=event.total,
                         detail=event.detail)
