"""Progress events from long stages (face batches, epochs) to whoever shows them: the CLI's bars.

The domain code only calls `emit`; with no listener (Dagster UI, daemon, tests) it costs a lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """`done` of `total` units of one task (e.g. 'resnet18/white epochs', 3 of 10)."""

    task: str
    done: int
    total: int
    detail: str = ""


_listeners: list[Callable[[ProgressEvent], None]] = []


def emit(task: str, done: int, total: int, detail: str = "") -> None:
    """Tell every listener how far a task has come; a listener's failure never stops the work."""
    for listener in list(_listeners):
        try:
            listener(ProgressEvent(task, int(done), int(total), detail))
        except Exception:  # noqa: BLE001 - a display problem must not fail a training run
            _listeners.remove(listener)


@contextmanager
def listening(listener: Callable[[ProgressEvent], None]) -> Iterator[None]:
    """Receive progress events while the block runs."""
    _listeners.append(listener)
    try:
        yield
    finally:
        if listener in _listeners:
            _listeners.remove(listener)
