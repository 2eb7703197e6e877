"""Seconds this branch's MLflow additions add to one classifier partition, each measured alone
(median of --repeats) into a fresh SQLite store: logging + registering the model, the two
data-set inputs, and starting/stopping the system-metrics monitor. Robust to machine load in a
way whole-demo timings are not; compare with a partition's training time.

  python bench/bench_mlflow_parts.py --model resnet18 --image-size 48 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from beauty_pipeline.model_registry import log_classifier_model, log_data_sets
from beauty_pipeline.resources.tracking import MlflowTracking
from beauty_pipeline.training.models import build_model


def timed(action) -> float:
    """Wall seconds of one call."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--rows", type=int, default=640, help="manifest rows (demo: ~600)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    network = build_model(args.model)
    rng = np.random.default_rng(0)
    manifest = pd.DataFrame({"sample_id": [f"s{i}" for i in range(args.rows)],
                             "person": [f"p{i % 40}" for i in range(args.rows)],
                             "variant_image_key": [f"{i:064x}" for i in range(args.rows)],
                             "split": rng.choice(["train", "val", "test"], args.rows),
                             "looks": rng.integers(0, 2, args.rows)})
    parts: dict[str, list[float]] = {"log_model+register": [], "log_inputs": [],
                                     "system_metrics_on_off": [], "empty_run": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            tracking = MlflowTracking(tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}")
            tracking.ensure_reachable()

            def empty(tracking=tracking):
                with tracking.run("bench", {}):
                    pass

            def sysm(tracking=tracking):
                with tracking.run("bench", {}, log_system_metrics=True):
                    pass

            parts["empty_run"].append(timed(empty))
            parts["system_metrics_on_off"].append(timed(sysm) - parts["empty_run"][-1])
            with tracking.run("bench", {}):
                parts["log_inputs"].append(timed(lambda repeat=repeat: log_data_sets(
                    manifest, f"{repeat:016x}", "bench", None)))
                parts["log_model+register"].append(timed(lambda: log_classifier_model(
                    network, args.image_size, f"bench-{args.model}", 0.5)))
    total = 0.0
    for name, values in parts.items():
        median = statistics.median(values)
        total += median if name != "empty_run" else 0.0
        print(f"{name:24s} median {median:6.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    print(f"added per partition      {total:6.2f} s")
    mlflow.end_run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
