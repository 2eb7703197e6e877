"""Per-epoch checkpoints so a killed training run resumes from its last completed epoch."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from beauty_pipeline.errors import PipelineError
from beauty_pipeline.storage import atomic_write_bytes


class CheckpointError(PipelineError):
    """A weights file that is missing, unsafe or does not fit the model."""


def save_state(path: Path, state: dict[str, Any]) -> Path:
    """torch.save through a temp file: a crash never leaves a truncated checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict[str, Any]:
    """Load tensors and plain containers only (weights_only): a pickled payload is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing {path.name}: it holds pickled objects beyond tensors and plain containers "
            f"({str(error).splitlines()[0]})") from error
    except (RuntimeError, EOFError) as error:
        raise CheckpointError(f"{path.name} is not a readable torch checkpoint: {error}") from error


class EpochCheckpoints:
    """epoch_<k>.pt files for one training run, valid only for the same fingerprint."""

    def __init__(self, directory: Path, fingerprint: str):
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    def path(self, epoch: int) -> Path:
        return self.directory / f"epoch_{epoch:03d}.pt"

    def save(self, epoch: int, state: dict[str, Any]) -> Path:
        path = save_state(self.path(epoch), {**state, "epoch": epoch,
                                             "fingerprint": self.fingerprint})
        for old in self.directory.glob("epoch_*.pt"):
            if old != path:
                old.unlink(missing_ok=True)
        return path

    def latest(self) -> dict[str, Any] | None:
        """The newest checkpoint of this fingerprint, or None (other settings start fresh)."""
        for path in sorted(self.directory.glob("epoch_*.pt"), reverse=True):
            try:
                state = load_state(path)
            except CheckpointError:
                continue
            if state.get("fingerprint") == self.fingerprint:
                return state
        return None
