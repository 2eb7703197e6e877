"""Feeding the GPU: batches gathered on a host thread into pinned memory, copied on a side stream.

On the CPU every function here is the plain synchronous path the loop always used (so CPU runs
stay bit-exact); the CUDA-only parts (pinned memory, a side stream, a look-ahead thread, cuDNN
autotuning) are never touched there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

LOOKAHEAD = 2  # host batches gathered ahead of the one training


def tune_for(device: torch.device) -> None:
    """cuDNN autotuning on CUDA (fixed input sizes: it picks the fastest kernels once)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def host_batch(images, targets, index: np.ndarray, pin: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and int64 labels of one batch as torch tensors, page-locked when `pin`."""
    pixels = torch.from_numpy(np.ascontiguousarray(images[index]))
    labels = torch.from_numpy(np.ascontiguousarray(np.asarray(targets)[index]).astype(np.int64))
    if pin:
        pixels, labels = pixels.pin_memory(), labels.pin_memory()
    return pixels, labels


def batches(images, targets, indices: Sequence[np.ndarray], device: torch.device,
            prepare) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, labels) on the device per index array; `prepare` turns uint8 NHWC into inputs.

    CPU: one batch at a time, exactly as before. CUDA: a host thread gathers the next batches into
    pinned memory and the copy of batch i+1 runs on a side stream while batch i trains."""
    if device.type != "cuda":
        for index in indices:
            labels = torch.as_tensor(np.asarray(targets)[index]).to(device)
            yield prepare(images[index], device), labels
        return
    yield from _cuda_batches(images, targets, indices, device, prepare)


def _cuda_batches(images, targets, indices, device, prepare):
    """The CUDA feeder: look-ahead host gathering, non-blocking copies on a side stream."""
    side = torch.cuda.Stream(device)
    main = torch.cuda.current_stream(device)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="host-batches") as gatherer:
        pending = [gatherer.submit(host_batch, images, targets, index, True)
                   for index in indices[:LOOKAHEAD]]
        queued = len(pending)

        def upload(future):
            """Start one batch's copy (and normalisation) on the side stream."""
            pixels, labels = future.result()
            side.wait_stream(main)  # memory freed by the main stream may be reused here
            with torch.cuda.stream(side):
                inputs = prepare(pixels, device)
                on_device = labels.to(device, non_blocking=True)
            return inputs, on_device

        ready = upload(pending.pop(0)) if pending else None
        while ready is not None:
            if queued < len(indices):
                pending.append(gatherer.submit(host_batch, images, targets, indices[queued], True))
                queued += 1
            main.wait_stream(side)
            inputs, labels = ready
            inputs.record_stream(main)
            labels.record_stream(main)
            ready = upload(pending.pop(0)) if pending else None
            yield inputs, labels


class RunningTotals:
    """Sum of loss x batch size and of correct predictions over an epoch.

    CPU: Python floats per batch, as the loop always did (bit-exact metrics). CUDA: float64 sums
    kept on the device, read once at the end, so no batch waits for the GPU to report a number."""

    def __init__(self, device: torch.device):
        self.on_device = device.type == "cuda"
        self.loss = torch.zeros((), dtype=torch.float64, device=device) if self.on_device else 0.0
        self.correct = torch.zeros((), dtype=torch.float64, device=device) if self.on_device else 0.0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, objective) -> None:
        """Add one batch."""
        if self.on_device:
            self.loss += loss.detach().double() * len(labels)
            self.correct += objective.correct_count(logits.detach().float(), labels).double()
        else:
            self.loss += loss.item() * len(labels)
            self.correct += objective.correct(logits.detach().float(), labels)

    def means(self, n: int) -> tuple[float, float]:
        """Mean loss and accuracy over n images."""
        return float(self.loss) / n, float(self.correct) / n
