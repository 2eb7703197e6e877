"""What the `beauty-pipeline` commands print: progress bars, the results table, where to look."""

from __future__ import annotations

import contextlib
import resource
import shutil
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from beauty_pipeline.explain.verdict import THRESHOLDS
from beauty_pipeline.progress import ProgressEvent

DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


def _interval(result: dict, name: str, signed: bool = False) -> str:
    value = result.get(name)
    if value is None:
        return ""
    low, high = result.get(f"{name}_ci_low"), result.get(f"{name}_ci_high")
    fmt = "+.2f" if signed else ".2f"
    return f"{value:{fmt}} [{low:{fmt}},{high:{fmt}}]" if low is not None else f"{value:{fmt}}"


FAMILY_SHORT = (("background", "bg"), ("quality", "q"), ("geometry", "g"), ("colour", "c"),
                ("compression", "jpg"), ("position", "pos"), ("border", "brd"), ("noise", "noi"))


def family_effects(audit: dict) -> str:
    """Every family's effect in one compact cell, e.g. 'bg+.62 q+.01 ... noi-.01'; '!' marks a
    family whose control costs too much (untestable), '*' one whose interval clears."""
    cells = []
    for family, short in FAMILY_SHORT:
        key = "bg_gap" if family == "background" else f"family_{family}_drop"
        value = audit.get(key)
        if value is None:
            continue
        cost = audit.get("composite_cost" if family == "background" else
                         f"family_{family}_control_cost")
        mark = "!" if cost is not None and cost > THRESHOLDS.control_cost else \
            "*" if (audit.get(f"{key}_ci_low") or 0) > THRESHOLDS.controlled_effect else ""
        cells.append(f"{short}{value:+.2f}{mark}".replace("0.", "."))
    return " ".join(cells)


def results_table(partitions: dict[str, dict]) -> str:
    """One row per model x background: accuracies, the face evidence (accuracy lost without the
    eyes, nose and mouth; without the same area elsewhere) and every family's effect."""
    columns = (("test acc", "acc_original", False), ("face-only", "acc_face_only", False),
               ("no features", "face_features_drop", True),
               ("control", "face_features_control_drop", True))
    transfer = [(f"transfer {name[:4]}.", f"transfer_acc_{name}", False)
                for name in ("celebrity", "ordinary")
                if any(f"transfer_acc_{name}" in (o.get("shortcut_audit") or {})
                       for o in partitions.values())]  # only when a transfer set was given
    transfer += [(f"t.control {name[:4]}.", f"transfer_control_acc_{name}", False)
                 for name in ("celebrity", "ordinary")
                 if any(f"transfer_control_acc_{name}" in (o.get("shortcut_audit") or {})
                        for o in partitions.values())]  # own test photos as hard to see
    columns = (*columns, *transfer)
    header = f"{'model/background':<28} {'val':>5} " + \
        " ".join(f"{title:>20}" for title, _, _ in columns) + \
        f" {'lift c/o':>9}  {'family effects':<44}  verdict"
    lines = [header, "-" * len(header)]
    for name, outputs in partitions.items():
        if "classifier" not in outputs:
            continue
        last = outputs["classifier"]["history"][-1]
        audit = outputs.get("shortcut_audit") or {}
        cam = outputs.get("gradcam") or {}
        lifts = [cam.get(f"face_mass_lift_{c}") for c in ("celebrity", "ordinary")]
        lift = "/".join("" if v is None else f"{v:.1f}" for v in lifts)
        lines.append(f"{name:<28} {last['val_accuracy']:>5.2f} " +
                     " ".join(f"{_interval(audit, key, signed):>20}" for _, key, signed in columns)
                     + f" {lift:>9}  {family_effects(audit):<44}  "
                     f"{audit.get('verdict_label') or audit.get('verdict', '')}")
    return "\n".join(lines + verdict_notes(partitions))


