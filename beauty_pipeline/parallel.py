"""Process pools that also work from a plain script with no `if __name__ == "__main__":` guard."""

from __future__ import annotations

import ast
import json
import logging
import multiprocessing
import os
import sys
import threading
import time
import types
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from beauty_pipeline.progress import emit
from beauty_pipeline.storage import ChunkLedger

log = logging.getLogger(__name__)


def main_script() -> Path | None:
    """The file Python runs as __main__ (a script, or a module run with -m); None for a REPL/-c."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    origin = getattr(spec, "origin", None) or getattr(main, "__file__", None)
    return Path(origin) if origin and Path(origin).is_file() else None


def runs_code_at_import(source: str) -> bool:
    """Whether a module calls anything at top level outside an `if __name__ == "__main__":` block:
    a spawned or forkserver worker re-imports __main__, and would run that code again."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return True
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                             ast.ClassDef)):
            continue
        if isinstance(node, ast.If) and _is_main_guard(node.test):
            continue
        if any(isinstance(inner, ast.Call) for inner in ast.walk(node)):
            return True
    return False


def _is_main_guard(test: ast.expr) -> bool:
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__" and len(test.comparators) == 1
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


# Modules every worker may run a task from, imported once by the forkserver before any worker
# forks: a worker then starts with them loaded instead of importing them itself, in every pool.
WORKER_MODULES = ("beauty_pipeline.data.variants", "beauty_pipeline.data.quality",
                  "beauty_pipeline.vision.faces", "scipy.fftpack")

_KEPT: dict[int, ProcessPoolExecutor] = {}  # worker count -> pool, while a kept_pools() is open
_KEEP = {"depth": 0}
_KEEP_LOCK = threading.Lock()
_STARTED = {"pools": 0}


def one_thread_worker() -> None:
    """One thread per worker for OpenCV, OpenMP and onnxruntime: the pool, not each library,
    uses the cores."""
    import cv2

    cv2.setNumThreads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


@contextmanager
def kept_pools():
    """Inside, a worker pool outlives the step that started it: every chunked step of a variant
    build (or of a whole CLI pass) reuses one set of workers instead of starting its own."""
    with _KEEP_LOCK:
        _KEEP["depth"] += 1
    try:
        yield
    finally:
        with _KEEP_LOCK:
            _KEEP["depth"] -= 1
            closing = list(_KEPT.values()) if _KEEP["depth"] == 0 else []
            if closing:
                _KEPT.clear()
        for pool in closing:
            pool.shutdown(wait=True, cancel_futures=True)


def pools_started() -> int:
    """How many worker pools this process has started (tests count the start-ups)."""
    return _STARTED["pools"]


def _pool(workers: int, context) -> tuple[ProcessPoolExecutor, bool]:
    """A kept pool of this size, or a new one (kept when a kept_pools() is open); and whether
    the caller owns it (must shut it down)."""
    with _KEEP_LOCK:
        kept = _KEEP["depth"] > 0
        if kept and workers in _KEPT:
            return _KEPT[workers], False
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=one_thread_worker)
        _STARTED["pools"] += 1
        if kept:
            _KEPT[workers] = pool
        return pool, not kept


def _forget(pool: ProcessPoolExecutor) -> None:
    with _KEEP_LOCK:
        for workers, kept in list(_KEPT.items()):
            if kept is pool:
                del _KEPT[workers]


