"""Batched Captum Grad-CAM of the contrastive score, back-propagated only to the target layer.

The score explained is logit(class) - mean(logits of the other classes): what makes the model
prefer this class. The raw logit would also light up whatever raises every logit alike (that a
person is present at all), which ranks face-using models *below* background-using ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

Target = Literal["predicted", "true"]


@dataclass(frozen=True)
class GradCamResult:
    """Heatmaps plus the logits of the same forward pass, so explaining costs no extra inference."""

    heatmaps: np.ndarray  # (N, H, W) float32, ReLU'd Grad-CAM at input size, unnormalised
    logits: np.ndarray  # (N, C) float32
    targets: np.ndarray  # (N,) int64, the class each heatmap explains

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)


@contextmanager
def strict_fp32(device: torch.device) -> Iterator[None]:
    """Forward, backward and CAM in true fp32 whatever the caller set: no autocast and no TF32.

    A caller's autocast (fp16/bf16) or cuDNN's default TF32 convolutions change a heatmap by far
    more than its own resolution on a GPU; the map must not depend on the device. The global
    TF32 flags are restored exactly afterwards."""
    cuda_matmul = torch.backends.cuda.matmul.allow_tf32
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.autocast(device.type, enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = cuda_matmul
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        torch.set_float32_matmul_precision(precision)


@contextmanager
def inference_only(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the duration, then restore both exactly as they were."""
    modes = {module: module.training for module in model.modules()}
    flags = {param: param.requires_grad for param in model.parameters()}
    model.eval()
    for param in flags:
        param.requires_grad_(False)
    try:
        yield model
    finally:
        for param, flag in flags.items():
            param.requires_grad_(flag)
        for module, mode in modes.items():
            module.training = mode


class _ContrastiveScore(nn.Module):
    """Keeps the logits and returns each row's contrastive score for its target class."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.logits: list[Tensor] = []
        self.targets: Tensor | None = None  # None: the predicted class

    def forward(self, images: Tensor) -> Tensor:
        logits = self.model(images)
        self.logits.append(logits.detach())
        return contrastive_score(logits, self.targets)


def contrastive_score(logits: Tensor, targets: Tensor | None = None) -> Tensor:
    """logit(target) - mean(other logits), per row; target = the predicted class when None."""
    if targets is None:
        targets = logits.argmax(dim=1)
    chosen = logits.gather(1, targets.view(-1, 1)).squeeze(1)
    others = (logits.sum(dim=1) - chosen) / max(1, logits.shape[1] - 1)
    return chosen - others


def explain(
    model: nn.Module,
    layer: nn.Module,
    images: Tensor,
    target: Target | Tensor = "predicted",
    batch_size: int = 32,
) -> GradCamResult:
    """Contrastive Grad-CAM for the predicted class or given targets, plus logits, in one forward.

    `images` are normalised model inputs (N, 3, H, W); `target` is "predicted" or an int tensor (N,)
    (e.g. the true labels). Parameters get no gradients: only the layer's activations do.
    Runs in strict fp32 (`strict_fp32`), so a map is the same on the CPU and on a GPU.
    """
    if isinstance(target, str):
        if target != "predicted":
            raise ValueError("target must be 'predicted' or a tensor of class indices")
        target_tensor = None
    else:
        target_tensor = torch.as_tensor(target, dtype=torch.long)
        if target_tensor.shape != (len(images),):
            raise ValueError(f"targets shape {tuple(target_tensor.shape)} != ({len(images)},)")
    device = next(model.parameters()).device
    scorer = _ContrastiveScore(model)
    cam = LayerGradCam(scorer, layer)
    size = tuple(images.shape[-2:])
    heatmaps: list[np.ndarray] = []
    with inference_only(model), strict_fp32(device):
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].detach().to(device, torch.float32)
            scorer.targets = None if target_tensor is None else \
                target_tensor[start:start + batch_size].to(device)
            coarse = cam.attribute(batch, relu_attributions=True)
            upsampled = LayerAttribution.interpolate(coarse.detach(), size, "bilinear")
            heatmaps.append(upsampled[:, 0].float().cpu().numpy())
    logits = torch.cat(scorer.logits).float().cpu().numpy() if scorer.logits else np.zeros((0, 0))
    if target_tensor is None:
        targets = logits.argmax(axis=1).astype(np.int64)
    else:
        targets = target_tensor.cpu().numpy().astype(np.int64)
    maps = np.concatenate(heatmaps) if heatmaps else np.zeros((0, *size), np.float32)
    return GradCamResult(heatmaps=maps.astype(np.float32), logits=logits, targets=targets)


def gradcam(
    model: nn.Module,
    layer: nn.Module,
    images: Tensor,
    targets: Tensor | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Just the (N, H, W) heatmaps: for `targets` when given, else for the predicted class."""
    return explain(model, layer, images, "predicted" if targets is None else targets,
                   batch_size).heatmaps


def explain_predicted_and_true(
    model: nn.Module,
    layer: nn.Module,
    images: Tensor,
    labels: Tensor,
    batch_size: int = 32,
) -> tuple[GradCamResult, np.ndarray]:
    """Predicted-class result plus true-class heatmaps; only misclassified images are redone."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    predicted = explain(model, layer, images, "predicted", batch_size)
    true_maps = predicted.heatmaps.copy()
    wrong = np.flatnonzero(predicted.targets != labels.cpu().numpy())
    if len(wrong):
        index = torch.as_tensor(wrong)
        redo = explain(model, layer, images[index], labels[index], batch_size)
        true_maps[wrong] = redo.heatmaps
    return predicted, true_maps
