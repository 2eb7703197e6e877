"""Training throughput: our cached-uint8 loop vs the study's way and vs the compute ceiling.

All three variants train the same model on the same images in one process, one after another and
round-robin over repeats, so machine noise hits all of them alike:
  study    - torch Dataset that opens the JPEG, resizes and normalises every item, every epoch;
             DataLoader(num_workers=2, shuffle), fp32
  ours     - images decoded once into the uint8 memory-mapped cache, beauty_pipeline's train_epoch
             (AMP + channels_last on CUDA)
  ceiling  - the same optimisation steps on float tensors already on the device (no data path)
On CUDA each model is also measured at --large-batch (a batch that fills the GPU), and the GPU's
busy % is sampled while our loop runs (torch.cuda.utilization, else nvidia-smi, else n/a).
Images: the real wide FairFace JPEGs in ../shared when present, else synthetic demo faces
(BEAUTY_PIPELINE_BENCH_SYNTHETIC=1 forces those, as on a bare GPU machine).
Usage: python bench/bench_training.py [--models resnet18 resnet50] [--image-size 224] [--n 96]
       [--device cpu|cuda] [--repeat 2] [--batch-size 32] [--large-batch 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from beauty_pipeline.demo.synthetic import DemoSpec, demo_ordinary_faces
from beauty_pipeline.settings import TrainSettings
from beauty_pipeline.storage import ImageStore
from beauty_pipeline.training.cache import decoded_images
from beauty_pipeline.training.feed import tune_for
from beauty_pipeline.training.loop import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Objective,
    batch_bounds,
    to_input,
    train_epoch,
)
from beauty_pipeline.training.models import build_model

SHARED_FAIRFACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fairface_margin125"
SYNTHETIC_ENV = "BEAUTY_PIPELINE_BENCH_SYNTHETIC"  # "1": ignore ../shared, draw synthetic faces


class StudyDataset(Dataset):
    """What the study's loader did: decode and resize a JPEG per item, every epoch."""

    def __init__(self, paths: list[Path], labels: np.ndarray, size: int):
        self.paths, self.labels, self.size = paths, labels, size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        with Image.open(self.paths[index]) as image:
            image = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0
        return (tensor - self.mean) / self.std, int(self.labels[index])


def source_images(n: int, workdir: Path, size: int = 300) -> list[Path]:
    """Real wide FairFace JPEGs when ../shared has them, else synthetic faces saved as JPEG."""
    real = [] if os.environ.get(SYNTHETIC_ENV) == "1" or not SHARED_FAIRFACE.is_dir() else \
        sorted(SHARED_FAIRFACE.glob("*.jpg"))[:n]
    if len(real) >= 2:
        return real
    faces = demo_ordinary_faces(DemoSpec(image_size=size, ordinary=n))
    paths = []
    for index, (_, face) in enumerate(faces):
        path = workdir / f"{index:05d}.jpg"
        Image.fromarray(face.image).save(path, quality=90)
        paths.append(path)
    return paths


