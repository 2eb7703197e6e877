"""Scale: per-image variant steps over the pool (same results as one process), plates computed
once by content, and a stopped build that resumes without redoing a finished chunk."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from beauty_pipeline import parallel
from beauty_pipeline.data import variants
from beauty_pipeline.data.backgrounds import (
    PLATE_WORK_SIDE,
    as_alpha,
    background_plate,
    plate_hole,
)
from beauty_pipeline.data.counterfactual import FACE_AREAS, build_counterfactuals, neutral_colour
from beauty_pipeline.data.split import SplitSettings, build_study_set
from beauty_pipeline.data.variants import VariantSettings, build_variant
from beauty_pipeline.demo.synthetic import DemoSpec
from beauty_pipeline.demo.zoo import world_faces
from beauty_pipeline.parallel import ChunkCount, kept_pools, pools_started, run_chunks
from beauty_pipeline.storage import ChunkLedger, ImageStore

REPO = Path(__file__).resolve().parents[1]
SPEC = DemoSpec(image_size=48, persons=12, photos_per_person=4, ordinary=48)


def make_study(root: Path) -> tuple[pd.DataFrame, ImageStore]:
    """A small synthetic study set (exact person masks) in a fresh store."""
    store = ImageStore(root / "images")
    return build_study_set(world_faces(SPEC, store), store, SplitSettings(seed=0)), store


@pytest.fixture()
def pooled(monkeypatch):
    """Every step goes to the pool, however few images it has."""
    monkeypatch.setattr(variants, "MIN_POOL_IMAGES", 1)


def test_pool_builds_the_same_variants_as_one_process(tmp_path, pooled):
    serial_study, serial_store = make_study(tmp_path / "serial")
    pool_study, pool_store = make_study(tmp_path / "pool")
    for background in ("original", "white", "random"):
        one = build_variant(serial_study, background, serial_store, None,
                            VariantSettings(workers=1))
        started = pools_started()
        two = build_variant(pool_study, background, pool_store, None, VariantSettings(workers=2))
        assert pools_started() - started == 1  # one set of workers for every step of the build
        pooled_steps = [s for s, w in two.work.steps.items() if w["chunks_computed"] > 1]
        assert len(pooled_steps) >= 3, two.work.steps
        pd.testing.assert_frame_equal(one.manifest, two.manifest)
        assert one.work.computed == two.work.computed > 4


def test_kept_pools_share_one_pool_across_builds_and_close_it(tmp_path, pooled):
    study, store = make_study(tmp_path)
    started = pools_started()
    with kept_pools():
        for background in ("original", "white", "random"):
            build_variant(study, background, store, None, VariantSettings(workers=2))
        assert pools_started() - started == 1
    assert not parallel._KEPT  # closed with the outermost scope


def test_random_plates_come_from_another_photo_of_the_same_split():
    study = pd.DataFrame({"split": ["train", "test", "train", "train", "test", "test"]})
    donors = variants.plate_donors(study, [0, 1, 3, 4, 5])
    rng = np.random.default_rng(0)
    for i, split in [(0, "train"), (2, "train"), (4, "test"), (1, "test")]:
        drawn = {donors.draw(i, split, rng) for _ in range(200)}
        expected = {j for j in [0, 1, 3, 4, 5] if study.at[j, "split"] == split and j != i}
        assert drawn == expected


def _arrays(store: ImageStore, keys) -> list[np.ndarray]:
    return [store.load(key) for key in keys]


@pytest.mark.parametrize("background", ["original", "white", "random"])
def test_counterfactual_sets_are_build_counterfactuals_own(tmp_path, background):
    """The sets composed at the call site over the pool are the ones build_counterfactuals makes
    from the same images, masks and plates."""
    study, store = make_study(tmp_path)
    manifest = build_variant(study, background, store, None, VariantSettings(workers=1)).manifest
    train, test = manifest[manifest["split"] == "train"], manifest[manifest["split"] == "test"]
    neutral = neutral_colour(_arrays(store, train["variant_image_key"]),
                             [store.load(k, "L") for k in train["mask_key"]])
    # the frameless synthetic photos' background-only image is their plate
    rows = test.assign(plate_key=test["cf_background_only_key"])
    samples = [variants.stored_sample(store, variants.sample_ref(row))
               for row in rows.itertuples(index=False)]
    built = build_counterfactuals(samples, neutral, 0)
    for name, images in built.sets.items():
        assert [store.put_array(image) for image in images] == test[f"cf_{name}_key"].tolist()
    assert (test["cf_same_partner"].to_numpy() ==
            test["sample_id"].to_numpy()[built.same_partner]).all()
    for n, name in enumerate(FACE_AREAS):  # the face tests' areas, as the serial build counts
        assert (test[f"cf_{name}_area"].to_numpy() == built.areas[:, n]).all(), name


def test_each_plate_is_inpainted_once_for_every_variant_and_rerun(tmp_path):
    study, store = make_study(tmp_path)
    settings = VariantSettings(workers=1)
    first = {b: build_variant(study, b, store, None, settings) for b in ("original", "random")}
    tests = int((study["split"] == "test").sum())
    assert first["original"].plates_computed == tests   # its counterfactual sets' plates
    assert first["random"].plates_computed == len(study) - tests  # the rest; test ones reused
    # three variants x five models: the models read the variants' manifests, and rebuilding a
    # variant (a rerun, another seed's audit) inpaints nothing
    again = [build_variant(study, b, store, None, settings).plates_computed
             for b in ("original", "white", "random") for _ in range(2)]
    assert again == [0] * 6
    plates = list((store.root / "plate-index").glob("*/*"))
    assert len(plates) == len(study)


def _chunks(result) -> int:
    return result.work.computed + result.work.reused


def test_a_stopped_build_resumes_from_its_last_finished_chunk(tmp_path):
    study, store = make_study(tmp_path / "stopped")
    clean_study, clean_store = make_study(tmp_path / "clean")
    clean = build_variant(clean_study, "random", clean_store, None, VariantSettings(workers=1))

    def stop_after(limit):
        def check(done):
            if done >= limit:
                raise KeyboardInterrupt
        return check

    stopped_after = 5
    with pytest.raises(KeyboardInterrupt):
        build_variant(study, "random", store, None, VariantSettings(workers=1),
                      on_chunk=stop_after(stopped_after))
    resumed = build_variant(study, "random", store, None, VariantSettings(workers=1))
    assert resumed.work.reused == stopped_after
    assert resumed.work.computed == _chunks(clean) - stopped_after
    pd.testing.assert_frame_equal(resumed.manifest, clean.manifest)


KILLED = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_scale import make_study
    from beauty_pipeline.data.variants import VariantSettings, build_variant

    def kill(done):
        if done >= {after}:
            import psutil  # the pool's forkserver and workers outlive a SIGKILLed parent
            pids = [p.pid for p in psutil.Process().children(recursive=True)]
            Path({root!r}, "orphans").write_text(" ".join(map(str, pids)))
            os.kill(os.getpid(), signal.SIGKILL)

    study, store = make_study(Path({root!r}))
    build_variant(study, "random", store, None, VariantSettings(workers={workers}), on_chunk=kill)
""")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_build_keeps_its_finished_chunks(tmp_path, workers):
    """SIGKILL part way (in the pool's parent when pooled): the rerun computes only the chunks
    the killed one had not recorded."""
    after = 4
    script = KILLED.format(tests=str(REPO / "beauty_pipeline_tests"), root=str(tmp_path),
                           after=after, workers=workers)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == -signal.SIGKILL
    for pid in (tmp_path / "orphans").read_text().split():  # what a SIGKILL leaves running
        with contextlib.suppress(OSError):
            os.kill(int(pid), signal.SIGKILL)
    study, store = make_study(tmp_path)
    resumed = build_variant(study, "random", store, None, VariantSettings(workers=1))
    assert resumed.work.reused == after
    assert resumed.work.computed == _chunks(resumed) - after


