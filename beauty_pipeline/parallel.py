"""Process pools that also work from a plain script with no `if __name__ == "__main__":` guard."""

from __future__ import annotations

import ast
import logging
import multiprocessing
import sys
import types
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

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


def run_in_pool(function, calls: list[tuple], workers: int, preload: list[str],
                initializer=None, on_result=None) -> list | None:
    """[function(*args) for args in calls] from a forkserver worker pool, in order; None when no
    pool could run them (the caller then works in its own process), with the reason logged.

    Workers fork from a clean single-threaded server that has imported the heavy modules once:
    safe under threaded parents (Dagster) and fast to start. They need only the package's
    modules, so when __main__ is a script that runs code at import (no
    `if __name__ == "__main__":` guard) they start without re-importing it, instead of rerunning
    the script and failing in its bootstrapping phase. `on_result` sees each result as it is
    collected (progress bars)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        log.warning("running in one process: no forkserver start method on this platform")
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    script = main_script()
    unguarded = script is not None and runs_code_at_import(script.read_text(errors="replace"))
    if unguarded:
        log.info("%s runs code at import (no __main__ guard): workers start without "
                 "re-importing it", script)
    try:
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=initializer)
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
            pool.shutdown(wait=True, cancel_futures=True)
            raise
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
