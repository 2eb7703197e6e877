"""CPU stages of one background beside the GPU steps of another, in one CLI pass.

The background variants (CPU: segmentation, inpainting) are built one after another in order;
as soon as a background's variant is done its classifier runs (train, Grad-CAM, audit) start in
their own lane. Nothing here decides who gets the GPU: every GPU step is in the Dagster
concurrency pool `gpu`, whose instance limit (one per device) lets one of them run at a time across
all runs, the CLI's and a UI backfill's alike; the rest wait in Dagster for a slot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

POLL_SECONDS = 0.2


class _Lanes:
    """Daemon threads, the first error kept, and a stop flag checked before each new step."""

    def __init__(self):
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, name: str, work: Callable[[], None]) -> threading.Thread:
        """Run `work` on a daemon thread (a Ctrl-C in the main thread is never held up by it)."""

        def body() -> None:
            try:
                if not self.stop.is_set():
                    work()
            except BaseException as error:  # noqa: BLE001 - handed to the main thread
                if self.error is None:
                    self.error = error
                self.stop.set()

        thread = threading.Thread(target=body, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()
        return thread

    def wait(self) -> None:
        """Join every lane (polling, so KeyboardInterrupt reaches the main thread), then re-raise."""
        try:
            while any(t.is_alive() for t in self.threads):
                for thread in list(self.threads):
                    thread.join(POLL_SECONDS)
        except BaseException:
            self.stop.set()  # no lane starts another step; running steps end with the process
            raise
        if self.error is not None:
            raise self.error


def _after(previous: threading.Thread | None, stop: threading.Event,
           work: Callable[[], None]) -> None:
    """Wait for the previous lane (when chained), then work unless a lane failed meanwhile."""
    if previous is not None:
        previous.join()
    if not stop.is_set():
        work()


def pool_is_limited(instance, pool: str) -> bool:
    """Whether the Dagster instance caps `pool` (its own limit, or concurrency.pools.default_limit)."""
    if instance.global_op_concurrency_default_limit is not None:
        return True
    return any(limit.name == pool for limit in instance.event_log_storage.get_pool_limits())


def overlapped(backgrounds: Sequence[str], cpu_stage: Callable[[str], None],
               gpu_stage: Callable[[str], None], overlap: bool = True,
               pool_limited: bool = True) -> None:
    """cpu_stage(b) for each background in order; gpu_stage(b) once b's cpu_stage is done.

    With `overlap` the GPU lanes run beside the next backgrounds' CPU stages, the Dagster pool
    `gpu` keeping their GPU steps to its limit; on an instance where that pool has no limit
    (`pool_limited` False) the GPU lanes go one after another instead, so two trainings never
    share torch's global seed. Without `overlap`, everything in order on this thread.
    """
    if not overlap:
        for background in backgrounds:
            cpu_stage(background)
        for background in backgrounds:
            gpu_stage(background)
        return
    lanes = _Lanes()

    def cpu_lane() -> None:
        previous: threading.Thread | None = None
        for background in backgrounds:
            if lanes.stop.is_set():
                return
            cpu_stage(background)
            after = None if pool_limited else previous
            previous = lanes.start(f"gpu-lane-{background}",
                                   lambda b=background, a=after: _after(a, lanes.stop,
                                                                        lambda: gpu_stage(b)))

    lanes.start("cpu-lane", cpu_lane)
    lanes.wait()
