"""The study's data stages at several sizes: images/s, cores busy, memory, growth per doubling.

Generates the synthetic study on this machine (demo/synthetic.py: nothing to download), half
celebrity photos (20 per person) and half ordinary faces, at the study's 224 px, in a fresh store
per size, then runs each stage once and prints one line per stage:

  images, wall seconds, images/s, cores busy ((CPU time of this process, its pool workers and
  their forkserver) / wall), that CPU time (steadier than wall time on a shared machine), peak
  memory of this process, GPU busy % (nvidia-smi sampled while
  the stage runs, when a GPU exists; else n/a).

It then prints how each stage's wall time grew from one size to the next, against the growth of
its images (2x the images should cost at most 2.2x the time). Runs against whichever
beauty_pipeline is first on PYTHONPATH, so `PYTHONPATH=/path/to/other/checkout python
bench/bench_scale.py --label other` measures another commit with the same script.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil

import beauty_pipeline
from beauty_pipeline.data.split import SplitSettings, build_study_set
from beauty_pipeline.data.variants import VariantSettings, build_variant
from beauty_pipeline.demo.synthetic import DemoSpec
from beauty_pipeline.demo.zoo import world_faces
from beauty_pipeline.storage import ImageStore

PHOTOS_PER_PERSON = 20
BACKGROUNDS = ("original", "white", "random")


@dataclass
class StageCost:
    """One stage at one size."""

    stage: str
    images: int
    wall: float
    cores: float
    cpu: float
    peak_mib: float
    gpu: str

    @property
    def rate(self) -> float:
        return self.images / self.wall if self.wall else float("nan")


def cpu_seconds() -> float:
    """CPU time of this process, its children (the forkserver) and what they reaped (workers)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:4])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:4])
    return total


