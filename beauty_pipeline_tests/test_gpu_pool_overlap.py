"""CPU stages beside GPU steps: a real demo pass where the next background's variant is built
while another background's GPU run (classifier, Grad-CAM, audit) is under way, and the `gpu`
pool (limit 1) keeps GPU steps apart."""

from __future__ import annotations

import threading

import pytest
from dagster import DagsterEventType, EventRecordsFilter, instance_for_test

from beauty_pipeline.lanes import overlapped, pool_is_limited
from beauty_pipeline.study_run import DemoPlan, full_pass

GPU_STEPS = {"classifier", "gradcam", "shortcut_audit", "fairface_backbone"}


def background_of(instance, run_id: str) -> str:
    """The background of a run's partition ("" for an unpartitioned run)."""
    partition = instance.get_run_by_id(run_id).tags.get("dagster/partition", "")
    return next((b for b in ("original", "random") if b in partition.split("|")), "")


def step_intervals(instance) -> list[tuple[str, str, float, float]]:
    """(step, background, start, end) for every successful step, from the event log."""
    def records(kind):
        return instance.get_event_records(EventRecordsFilter(event_type=kind), limit=10_000)

    starts = {(r.event_log_entry.run_id, r.event_log_entry.step_key): r.event_log_entry.timestamp
              for r in records(DagsterEventType.STEP_START)}
    out = []
    for r in records(DagsterEventType.STEP_SUCCESS):
        entry = r.event_log_entry
        out.append((entry.step_key, background_of(instance, entry.run_id),
                    starts[(entry.run_id, entry.step_key)],
                    entry.timestamp))
    return out


def gpu_runs(instance) -> list[tuple[str, str, float, float]]:
    """("gpu run", background, start, end) for every run that held GPU steps, from the event log."""
    def when(kind):
        return {r.event_log_entry.run_id: r.event_log_entry.timestamp
                for r in instance.get_event_records(EventRecordsFilter(event_type=kind),
                                                    limit=10_000)}

    started, succeeded = when(DagsterEventType.RUN_START), when(DagsterEventType.RUN_SUCCESS)
    gpu_run_ids = {r.event_log_entry.run_id for r in instance.get_event_records(
        EventRecordsFilter(event_type=DagsterEventType.STEP_START), limit=10_000)
        if r.event_log_entry.step_key in GPU_STEPS}
    out = []
    for run_id in gpu_run_ids & set(succeeded):
        out.append(("gpu run", background_of(instance, run_id), started[run_id],
                    succeeded[run_id]))
    return out


def overlap(a, b) -> float:
    return min(a[3], b[3]) - max(a[2], b[2])


@pytest.fixture(scope="module")
def overlapped_pass(tmp_path_factory):
    plan = DemoPlan(home=tmp_path_factory.mktemp("overlap"), models=("resnet18",),
                    backgrounds=("original", "random"), image_size=32, persons=6,
                    photos_per_person=4, ordinary=24, epochs=1, backbone_epochs=1, batch_size=16)
    with instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as instance:
        assert pool_is_limited(instance, "gpu")
        report = full_pass(instance, plan, log=lambda _: None, overlap=True)
        yield report, step_intervals(instance) + gpu_runs(instance)


@pytest.mark.slow
def test_a_variant_is_built_while_another_backgrounds_gpu_run_is_under_way(overlapped_pass):
    """The lanes' guarantee, not a race: the GPU run starts as soon as its variant is done (the
    lane workers are warm), so the next variant's build falls inside it. Whether it meets a GPU
    step or that run's wait for a slot depends on the machine's speed, so that is not asserted;
    a sequential pass would start no GPU run before the last variant is built."""
    report, steps = overlapped_pass
    assert set(report.partitions) >= {"resnet18/original", "resnet18/random"}
    pairs = [(a, b) for a in steps for b in steps
             if a[0] == "face_dataset_variant" and b[0] == "gpu run" and a[1] and b[1]
             and a[1] != b[1] and overlap(a, b) > 0]
    assert pairs, steps  # e.g. variant[random] inside the run of resnet18|original


@pytest.mark.slow
def test_gpu_pool_steps_never_overlap(overlapped_pass):
    _, steps = overlapped_pass
    gpu = sorted((s for s in steps if s[0] in GPU_STEPS), key=lambda s: s[2])
    assert len(gpu) == 1 + 3 * 2  # the backbone, then three GPU steps per background
    assert {s[1] for s in gpu if s[0] == "classifier"} == {"original", "random"}
    for earlier, later in zip(gpu, gpu[1:], strict=False):
        assert later[2] >= earlier[3], (earlier, later)


def test_lanes_run_cpu_stages_in_order_and_each_gpu_stage_after_its_own():
    """Order guarantees and error hand-back of the lanes, without Dagster."""
    events, lock = [], threading.Lock()

    def note(kind):
        def stage(background):
            with lock:
                events.append((kind, background))
        return stage

    overlapped(["a", "b", "c"], note("cpu"), note("gpu"))
    assert [e for e in events if e[0] == "cpu"] == [("cpu", "a"), ("cpu", "b"), ("cpu", "c")]
    for background in "abc":
        assert events.index(("cpu", background)) < events.index(("gpu", background))

    def broken(background):
        if background == "b":
            raise ValueError("variant b failed")

    with pytest.raises(ValueError, match="variant b failed"):
        overlapped(["a", "b", "c"], broken, lambda b: None)


def test_an_unlimited_pool_chains_the_gpu_lanes():
    """Without a pool limit the GPU stages never run at once (torch's global seed is shared)."""
    running, peak, lock = [0], [0], threading.Lock()
    done = threading.Event()

    def gpu(background):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        done.wait(0.2)
        with lock:
            running[0] -= 1

    overlapped(["a", "b", "c"], lambda b: None, gpu, pool_limited=False)
    assert peak[0] == 1
    overlapped(["a", "b", "c"], lambda b: None, gpu, pool_limited=True)
    assert peak[0] >= 2  # the control: with a limited pool the lanes themselves do overlap
