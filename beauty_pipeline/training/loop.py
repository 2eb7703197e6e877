"""A plain training loop on uint8 arrays: one metrics record per epoch, reported by callback."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from beauty_pipeline.settings import DEVICE_ENV, TrainSettings
from beauty_pipeline.training.checkpoints import EpochCheckpoints
from beauty_pipeline.training.feed import RunningTotals, batches, tune_for

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EpochMetrics:
    """What the study's tables report per epoch, plus speed."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    val_loss: float
    val_accuracy: float
    epoch_seconds: float
    images_per_second: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class Objective:
    """Loss and number of correct predictions for single-label classification."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, targets)

    def correct(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        return float((logits.argmax(1) == targets).sum())

    def correct_count(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """`correct` as a device tensor, so a CUDA epoch never waits for the GPU per batch."""
        return (logits.argmax(1) == targets).sum()


def seeded(seed: int) -> torch.Generator:
    """Seed torch's global generator before a model is built, so initial weights are reproducible."""
    return torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' is BEAUTY_PIPELINE_DEVICE (the CLI's --device) when set, else CUDA when present."""
    if name == "auto":
        name = os.environ.get(DEVICE_ENV, "auto") or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_input(batch: np.ndarray | torch.Tensor, device: torch.device,
             channels_last: bool = False) -> torch.Tensor:
    """uint8 NHWC to a normalised float NCHW tensor on the device (ImageNet statistics)."""
    if isinstance(batch, np.ndarray) and not (batch.flags.writeable and batch.flags.c_contiguous):
        batch = np.array(batch)  # a read-only memmap view: torch wants its own writable copy
    tensor = torch.as_tensor(batch).to(device, non_blocking=True)
    tensor = tensor.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    tensor = (tensor - mean) / std
    return tensor.contiguous(memory_format=torch.channels_last) if channels_last else tensor


def autocast(device: torch.device, enabled: bool):
    """bf16/fp16 autocast on CUDA only: on the CPU fp32 is both faster and exact here."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


CUDA_EVAL_BATCH = 512  # eval batches on CUDA start here and halve until they fit in memory


def eval_batch_size(settings: TrainSettings, device: torch.device) -> int:
    """The setting when given; else the CPU's max(batch, 64) as always, CUDA_EVAL_BATCH on CUDA."""
    if settings.eval_batch_size:
        return settings.eval_batch_size
    return CUDA_EVAL_BATCH if device.type == "cuda" else max(settings.batch_size, 64)


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 64,
                   device: torch.device | None = None) -> np.ndarray:
    """Logits for a uint8 image array, in eval mode (on CUDA: halving the batch if it won't fit)."""
    device = device or next(model.parameters()).device
    model.eval()
    while True:
        try:
            return _logits_in_batches(model, images, batch_size, device)
        except torch.cuda.OutOfMemoryError:
            if device.type != "cuda" or batch_size == 1:
                raise
            torch.cuda.empty_cache()
            batch_size = max(1, batch_size // 2)


def _logits_in_batches(model: nn.Module, images: np.ndarray, batch_size: int,
                       device: torch.device) -> np.ndarray:
    """One pass of predict_logits at a fixed batch size."""
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        if device.type == "cuda":
            batch = torch.from_numpy(np.ascontiguousarray(batch)).pin_memory()
        with autocast(device, device.type == "cuda"):
            outputs.append(model(to_input(batch, device)).float().cpu())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 2), np.float32)


@torch.no_grad()
def evaluate(model: nn.Module, images: np.ndarray, targets: np.ndarray, objective: Objective,
             batch_size: int, device: torch.device) -> tuple[float, float]:
    """Mean loss and accuracy on a held-out set (NaN for an empty one)."""
    if images is None or len(images) == 0:
        return float("nan"), float("nan")
    logits = torch.as_tensor(predict_logits(model, images, batch_size, device))
    labels = torch.as_tensor(np.asarray(targets))
    return float(objective.loss(logits, labels)), objective.correct(logits, labels) / len(labels)


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch (start, stop) pairs; a last batch of one joins the one before (batch norm needs two)."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def train_epoch(model, images, targets, objective, optimizer, scaler, settings: TrainSettings,
                device: torch.device, generator: torch.Generator) -> tuple[float, float]:
    """One pass over shuffled batches; returns mean loss and accuracy.

    On CUDA the next batch is gathered and copied while this one trains (training/feed.py)."""
    model.train()
    order = torch.randperm(len(images), generator=generator).numpy()
    channels_last = settings.channels_last and device.type == "cuda"
    indices = [np.sort(order[start:stop]) for start, stop in batch_bounds(len(order),
                                                                           settings.batch_size)]
    totals = RunningTotals(device)

    def prepare(batch, where):
        return to_input(batch, where, channels_last)

    for inputs, labels in batches(images, targets, indices, device, prepare):
        with autocast(device, settings.amp):
            logits = model(inputs)
            loss = objective.loss(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        totals.add(loss, logits, labels, objective)
    return totals.means(len(order))


def train(model: nn.Module, train_images: np.ndarray, train_targets: np.ndarray,
          test_images: np.ndarray, test_targets: np.ndarray, settings: TrainSettings,
          checkpoints: EpochCheckpoints | None = None,
          on_epoch: Callable[[EpochMetrics], None] | None = None,
          objective: Objective | None = None, extra_state: dict | None = None,
          val_images: np.ndarray | None = None, val_targets: np.ndarray | None = None,
          ) -> list[EpochMetrics]:
    """Adam training for settings.epochs, resuming after the last checkpointed epoch.

    Build the model under `seeded(settings.seed)` so its initial weights are reproducible too;
    the validation split (identity-grouped, from train) is what anything tuned may look at.
    """
    objective = objective or Objective()
    device = resolve_device(settings.device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    model.to(device)
    tune_for(device)
    if settings.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    scaler = torch.amp.GradScaler("cuda", enabled=settings.amp and device.type == "cuda")
    history: list[EpochMetrics] = []
    resumed = checkpoints.latest() if checkpoints else None
    if resumed:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        history = [EpochMetrics(**record) for record in resumed["history"]]
    generator = torch.Generator().manual_seed(settings.seed)
    for _ in history:  # replay the shuffles of finished epochs so a resumed run matches
        torch.randperm(len(train_images), generator=generator)
    for epoch in range(len(history) + 1, settings.epochs + 1):
        started = time.perf_counter()
        train_loss, train_acc = train_epoch(model, train_images, train_targets, objective,
                                            optimizer, scaler, settings, device, generator)
        seconds = time.perf_counter() - started
        eval_batch = eval_batch_size(settings, device)
        test_loss, test_acc = evaluate(model, test_images, test_targets, objective, eval_batch,
                                       device)
        val_loss, val_acc = evaluate(model, val_images, val_targets, objective, eval_batch, device)
        metrics = EpochMetrics(epoch, train_loss, train_acc, test_loss, test_acc, val_loss, val_acc,
                               seconds, len(train_images) / seconds)
        history.append(metrics)
        if checkpoints:
            checkpoints.save(epoch, {"model": model.state_dict(),
                                     "optimizer": optimizer.state_dict(),
                                     "history": [m.as_dict() for m in history],
                                     **(extra_state or {})})
        if on_epoch:
            on_epoch(metrics)
    return history