class GpuSampler:
    """nvidia-smi utilisation sampled every half second while a stage runs ('n/a' without)."""

    def __init__(self):
        self.available = shutil.which("nvidia-smi") is not None
        self.samples: list[float] = []
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits"], capture_output=True,
                                     text=True, timeout=5).stdout.split()
                self.samples.append(float(out[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return

    def __enter__(self) -> GpuSampler:
        if self.available:
            self.thread = threading.Thread(target=self._loop, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def busy(self) -> str:
        if not self.available:
            return "n/a"
        return f"{sum(self.samples) / len(self.samples):.0f}%" if self.samples else "0%"


def timed(stage: str, images: int, work):
    """Run one stage, measuring its wall time, CPU use, peak memory and GPU use."""
    cpu, start = cpu_seconds(), time.perf_counter()
    with GpuSampler() as gpu:
        result = work()
    wall = time.perf_counter() - start
    cores = (cpu_seconds() - cpu) / wall if wall else float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result, StageCost(stage, images, wall, cores, cores * wall, peak, gpu.busy())


def spec_for(images: int, size: int, seed: int) -> DemoSpec:
    """About `images` synthetic photos, half celebrity (20 per person), half ordinary."""
    persons = max(4, round(images / 2 / PHOTOS_PER_PERSON))
    return DemoSpec(image_size=size, persons=persons, photos_per_person=PHOTOS_PER_PERSON,
                    ordinary=images - persons * PHOTOS_PER_PERSON, seed=seed)


def variant_settings(seed: int, workers: int) -> VariantSettings:
    """Settings for build_variant; `workers` only where this checkout has it."""
    fields = getattr(VariantSettings, "__dataclass_fields__", {})
    return VariantSettings(seed=seed, **({"workers": workers} if "workers" in fields else {}))


def rendered(spec: DemoSpec, store: ImageStore, cache: Path | None) -> pd.DataFrame:
    """The synthetic photos in the store; with a cache folder, rendered once per size and copied
    in afterwards, so runs compared side by side build from the same files."""
    if cache is None:
        return world_faces(spec, store)
    folder = cache / f"{spec.persons}p-{spec.ordinary}o-{spec.image_size}px-{spec.seed}"
    if not (folder / "faces.parquet").is_file():
        faces = world_faces(spec, ImageStore(folder / "images"))
        faces.to_parquet(folder / "faces.parquet")
    shutil.copytree(folder / "images", store.root, dirs_exist_ok=True)
    return pd.read_parquet(folder / "faces.parquet")


def one_pass_pools():
    """The CLI pass's pool scope (one set of workers for every data stage) where this checkout
    has it; nothing where it does not."""
    try:
        from beauty_pipeline.parallel import kept_pools
    except ImportError:
        return contextlib.nullcontext()
    return kept_pools()


def run_size(images: int, size: int, seed: int, workers: int, root: Path,
             cache: Path | None = None) -> list[StageCost]:
    """Every data stage once, on a fresh store, for one study size (pools kept for the whole
    size, as `beauty-pipeline study` keeps them for its pass)."""
    with one_pass_pools():
        return _run_size(images, size, seed, workers, root, cache)


def _run_size(images: int, size: int, seed: int, workers: int, root: Path,
              cache: Path | None = None) -> list[StageCost]:
    store = ImageStore(root / "images")
    spec = spec_for(images, size, seed)
    faces, render = timed("render photos", images, lambda: rendered(spec, store, cache))
    study, split = timed("study set", len(faces),
                         lambda: build_study_set(faces, store, SplitSettings(seed=seed)))
    costs = [render, split]
    for background in BACKGROUNDS:
        result, cost = timed(f"variant {background}", len(study), lambda b=background:
                             build_variant(study, b, store, None, variant_settings(seed, workers)))
        costs.append(cost)
        steps = getattr(getattr(result, "work", None), "steps", {})  # where the checkout has it
        if steps:
            print(f"       variant {background} steps (wall s): " + ", ".join(
                f"{step} {done['wall_seconds']:.1f}" for step, done in steps.items()), flush=True)
    data = sum(c.wall for c in costs[1:])
    cpu = sum(c.cpu for c in costs[1:])
    costs.append(StageCost("data stages (after render)", len(study), data, cpu / data, cpu,
                           costs[-1].peak_mib, "n/a"))
    return costs


def table(label: str, runs: dict[int, list[StageCost]]) -> str:
    """One line per stage and size, then each stage's growth between consecutive sizes."""
    lines = [f"### {label}", "",
             "| size | stage | images | wall s | images/s | cores busy | CPU s | peak MiB | GPU busy |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for size, costs in runs.items():
        lines += [f"| {size} | {c.stage} | {c.images} | {c.wall:.1f} | {c.rate:.1f} | "
                  f"{c.cores:.2f} | {c.cpu:.1f} | {c.peak_mib:.0f} | {c.gpu} |" for c in costs]
    sizes = list(runs)
    if len(sizes) > 1:
        lines += ["", "| stage | " + " | ".join(f"{a}->{b}" for a, b in zip(sizes, sizes[1:], strict=False))
                  + " |", "|---|" + "---:|" * (len(sizes) - 1)]
        for k, cost in enumerate(runs[sizes[0]]):
            cells = []
            for a, b in zip(sizes, sizes[1:], strict=False):
                first, second = runs[a][k], runs[b][k]
                cells.append(f"{second.images / first.images:.2f}x images, "
                             f"{second.wall / first.wall:.2f}x wall, "
                             f"{second.cpu / max(first.cpu, 1e-9):.2f}x CPU")
            lines.append(f"| {cost.stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merged_tables(files: list[Path]) -> str:
    """Tables from --json files, merged per label (sizes measured in separate, interleaved runs)."""
    merged: dict[str, dict[int, list[StageCost]]] = {}
    for path in files:
        for label, runs in json.loads(path.read_text()).items():
            for images, costs in runs.items():
                merged.setdefault(label, {})[int(images)] = [StageCost(**c) for c in costs]
    out = [table(label, dict(sorted(runs.items()))) for label, runs in merged.items()]
    labels = list(merged)
    for later in labels[1:]:  # side by side: each later label's time as a share of the first's
        first, second = merged[labels[0]], merged[later]
        lines = ["", f"### {later} vs {labels[0]} (same sizes, run alternately)",
                 "", "| size | stage | " + f"{labels[0]} wall s | {later} wall s | share | "
                 f"{labels[0]} CPU s | {later} CPU s | share |",
                 "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for images in sorted(set(first) & set(second)):
            for a, b in zip(first[images], second[images], strict=True):
                lines.append(f"| {images} | {a.stage} | {a.wall:.1f} | {b.wall:.1f} | "
                             f"{b.wall / a.wall:.0%} | {a.cpu:.1f} | {b.cpu:.1f} | "
                             f"{b.cpu / max(a.cpu, 1e-9):.0%} |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 600, 1200])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=0, help="0 = every core")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="", help="names the table (default: the checkout)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--render-cache", type=Path,
                        help="render each size once into this folder and copy it in after")
    parser.add_argument("--tables", type=Path, nargs="+",
                        help="print the tables of earlier --json files (one size each, "
                             "run side by side) instead of measuring")
    args = parser.parse_args()
    if args.tables:
        print(merged_tables(args.tables))
        return 0
    label = args.label or str(Path(beauty_pipeline.__file__).resolve().parents[1])
    print(f"beauty_pipeline from {Path(beauty_pipeline.__file__).parent}, "
          f"{psutil.cpu_count()} cores, {args.image_size} px", flush=True)
    runs = {}
    for images in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            runs[images] = run_size(images, args.image_size, args.seed, args.workers, Path(tmp),
                                    args.render_cache)
        for c in runs[images]:
            print(f"{images:>6} {c.stage:<28} {c.images:>6} {c.wall:>8.1f}s {c.rate:>8.1f}/s "
                  f"{c.cores:>5.2f} cores {c.cpu:>7.1f} CPU s {c.peak_mib:>7.0f} MiB  GPU {c.gpu}",
                  flush=True)
    print()
    print(table(label, runs))
    if args.json:
        args.json.write_text(json.dumps({label: {n: [c.__dict__ for c in costs]
                                                 for n, costs in runs.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
