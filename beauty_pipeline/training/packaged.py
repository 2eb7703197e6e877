"""A trained classifier packaged for people who load it elsewhere: it takes the pictures as they
are (uint8 RGB, NHWC, at the training size) and does the normalisation the training used."""

from __future__ import annotations

import torch
from torch import nn

from beauty_pipeline.training.loop import IMAGENET_MEAN, IMAGENET_STD

CLASS_NAMES = ("ordinary", "celebrity")  # logit index = the `looks` label


class PackagedClassifier(nn.Module):
    """uint8 NHWC in, logits out: a loaded model needs no knowledge of the training's
    preprocessing, and gives the same numbers the pipeline's evaluation did."""

    def __init__(self, network: nn.Module, image_size: int,
                 class_names: tuple[str, ...] = CLASS_NAMES):
        super().__init__()
        self.network = network
        self.image_size = int(image_size)
        self.class_names = tuple(class_names)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The same operations, in the same order, as training's `to_input`, then the network."""
        tensor = images.permute(0, 3, 1, 2).float().div_(255.0)
        return self.network((tensor - self.mean) / self.std)