def run_in_pool(function, calls: list[tuple], workers: int, on_result=None) -> list | None:
    """[function(*args) for args in calls] from a forkserver worker pool, in order; None when no
    pool could run them (the caller then works in its own process), with the reason logged.

    Workers fork from a clean single-threaded server that has imported WORKER_MODULES once:
    safe under threaded parents (Dagster) and fast to start; inside kept_pools() the same
    workers serve every call. They need only the package's modules, so when __main__ is a
    script that runs code at import (no `if __name__ == "__main__":` guard) they start without
    re-importing it, instead of rerunning the script and failing in its bootstrapping phase.
    `on_result` sees each result as it is collected (progress bars)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        log.warning("running in one process: no forkserver start method on this platform")
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_MODULES))
    script = main_script()
    unguarded = script is not None and runs_code_at_import(script.read_text(errors="replace"))
    if unguarded:
        log.info("%s runs code at import (no __main__ guard): workers start without "
                 "re-importing it", script)
    pool, owned = _pool(workers, context)
    try:
        try:
            with _main_hidden(unguarded):
                # forkserver pools start workers during submit(), never later
                futures = [pool.submit(function, *args) for args in calls]
            results = []
            for future in futures:
                results.append(future.result())
                if on_result is not None:
                    on_result(results[-1])
        except BaseException:
            # Ctrl-C or a failure: drop the queued calls instead of finishing them all first
            _forget(pool)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        if owned:
            pool.shutdown(wait=True)
        return results
    except BrokenProcessPool as error:
        log.warning("running in one process: the worker pool broke (%s)", error)
        return None


@contextmanager
def _main_hidden(hide: bool):
    """Show multiprocessing a __main__ with no file or spec, so workers do not import it."""
    if not hide:
        yield
        return
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


MIN_POOL_JOBS = 64  # fewer images than this to compute: starting a pool costs more than it saves


@dataclass
class ChunkCount:
    """What a chunked step did: chunks computed now vs read back from its ledger, and its time."""

    computed: int = 0
    reused: int = 0
    images: int = 0
    wall_seconds: float = 0.0
    steps: dict = field(default_factory=dict)

    def add(self, step: str, computed: int, reused: int, images: int, seconds: float) -> None:
        """Tally one step's chunks and time (a variant build runs several steps)."""
        self.computed += computed
        self.reused += reused
        self.images += images
        self.wall_seconds += seconds
        self.steps[step] = {"chunks_computed": computed, "chunks_reused": reused,
                            "images": images, "wall_seconds": round(seconds, 3)}


def _json_value(value):
    """numpy scalars as the Python numbers they hold; anything else JSON lacks as its text."""
    return value.item() if isinstance(value, np.generic) else str(value)


def _plain(results) -> list:
    """Results as JSON gives them back, so fresh, pooled and ledger results compare equal."""
    return json.loads(json.dumps(list(results), default=_json_value))


def run_chunks(step: str, function, context: tuple, jobs: list, *, ledger: ChunkLedger | None,
               workers: int = 0, chunk_size: int = 16, count: ChunkCount | None = None,
               on_chunk=None,
               still_valid=None, min_pool_jobs: int = MIN_POOL_JOBS, on_fresh=None,
               label: str = "") -> list:
    """[function(*context, chunk) for each chunk of jobs], flattened in job order: in a process
    pool when there is more than one chunk to compute and more than one core, else here.

    Every finished chunk is recorded in the ledger as it is collected (under a digest of the
    step, the context and the chunk's jobs), and chunks the ledger already holds are not
    computed again: a step stopped half way resumes from its last finished
    chunk. `on_chunk(done_chunks)` runs after each recorded chunk (a stop can be injected there).
    Progress goes out as `label` (else `step`) events, one unit per job. `still_valid(results)` may refuse a
    ledger entry whose outputs are gone; `on_fresh(results)` sees each chunk computed now."""
    start = time.perf_counter()
    chunks = [jobs[i:i + chunk_size] for i in range(0, len(jobs), chunk_size)]
    ids = [ChunkLedger.chunk_id(step, [list(context), chunk]) for chunk in chunks]  # settings too
    results = [ledger.get(chunk) if ledger is not None else None for chunk in ids]
    results = [found if found is None or still_valid is None or still_valid(found) else None
               for found in results]
    todo = [k for k, found in enumerate(results) if found is None]
    reused = len(chunks) - len(todo)
    state = {"done": sum(len(chunks[k]) for k in range(len(chunks)) if results[k] is not None),
             "computed": 0}
    if jobs:
        emit(label or step, state["done"], len(jobs))

    def finished(k: int, out) -> None:
        out = _plain(out)
        if ledger is not None:
            ledger.record(ids[k], out)
        results[k] = out
        if on_fresh is not None:
            on_fresh(out)
        state["done"] += len(chunks[k])
        state["computed"] += 1
        emit(label or step, state["done"], len(jobs))
        if on_chunk is not None:
            on_chunk(state["computed"])

    try:
        cap = workers or os.cpu_count() or 1  # the pool's size: the same for every step
        if min(cap, len(todo)) > 1 and sum(len(chunks[k]) for k in todo) >= min_pool_jobs:
            order = iter(todo)
            run_in_pool(function, [(*context, chunks[k]) for k in todo], cap,
                        on_result=lambda out: finished(next(order), out))
        for k in todo:  # one core, one chunk, or a pool that broke part way: the rest here
            if results[k] is None:
                finished(k, function(*context, chunks[k]))
    finally:
        if count is not None:
            count.add(step, state["computed"], reused, len(jobs), time.perf_counter() - start)
    return [result for chunk in results for result in chunk]