class BusySampler:
    """Mean GPU utilisation while a block runs: torch.cuda.utilization (pynvml), else nvidia-smi."""

    def __init__(self, device: torch.device, every: float = 0.05):
        self.device, self.every, self.samples = device, every, []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> float | None:
        """One utilisation reading in %, or None where neither source exists."""
        if self.device.type != "cuda":
            return None
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:  # no pynvml / NVML: ask nvidia-smi  # noqa: BLE001
            pass
        if not shutil.which("nvidia-smi"):
            return None
        index = self.device.index or 0
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,"
                              "nounits", f"--id={index}"], capture_output=True, text=True, check=False)
        return float(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None

    def __enter__(self):
        if self.read() is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            value = self.read()
            if value is not None:
                self.samples.append(value)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def percent(self) -> str:
        """The mean reading, or n/a."""
        return f"{np.mean(self.samples):.0f}" if self.samples else "n/a"


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def bench_model(name: str, paths: list[Path], labels: np.ndarray, cache: np.ndarray,
                args: argparse.Namespace, batch_size: int) -> dict[str, float | str]:
    """Images per second of the study's loader, our loop and the ceiling at one batch size."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    settings = TrainSettings(batch_size=batch_size, image_size=args.image_size, device=args.device,
                             amp=cuda, channels_last=cuda)
    objective = Objective()
    tune_for(device)
    model = build_model(name).to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=settings.amp)
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(StudyDataset(paths, labels, args.image_size), batch_size=batch_size,
                        shuffle=True, num_workers=2, persistent_workers=False)
    in_memory = to_input(np.asarray(cache), torch.device("cpu"), settings.channels_last).to(device)
    targets = torch.as_tensor(labels).to(device)
    bounds = batch_bounds(len(in_memory), batch_size)

    def study() -> None:
        model.train()
        for inputs, batch_labels in loader:
            inputs, batch_labels = inputs.to(device), batch_labels.to(device)
            loss = objective.loss(model(inputs), batch_labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)

    def ours() -> None:
        train_epoch(model, cache, labels, objective, optimizer, scaler, settings, device, generator)
        sync(device)

    def ceiling() -> None:
        model.train()
        order = torch.randperm(len(in_memory), generator=generator).to(device)
        for start, stop in bounds:
            index = order[start:stop]
            with torch.autocast("cuda", dtype=torch.float16, enabled=settings.amp):
                loss = objective.loss(model(in_memory[index]).float(), targets[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        sync(device)

    variants = {"ours": ours, "ceiling": ceiling}
    if batch_size == args.batch_size:
        variants = {"study": study, **variants}
    ours()  # warm-up (allocators, cuDNN autotuning)
    ceiling()
    best = dict.fromkeys(variants, float("inf"))
    busy = BusySampler(device)
    for _ in range(args.repeat):
        for label, step in variants.items():
            if label == "ours":
                with busy:
                    best[label] = min(best[label], timed(step))
            else:
                best[label] = min(best[label], timed(step))
    rates: dict[str, float | str] = {label: len(paths) / seconds for label, seconds in best.items()}
    rates["busy"] = busy.percent()
    return rates


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--large-batch", type=int, default=256,
                        help="also measured on CUDA only: a batch that fills the GPU (0 = skip)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cuda = torch.device(args.device).type == "cuda"
    sizes = [args.batch_size] + ([args.large_batch] if cuda and args.large_batch else [])
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        paths = source_images(args.n, workdir, max(args.image_size, 64))
        labels = np.arange(len(paths)) % 2
        store = ImageStore(workdir / "store")
        keys = [store.put_bytes(path.read_bytes(), "jpg") for path in paths]
        started = time.perf_counter()
        cache = decoded_images(keys, store, args.image_size, workdir / "cache")
        decode = time.perf_counter() - started
        source = "real FairFace" if paths[0].parent == SHARED_FAIRFACE else "synthetic faces"
        print(f"{len(paths)} images ({source}) at {args.image_size}px on {args.device}, torch "
              f"threads {torch.get_num_threads()}; one-time cache build {decode:.1f}s")
        if not cuda:
            print("no CUDA: the large-batch rows and GPU busy % are skipped (n/a)")
        print(f"{'model':<16}{'batch':>6}{'study img/s':>12}{'ours img/s':>12}{'ceiling':>10}"
              f"{'ours/study':>12}{'ours/ceiling':>14}{'GPU busy %':>12}")
        for name in args.models:
            for batch_size in sizes:
                r = bench_model(name, paths, labels, cache, args, batch_size)
                study = f"{r['study']:>12.1f}" if "study" in r else f"{'-':>12}"
                ratio = f"{r['ours'] / r['study']:>12.2f}" if "study" in r else f"{'-':>12}"
                print(f"{name:<16}{batch_size:>6}{study}{r['ours']:>12.1f}{r['ceiling']:>10.1f}"
                      f"{ratio}{r['ours'] / r['ceiling']:>14.2f}{r['busy']:>12}", flush=True)


if __name__ == "__main__":
    main()
