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


def non_finite_tensors(state: Any, prefix: str = "") -> list[str]:
    """Names of floating tensors holding NaN or infinity (a diverged or damaged checkpoint)."""
    if isinstance(state, torch.Tensor):
        return [prefix or "tensor"] if state.is_floating_point() and \
            not bool(torch.isfinite(state).all()) else []
    if isinstance(state, dict):
        return [n for k, v in state.items() for n in non_finite_tensors(v, f"{prefix}.{k}"
                                                                         if prefix else str(k))]
    if isinstance(state, list | tuple):
        return [n for i, v in enumerate(state) for n in non_finite_tensors(v, f"{prefix}[{i}]")]
    return []


def load_state(path: Path) -> dict[str, Any]:
    """Load tensors and plain containers only (weights_only): a pickled payload is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line for line in str(error).splitlines() if "Unsupported global" in line]
        first = (lines or str(error).splitlines())[0].strip()
        with open(path, "rb") as handle:
            head = handle.read(4)
        if lines or head[:1] == b"\x80" or head == b"PK\x03\x04":  # a pickle / torch zip
            raise CheckpointError(
                f"refusing {path}: it holds pickled objects beyond tensors and plain containers "
                f"({first[:160]}); use a weights-only state_dict") from error
        raise CheckpointError(f"{path} is not a torch checkpoint (unreadable pickle data); "
                              "replace it with a file saved by torch.save") from error
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, AttributeError,
            IndexError, TypeError) as error:
        detail = str(error).splitlines()[0][:100] if str(error).strip() else "empty or truncated"
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({type(error).__name__}: "
                              f"{detail}); replace it with a file saved by torch.save") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict; save "
                              "model.state_dict() instead")
    bad = non_finite_tensors(state)
    if bad:
        raise CheckpointError(f"{path} has NaN or infinite weights in {len(bad)} tensor(s) "
                              f"(e.g. {', '.join(bad[:3])}); retrain or use an earlier checkpoint")
    return state


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
