"""Demo wall time with and without this branch's MLflow additions, side by side in one command.

Variants, each a fresh `beauty-pipeline demo` in its own data root, run in rotation so machine
load hits all of them alike:
  before   the code at --before (e.g. /work/main: no logged models, registry, inputs, metrics)
  after    this checkout, system metrics on (the default)
  no_sysm  this checkout, BEAUTY_PIPELINE_SYSTEM_METRICS=0
Prints every run and, per variant, the median; ratios after/before and after/no_sysm.
--parallel starts the variants of a round at the same time instead (on a machine others load
unpredictably, the load then hits all of them within the same minutes).

  python bench/bench_mlflow.py --before /work/main --rounds 2 -- --persons 12 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def one_demo(code: Path, env_extra: dict[str, str], demo_args: list[str], root: Path) -> float:
    """Seconds for one demo from a fresh data root with `code` first on the path."""
    root.mkdir(parents=True, exist_ok=True)
    home = root / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(code), **env_extra}
    env.pop("BEAUTY_PIPELINE_HOME", None)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "beauty_pipeline.cli", "demo", "--home", str(home),
                    *demo_args], env=env, check=True, cwd=root, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    shutil.rmtree(home, ignore_errors=True)
    return seconds


def parallel_round(variants: dict, demo_args: list[str], root: Path) -> dict[str, float]:
    """Every variant at once, each in its own data root."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(variants)) as pool:
        futures = {name: pool.submit(one_demo, code, extra, demo_args, root / name)
                   for name, (code, extra) in variants.items()}
        return {name: future.result() for name, future in futures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="checkout to compare against")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--parallel", action="store_true")
    parser.add_argument("demo_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    demo_args = [a for a in args.demo_args if a != "--"]
    variants = {"before": (Path(args.before), {}),
                "after": (HERE, {"BEAUTY_PIPELINE_SYSTEM_METRICS": "1"}),
                "no_sysm": (HERE, {"BEAUTY_PIPELINE_SYSTEM_METRICS": "0"})}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="bench_mlflow_") as tmp:
        for round_ in range(args.rounds):
            if args.parallel:
                for name, seconds in parallel_round(variants, demo_args, Path(tmp)).items():
                    times[name].append(seconds)
                    print(f"round {round_ + 1} {name:8s} {seconds:7.1f} s (parallel)", flush=True)
                continue
            order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for name in order:
                code, extra = variants[name]
                seconds = one_demo(code, extra, demo_args, Path(tmp) / name)
                times[name].append(seconds)
                print(f"round {round_ + 1} {name:8s} {seconds:7.1f} s", flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        print(f"median {name:8s} {value:7.1f} s  (runs: {', '.join(f'{t:.1f}' for t in times[name])})")
    print(f"after / before  = {median['after'] / median['before']:.3f}")
    print(f"after / no_sysm = {median['after'] / median['no_sysm']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
