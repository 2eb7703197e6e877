"""Worker pools started from a plain script with no __main__ guard: no bootstrapping error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import require_shared

from beauty_pipeline.parallel import runs_code_at_import

REPO = Path(__file__).resolve().parents[1]


def test_guarded_and_unguarded_scripts_are_told_apart():
    assert runs_code_at_import("import x\nx.run()\n")
    assert runs_code_at_import("import x\nresult = x.run()\n")
    assert runs_code_at_import("for i in range(3):\n    pass\n")
    assert not runs_code_at_import(textwrap.dedent('''
        """doc"""
        import x
        LIMIT = 3
        def main():
            x.run()
        if __name__ == "__main__":
            main()
    '''))


UNGUARDED = '''
import json, logging, sys, tempfile
from pathlib import Path
from beauty_pipeline.storage import ImageStore
from beauty_pipeline.vision.faces import FaceConfig, process_photos

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
with open(sys.argv[3], "a") as runs:   # one line per execution of this script's body
    runs.write("ran\\n")
store = ImageStore(Path(tempfile.mkdtemp()) / "images")
files = sorted(Path(sys.argv[1]).glob("*.jpg"))[:8]
rows = [(f.name, store.put_bytes(f.read_bytes(), "jpg")) for f in files]
results = {}
for workers in (2, 1):
    config = FaceConfig(detector_model_path=sys.argv[2], workers=workers, min_pool_images=1,
                        batch_size=2)
    _, report = process_photos(rows, store, config, person="p", looks=0)
    results[workers] = report[["row_id", "drop_reason", "image_key"]].values.tolist()
# the mask pool too: GrabCut masks in 2 workers, then in this process into a second store
from beauty_pipeline.data.masks import compute_masks, load_mask, mask_jobs
from beauty_pipeline.vision.segmentation import GrabCutSegmenter
grabcut = GrabCutSegmenter()
jobs = mask_jobs([key for _, key in rows], [(100.0, 100.0, 300.0, 330.0)] * len(rows), grabcut)
alone = ImageStore(Path(tempfile.mkdtemp()) / "images")
for _, key in rows:
    alone.put_bytes(store.path(key).read_bytes(), "jpg")
results["masks"] = [compute_masks(jobs, store, grabcut, workers=2),
                    compute_masks(jobs, alone, grabcut, workers=1),
                    all((load_mask(store, k) == load_mask(alone, k)).all() for k, _, _ in jobs)]
print(json.dumps(results))
'''


def test_face_and_mask_pools_from_a_script_without_main_guard(tmp_path, yunet_model):
    photos = require_shared("data", "fairface_margin125")
    script = tmp_path / "plain_script.py"
    script.write_text(UNGUARDED)
    runs = tmp_path / "runs.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's package, in workers too
    done = subprocess.run([sys.executable, str(script), str(photos), str(yunet_model), str(runs)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bootstrapping phase" not in done.stderr
    assert "workers start without re-importing it" in done.stderr  # the pool ran ...
    assert "running in one process" not in done.stderr             # ... and did not fall back
    assert runs.read_text().splitlines() == ["ran"]                # no worker reran the script
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["2"] == results["1"] and len(results["2"]) == 8  # pool == one process
    assert results["masks"] == [8, 8, True]


MATERIALIZE_UNGUARDED = '''
import logging, sys
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image
from dagster import AssetKey, asset, materialize
from beauty_pipeline.assets.dataset import face_dataset_variant
from beauty_pipeline.resources import ManifestIOManager, StudyStorage
from beauty_pipeline.storage import ImageStore

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
home = Path(sys.argv[2])
store = ImageStore(home / "images")
files = sorted(Path(sys.argv[1]).glob("*.jpg"))[:8]
keys = [store.put_array(np.asarray(Image.open(f).convert("RGB").resize((160, 160))))
        for f in files]
frame = pd.DataFrame({"sample_id": range(8), "image_key": keys,
                      "split": ["train"] * 4 + ["test"] * 4, "looks": [0, 1] * 4,
                      "person": [f"p{i}" for i in range(8)], "face_x0": 55.0, "face_y0": 48.0,
                      "face_x1": 105.0, "face_y1": 112.0, "person_mask_key": "", "age": "",
                      "gender": "", "race": ""})

@asset(name="face_dataset")
def stub() -> pd.DataFrame:
    return frame

resources = {"io_manager": ManifestIOManager(root=str(home)), "storage": StudyStorage(root=str(home))}
materialize([stub], resources=resources)
result = materialize([stub, face_dataset_variant], resources=resources, partition_key="white",
                     selection=[AssetKey("face_dataset_variant")],
                     run_config={"ops": {"face_dataset_variant": {"config": {
                         "segmenter": "grabcut", "mask_min": 0.01, "mask_max": 0.99}}}})
print("success", result.success)
'''


def test_materialize_from_a_script_without_main_guard(tmp_path):
    """Issue 9's report: a script calling `materialize` unguarded, its asset starting a pool."""
    photos = require_shared("data", "fairface_margin125")
    script = tmp_path / "materialize_script.py"
    script.write_text(MATERIALIZE_UNGUARDED)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, str(script), str(photos), str(tmp_path / "home")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bootstrapping phase" not in done.stderr
    assert "workers start without re-importing it" in done.stderr
    assert "running in one process" not in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "success True"


def test_a_broken_pool_says_so_and_leaves_the_work_to_the_caller(caplog):
    from beauty_pipeline.parallel import run_in_pool

    assert run_in_pool(pow, [(2, 3), (3, 2)], 2) == [8, 9]
    with caplog.at_level("WARNING", logger="beauty_pipeline.parallel"):
        assert run_in_pool(os._exit, [(3,), (3,)], 2) is None  # a worker dies
    assert "running in one process: the worker pool broke" in caplog.text


def test_a_kept_pool_serves_every_call_and_a_broken_one_is_replaced():
    from beauty_pipeline.parallel import kept_pools, pools_started, run_in_pool

    started = pools_started()
    with kept_pools():
        assert run_in_pool(pow, [(2, 3), (3, 2)], 2) == [8, 9]
        assert run_in_pool(pow, [(2, 5)], 2) == [32]
        assert pools_started() - started == 1
        assert run_in_pool(os._exit, [(3,), (3,)], 2) is None  # the kept pool breaks
        assert run_in_pool(pow, [(2, 4)], 2) == [16]  # a fresh one takes its place
        assert pools_started() - started == 2


def test_a_failing_call_drops_the_queued_work_instead_of_finishing_it(tmp_path):
    """Ctrl-C or an error in one call ends the pool promptly: queued calls are cancelled."""
    import time

    import pytest

    from beauty_pipeline.parallel import run_in_pool

    calls = [(["false"],)] + [(["sh", "-c", f"sleep 0.3; touch {tmp_path}/{i}"],)
                              for i in range(40)]
    with pytest.raises(subprocess.CalledProcessError):
        run_in_pool(subprocess.check_call, calls, 2)
    done = len(list(tmp_path.iterdir()))
    time.sleep(1)
    assert len(list(tmp_path.iterdir())) == done < 10  # 40 without cancelling; none run later
