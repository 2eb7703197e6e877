"""Training throughput: our cached-uint8 loop vs the study's way (PIL decode + resize per item).

All three variants train the same model on the same images in one process, one after another and
round-robin over repeats, so machine noise hits all of them alike:
  study    - torch Dataset that opens the JPEG, resizes and normalises every item, every epoch;
             DataLoader(num_workers=2, shuffle), fp32
  ours     - images decoded once into the uint8 memory-mapped cache, beauty_pipeline's train_epoch
             (AMP + channels_last on CUDA)
  ceiling  - the same optimisation steps on float tensors already in memory (no data path at all)
Usage: python bench/bench_training.py [--models resnet18 resnet50] [--image-size 224] [--n 96]
       [--device cpu|cuda] [--repeat 2]
"""

from __future__ import annotations

import argparse
import tempfile
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
from beauty_pipeline.training.loop import IMAGENET_MEAN, IMAGENET_STD, Objective, to_input, train_epoch
from beauty_pipeline.training.models import build_model

SHARED_FAIRFACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fairface_margin125"


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


def source_images(n: int, workdir: Path) -> list[Path]:
    """Real wide FairFace JPEGs when ../shared is there, else synthetic faces saved as JPEG."""
    if SHARED_FAIRFACE.is_dir():
        return sorted(SHARED_FAIRFACE.glob("*.jpg"))[:n]
    faces = demo_ordinary_faces(DemoSpec(image_size=300, ordinary=n))
    paths = []
    for index, (_, face) in enumerate(faces):
        path = workdir / f"{index:05d}.jpg"
        Image.fromarray(face.image).save(path, quality=90)
        paths.append(path)
    return paths


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def bench_model(name: str, paths: list[Path], labels: np.ndarray, cache: np.ndarray,
                args: argparse.Namespace) -> dict[str, float]:
    device = torch.device(args.device)
    settings = TrainSettings(batch_size=args.batch_size, image_size=args.image_size, device=args.device,
                             amp=args.device == "cuda", channels_last=args.device == "cuda")
    objective = Objective()
    model = build_model(name).to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=settings.amp)
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(StudyDataset(paths, labels, args.image_size), batch_size=args.batch_size,
                        shuffle=True, num_workers=2, persistent_workers=False)
    in_memory = to_input(np.asarray(cache), torch.device("cpu")).to(device)
    targets = torch.as_tensor(labels).to(device)

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
        for start in range(0, len(order), args.batch_size):
            index = order[start:start + args.batch_size]
            with torch.autocast("cuda", dtype=torch.float16, enabled=settings.amp):
                loss = objective.loss(model(in_memory[index]).float(), targets[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        sync(device)

    ours()  # warm-up (allocators, cuDNN autotuning)
    best = {"study": float("inf"), "ours": float("inf"), "ceiling": float("inf")}
    for _ in range(args.repeat):
        for label, step in (("study", study), ("ours", ours), ("ceiling", ceiling)):
            best[label] = min(best[label], timed(step))
    return {label: len(paths) / seconds for label, seconds in best.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        paths = source_images(args.n, workdir)
        labels = np.arange(len(paths)) % 2
        store = ImageStore(workdir / "store")
        keys = [store.put_bytes(path.read_bytes(), "jpg") for path in paths]
        started = time.perf_counter()
        cache = decoded_images(keys, store, args.image_size, workdir / "cache")
        decode = time.perf_counter() - started
        print(f"{len(paths)} images at {args.image_size}px on {args.device}, torch threads "
              f"{torch.get_num_threads()}; one-time cache build {decode:.1f}s")
        print(f"{'model':<16}{'study img/s':>12}{'ours img/s':>12}{'ceiling':>10}{'ours/study':>12}"
              f"{'ours/ceiling':>14}")
        for name in args.models:
            rates = bench_model(name, paths, labels, cache, args)
            print(f"{name:<16}{rates['study']:>12.1f}{rates['ours']:>12.1f}{rates['ceiling']:>10.1f}"
                  f"{rates['ours'] / rates['study']:>12.2f}{rates['ours'] / rates['ceiling']:>14.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
