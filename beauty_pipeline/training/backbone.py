"""The FairFace ResNet-34 backbone: the official checkpoint when given, else pre-trained here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from beauty_pipeline.data.schema import FAIRFACE_AGES, FAIRFACE_GENDERS
from beauty_pipeline.training.checkpoints import CheckpointError, load_state
from beauty_pipeline.training.loop import Objective
from beauty_pipeline.training.models import (
    FAIRFACE_OUTPUTS,
    FAIRFACE_SLICES,
    build_fairface_backbone,
)

# Official head order: race (7, FairFace's 7-race order), gender (2), age (9).
OFFICIAL_RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
                  "Middle Eastern")

def official_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a FairFace checkpoint (e.g. res34_fair_align_multi_7_20190809.pt) safely."""
    state = load_state(path)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{Path(path).name} is not a state_dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    weight = state.get("fc.weight")
    if weight is None or tuple(weight.shape) != (FAIRFACE_OUTPUTS, 512):
        shape = None if weight is None else tuple(weight.shape)
        raise CheckpointError(
            f"{Path(path).name}: fc.weight has shape {shape}, expected ({FAIRFACE_OUTPUTS}, 512) "
            "(a FairFace ResNet-34 with 7 race + 2 gender + 9 age outputs)")
    return state

def load_official_backbone(path: Path) -> nn.Module:
    """A ResNet-34 with the official FairFace weights loaded strictly."""
    model = build_fairface_backbone()
    try:
        model.load_state_dict(official_state_dict(path), strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{Path(path).name} does not fit ResNet-34: {error}") from error
    return model

def attribute_targets(frame: pd.DataFrame) -> np.ndarray:
    """(N, 3) int targets race, gender, age in the official head order; -1 when unknown."""
    vocabularies = (("race", OFFICIAL_RACES), ("gender", FAIRFACE_GENDERS), ("age", FAIRFACE_AGES))
    columns = []
    for column, vocabulary in vocabularies:
        lookup = {value: index for index, value in enumerate(vocabulary)}
        columns.append(frame[column].map(lambda v, lk=lookup: lk.get(v, -1)).to_numpy())
    return np.stack(columns, axis=1).astype(np.int64)

class AttributeObjective(Objective):
    """Sum of the three heads' cross-entropies; accuracy is the mean over heads."""

    heads = (FAIRFACE_SLICES["race"], FAIRFACE_SLICES["gender"], FAIRFACE_SLICES["age"])

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return sum(nn.functional.cross_entropy(logits[:, part], targets[:, i], ignore_index=-1)
                   for i, part in enumerate(self.heads))

    def correct(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        hits = [(logits[:, part].argmax(1) == targets[:, i]).float().mean()
                for i, part in enumerate(self.heads)]
        return float(torch.stack(hits).mean()) * len(targets)

    def correct_count(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """`correct` as a device tensor (no wait for the GPU)."""
        hits = [(logits[:, part].argmax(1) == targets[:, i]).float().mean()
                for i, part in enumerate(self.heads)]
        return torch.stack(hits).mean() * len(targets)
