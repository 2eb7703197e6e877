"""bench/gpu.sh runs to the end without ../shared (here on the CPU, the CUDA parts skipped)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _bench_training():
    spec = importlib.util.spec_from_file_location("bench_training", REPO / "bench" / "bench_training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_empty_fixture_folder_falls_back_to_synthetic_faces(tmp_path, monkeypatch):
    """The GPU machine's failure: a ../shared folder that yields 0 images made 0 images."""
    bench = _bench_training()
    empty = tmp_path / "fairface_margin125"
    empty.mkdir()
    monkeypatch.setattr(bench, "SHARED_FAIRFACE", empty)
    work = tmp_path / "work"
    work.mkdir()
    paths = bench.source_images(6, work, 48)
    assert len(paths) == 6 and all(p.parent == work and p.stat().st_size > 0 for p in paths)


@pytest.mark.slow
def test_gpu_sh_runs_to_the_end_without_shared_and_prints_both_tables():
    """The whole script, tiny sizes, ../shared hidden: both tables, a row per model, ratios."""
    env = {**os.environ, "BEAUTY_PIPELINE_BENCH_SYNTHETIC": "1", "BENCH_N": "8",
           "BENCH_SIZE": "48", "BENCH_REPEAT": "1", "BENCH_MODELS": "resnet18",
           "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh")], env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "no CUDA" in out and "synthetic faces" in out and out.rstrip().endswith("== done")
    training = re.search(r"^resnet18\s+32\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+n/a$", out, re.M)
    assert training, out
    study, ours, ceiling, _, ours_over_ceiling = (float(v) for v in training.groups())
    assert min(study, ours, ceiling) > 0
    # the rates are printed to 0.1 img/s and the ratio to 0.01: it must lie in what they allow
    low, high = (ours - 0.05) / (ceiling + 0.05), (ours + 0.05) / max(ceiling - 0.05, 1e-9)
    assert low - 0.005 <= ours_over_ceiling <= high + 0.005, (ours, ceiling, ours_over_ceiling)
    cam = re.search(r"^resnet18\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)x\s+(\S+)\s+(\S+)\s+nan$",
                    out, re.M)
    assert cam, out
    assert float(cam.group(7)) >= 0.99  # ours agrees with pytorch-grad-cam on the CPU