def _square(scale: int, chunk: list) -> list:
    """A pool task for run_chunks: pure, so pooled and serial results must match."""
    return [[x, x * x * scale] for x in chunk]


def test_run_chunks_pool_equals_serial_and_the_ledger_is_read_back(tmp_path):
    jobs = list(range(50))
    serial = run_chunks("squares", _square, (3,), jobs, ledger=None, workers=1, chunk_size=7)
    count = ChunkCount()
    ledger = ChunkLedger(tmp_path / "ledger")
    pooled = run_chunks("squares", _square, (3,), jobs, ledger=ledger, workers=2, chunk_size=7,
                        count=count, min_pool_jobs=1)
    assert pooled == serial == [[x, 3 * x * x] for x in jobs]
    assert (count.computed, count.reused) == (8, 0)
    again = ChunkCount()
    assert run_chunks("squares", _square, (3,), jobs, ledger=ledger, workers=1, chunk_size=7,
                      count=again) == serial
    assert (again.computed, again.reused) == (0, 8)
    other = ChunkCount()  # other settings (the context): nothing read back
    assert run_chunks("squares", _square, (4,), jobs, ledger=ledger, workers=1, chunk_size=7,
                      count=other)[-1] == [49, 4 * 49 * 49]
    assert (other.computed, other.reused) == (8, 0)