UNEXPLAINED = ("inconclusive", "chance")  # verdicts the table's columns alone do not explain


def verdict_notes(partitions: dict[str, dict]) -> list[str]:
    """Why each inconclusive or chance verdict is one, so the table never leaves a bare word."""
    notes = []
    for name, outputs in partitions.items():
        audit = outputs.get("shortcut_audit") or {}
        if audit.get("verdict") in UNEXPLAINED and audit.get("verdict_reasons"):
            notes.append(f"  {name} {audit['verdict']}: " + "; ".join(audit["verdict_reasons"]))
    return ["", "why:", *notes] if notes else []


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


def run_log(home: Path, name: str) -> Path:
    """This command's log file under <home>/logs (one per start, UTC time in the name)."""
    return home / "logs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.log"


@contextlib.contextmanager
def stderr_into(path: Path) -> Iterator[Path]:
    """Send what the block writes to sys.stderr (Dagster's console log with its stack traces,
    library chatter) to the log file: the terminal keeps the progress and the one-line result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8", buffering=1) as handle, \
            contextlib.redirect_stderr(handle):
        yield path


def log_traceback(path: Path, error: BaseException) -> None:
    """Append the full traceback of the error that stopped the command to its log file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(traceback.format_exception(error)))


@dataclass
class TaskPace:
    """How fast one task goes: units done since its first event, over the time since then."""

    started: float
    first_done: int
    last_logged: float
    last_done: int = 0
    finished: bool = False

    def rate(self, done: int, now: float) -> float | None:
        """Units per second since the task's first event; None before any progress."""
        elapsed = now - self.started
        return (done - self.first_done) / elapsed if elapsed > 0 and done > self.first_done \
            else None


def pace_text(rate: float | None, done: int, total: int) -> str:
    """'12.3 images/s, 1:05 left' (or just the rate when finished; '' before any progress)."""
    if rate is None or rate <= 0:
        return ""
    text = f"{rate:.1f}/s" if rate >= 1 else f"{60 * rate:.1f}/min"
    if done < total:
        left = int(round((total - done) / rate))
        text += f", {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left"
    return text


class ProgressView:
    """Progress events as rich bars on a terminal, as lines in a log file; both show each task's
    pace (units/s) and an estimate of the time left."""

    log_every = 30.0  # seconds between a long task's lines in a log

    # in a log, a person's few photos through detection are not worth a line each
    min_logged = {"face detection": 200}

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bars = None
        self.tasks: dict[str, int] = {}
        self.paces: dict[str, TaskPace] = {}
        self.clock = time.monotonic
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

    def _pace(self, event: ProgressEvent, now: float) -> str:
        """The task's pace text; a task that starts over (done went back) is timed afresh."""
        pace = self.paces.get(event.task)
        if pace is None or event.done < pace.last_done or pace.finished:
            pace = self.paces[event.task] = TaskPace(now, event.done, now)
        pace.last_done, pace.finished = event.done, event.done >= event.total
        return pace_text(pace.rate(event.done, now), event.done, event.total)

    def __call__(self, event: ProgressEvent) -> None:
        now = self.clock()
        pace = self._pace(event, now)
        if self.bars is None:
            finished = event.done >= event.total
            due = now - self.paces[event.task].last_logged >= self.log_every
            if (finished or due) and event.total >= self.min_logged.get(event.task, 1):
                self.paces[event.task].last_logged = now
                detail = "; ".join(part for part in (event.detail, pace) if part)
                state = "done" if finished else "so far"
                print(f"  [{event.task}] {event.done}/{event.total} {state}"
                      f"{f' ({detail})' if detail else ''}", file=self.stream, flush=True)
            return
        detail = "  ".join(part for part in (pace, event.detail) if part)
        if event.task not in self.tasks:
            self.tasks[event.task] = self.bars.add_task(event.task, total=event.total, detail="")
        self.bars.update(self.tasks[event.task], completed=event.done, total=event.total,
                         detail=detail)