def _scene(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth background (gradient + soft blobs) with a person-shaped mask over it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([120 + 80 * x, 90 + 60 * y, 160 - 50 * x * y], -1)
    image = cv2.GaussianBlur(image + rng.normal(0, 20, image.shape), (0, 0), size / 30)
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (size // 2, size // 2), (size // 5, size // 4), 0, 0, 360, 255, -1)
    cv2.ellipse(mask, (size // 2, size), (size * 2 // 5, size // 3), 0, 0, 360, 255, -1)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def test_reduced_plate_is_telea_below_the_work_side_and_close_above():
    small_image, small_mask = _scene(PLATE_WORK_SIDE - 8)
    assert np.array_equal(background_plate(small_image, small_mask, method="telea-reduced"),
                          background_plate(small_image, small_mask, method="telea"))
    image, mask = _scene(300)
    hole = plate_hole(mask) > 0
    reduced = background_plate(image, mask, method="telea-reduced")
    full = background_plate(image, mask, method="telea")
    assert np.array_equal(reduced[~hole], image[~hole])  # the photo's own pixels stay
    difference = np.abs(reduced.astype(int) - full.astype(int))[hole].mean()
    assert difference < 4.0, difference
    # the fill is background, not person: no pixel of the hole keeps the person's flat colour
    person = as_alpha(mask)[..., 0] > 0.5
    assert reduced[person].std() > 1.0
    with pytest.raises(ValueError, match="unknown plate method"):
        background_plate(image, mask, method="sharpie")


def _planted_faces(root: Path) -> tuple[ImageStore, pd.DataFrame]:
    """test_quality's planted resolution cue (40 crops, two source resolutions), in a new store."""
    from test_quality import FACE_BOX, crop_with_detail

    store = ImageStore(root / "images")
    rows = []
    for i in range(40):
        looks = int(i < 20)
        detail = 150.0 + (i % 11) if looks else 70.0 + (i % 9)
        rows.append({"image_key": store.put_array(crop_with_detail(i, detail)),
                     "person": f"p{i}", "looks": looks, "face_x0": FACE_BOX[0],
                     "face_y0": FACE_BOX[1], "face_x1": FACE_BOX[2], "face_y1": FACE_BOX[3],
                     "face_px": detail, "jpeg_quality": 70.0 if i % 3 else np.nan,
                     "sharpness": np.nan, "face_share": 0.4})
    return store, pd.DataFrame(rows)


def test_quality_matching_over_the_pool_equals_one_process(tmp_path, monkeypatch):
    from beauty_pipeline.data import quality

    monkeypatch.setattr(quality, "MIN_POOL_IMAGES", 1)
    serial_store, faces = _planted_faces(tmp_path / "serial")
    pool_store, same = _planted_faces(tmp_path / "pool")
    one, targets = quality.match_quality(faces, serial_store, workers=1)
    two, pooled_targets = quality.match_quality(same, pool_store, workers=2)
    assert targets == pooled_targets and targets["jpeg_quality"] is not None
    pd.testing.assert_frame_equal(one, two)
    assert one["quality_match"].str.contains("jpeg").all()
    again, _ = quality.match_quality(faces, serial_store, workers=1)  # read from the ledger
    pd.testing.assert_frame_equal(again, one)


def test_profile_sets_over_the_pool_equal_one_process(monkeypatch):
    """The profile families' swapped test sets, chunked over two workers, are the arrays one
    process makes (the noise move draws by the image's place in the whole set)."""
    from beauty_pipeline.data import families
    from beauty_pipeline.demo.synthetic import demo_person_photos, person_name

    _, faces = demo_person_photos(DemoSpec(image_size=48, photos_per_person=20), person_name(0))
    images = np.stack([f.image for f in faces])
    masks = np.stack([f.person_mask for f in faces])
    widths = [float(f.face_box[2] - f.face_box[0]) for f in faces]
    centres = [((f.face_box[0] + f.face_box[2]) / 2, (f.face_box[1] + f.face_box[3]) / 2)
               for f in faces]
    profiles = [families.class_profile(images[:10], np.asarray(widths[:10]), masks[:10],
                                       centres[:10]),
                families.class_profile(images[10:], np.asarray(widths[10:]), masks[10:],
                                       centres[10:])]
    profiles[0] = replace(profiles[0], noise=profiles[0].noise + 12.0)  # the noise move draws
    labels = np.array([0, 1] * 10)
    monkeypatch.setattr(families, "PROFILE_CHUNK", 6)
    monkeypatch.setattr(families, "MIN_POOL_PROFILE_IMAGES", 1)
    started = pools_started()
    pooled = families.profile_sets(images, profiles, labels, widths, centres, 3, workers=2)
    assert pools_started() - started == 1
    serial = families.profile_sets(images, profiles, labels, widths, centres, 3, workers=1)
    whole = {f: tuple(families.to_profile(f, images, profiles, t, widths, centres, 3)
                      for t in (labels, 1 - labels)) for f in families.PROFILE_FAMILIES}
    for family in families.PROFILE_FAMILIES:
        for k in (0, 1):
            assert np.array_equal(pooled[family][k], whole[family][k]), family
            assert np.array_equal(serial[family][k], whole[family][k]), family
    assert not np.array_equal(whole["noise"][1], images)  # the noise move did move them


def test_a_new_counterfactual_method_is_rebuilt_not_read_back_from_finished_chunks(tmp_path,
                                                                                 monkeypatch):
    """The chunk ledger keys the sets' chunks by the sets' version: after a method change the
    variant rebuilds them (in the new layout) and reuses every other step's chunks."""
    from beauty_pipeline.data import counterfactual

    study, store = make_study(tmp_path)
    settings = VariantSettings(workers=1)
    first = build_variant(study, "original", store, None, settings)
    monkeypatch.setattr(counterfactual, "COUNTERFACTUAL_SETS_VERSION", "next")
    again = build_variant(study, "original", store, None, settings)
    rebuilt = {s: w for s, w in again.work.steps.items() if w["chunks_computed"]}
    assert list(rebuilt) == ["counterfactual sets vnext"] and first.work.computed > again.work.computed
    pd.testing.assert_frame_equal(first.manifest, again.manifest)  # the same sets, made anew
