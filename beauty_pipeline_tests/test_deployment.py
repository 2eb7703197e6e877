"""The docker/ deployment as processes: Postgres, MLflow server, Dagster webserver/daemon/gRPC.

All tests share one stack (the session fixture `deploy_stack` in conftest.py, built by
deploy_support.Stack): tiny demo data, upstream assets prepared in-process into the Postgres-backed
instance, so only classifier partitions go through the webserver. Tests run in file order; the
browser tests run after these (conftest.py) and reuse their runs; the crash/resume test comes
last, so that the partition's latest run is a successful one.
"""

from __future__ import annotations

import os
import re
import signal
import time

import deploy_support as ds
import pytest

pytestmark = pytest.mark.deployment

CHECKPOINTS = f"checkpoints/{ds.CLASSIFIER_MODEL}__{ds.CLASSIFIER_BACKGROUND}"


def _messages(stack: ds.Stack, run_id: str) -> str:
    return "\n".join(e.get("message") or "" for e in stack.dagster.run_messages(run_id))


def _worker_pid(stack: ds.Stack, run_id: str) -> int:
    """The in-process run worker's PID, from its "Executing steps in process" engine event."""
    def find() -> int | None:
        found = re.search(r"Executing steps in process \(pid: (\d+)\)", _messages(stack, run_id))
        return int(found.group(1)) if found else None

    return ds.wait_until(find, 120, f"run {run_id}'s worker to start", interval=0.5)


def _test_accuracy_steps(stack: ds.Stack, mlflow_run_id: str) -> list[int]:
    history = stack.mlflow.api(
        f"metrics/get-history?run_id={mlflow_run_id}&metric_key=test_accuracy")["metrics"]
    return sorted(int(m["step"]) for m in history)


def test_daemon_records_sensor_ticks(deploy_stack):
    """The daemon evaluated both sensors of the code location and wrote their ticks to Postgres."""
    stack = deploy_stack
    for name in ds.SENSORS:
        ticks = stack.sensor_ticks[name]
        assert ticks, name
        assert {t["status"] for t in ticks} <= {"SUCCESS", "SKIPPED", "STARTED"}, (name, ticks)
    # in Postgres: the ticks under each sensor's selector id, and the sensors' stopped state
    selectors = {name: stack.dagster.sensor_state(name)["selectorId"] for name in ds.SENSORS}
    ticks_by_selector = dict(stack.postgres.query(
        "dagster", "SELECT selector_id, count(*) FROM job_ticks WHERE type = 'SENSOR' "
        "GROUP BY selector_id"))
    for name, selector in selectors.items():
        assert ticks_by_selector.get(selector, 0) >= 1, (name, ticks_by_selector)
    states = dict(stack.postgres.query("dagster", "SELECT selector_id, status FROM instigators"))
    assert [states.get(selector) for selector in selectors.values()] == ["STOPPED", "STOPPED"]


def test_run_through_graphql_survives_webserver_and_daemon_restart(deploy_stack):
    """A demo classifier partition launched with dagster-graphql's client; webserver and daemon
    SIGKILLed mid-run and restarted: the run is not lost, it finishes, in Postgres and on MLflow."""
    stack, dagster = deploy_stack, deploy_stack.dagster
    run_id = dagster.launch_assets(["classifier"], ds.CLASSIFIER_PARTITION, ds.IN_PROCESS)
    ds.wait_until(lambda: dagster.run_status(run_id) in ("STARTED", "SUCCESS"), 120,
                  "the run to start", alive=dagster.daemon.check_alive)
    dagster.stop("webserver", kill=True)
    dagster.stop("daemon", kill=True)
    dagster.start_webserver()
    dagster.start_daemon()
    assert dagster.wait_for_run(run_id, 180) == "SUCCESS", _messages(stack, run_id)[-2000:]
    stack.classifier_run_id = run_id

    # Postgres holds the run and its materialization (queried directly)
    assert stack.postgres.query("dagster", "SELECT status FROM runs WHERE run_id = %s",
                                (run_id,)) == [("SUCCESS",)]
    materialized = stack.postgres.query(
        "dagster", "SELECT asset_key, partition FROM event_logs WHERE run_id = %s "
        "AND dagster_event_type = 'ASSET_MATERIALIZATION'", (run_id,))
    assert materialized == [('["classifier"]', ds.CLASSIFIER_PARTITION_KEY)]

    # the MLflow run is on the server (REST API) with one metric point per epoch
    (mlflow_run,) = stack.mlflow_runs(run_id)
    assert mlflow_run["info"]["status"] == "FINISHED"
    epochs = int(ds.TINY_DEMO_ENV["BEAUTY_PIPELINE_EPOCHS"])
    assert _test_accuracy_steps(stack, mlflow_run["info"]["run_id"]) == list(range(1, epochs + 1))
    artifacts = stack.mlflow.api(f"artifacts/list?run_id={mlflow_run['info']['run_id']}&path=weights")
    assert [f["path"] for f in artifacts["files"]][0].endswith(".pt")
    # proxied artifacts: the weights are in the server's artifact store
    assert list(stack.mlflow.artifacts.rglob("weights/*.pt"))


def test_training_step_fails_fast_when_the_mlflow_server_is_down(deploy_stack):
    """MLflow server stopped: the classifier step fails within seconds with a clear message and
    before any training work (no epoch, no checkpoint)."""
    stack, dagster = deploy_stack, deploy_stack.dagster
    stack.mlflow.stop()
    try:
        run_config = {**ds.IN_PROCESS, "ops": {"classifier": {"config": {"epochs": 5}}}}
        run_id = dagster.launch_assets(["classifier"], ds.CLASSIFIER_PARTITION, run_config)
        assert dagster.wait_for_run(run_id, 120) == "FAILURE"
        events = dagster.run_messages(run_id)
        failures = [e for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
        assert failures, events[-5:]
        message = failures[0]["error"]["message"]
        assert "MLflow tracking server" in message and "not reachable" in message, message
        assert "No training was started" in message
        log = "\n".join(e.get("message") or "" for e in events)
        assert not re.search(r" epoch \d+:", log)
        assert not list((stack.data_root / CHECKPOINTS).glob("epoch_*.pt"))
        started = next(e for e in events if e["__typename"] == "ExecutionStepStartEvent")
        failed_after = (float(failures[0]["timestamp"]) - float(started["timestamp"])) / 1000
        assert failed_after < 20, f"the step took {failed_after:.1f}s to fail"
    finally:
        started_at = time.monotonic()
        stack.mlflow.start(wait=False)  # back for the next tests (they wait for /health)
        stack.timings["mlflow_restart_issued"] = time.monotonic() - started_at


def test_crashed_run_is_failed_and_rematerializing_resumes_from_checkpoint(deploy_stack):
    """Webserver, daemon and the run worker killed after an epoch checkpoint: after the restart the
    run is FAILURE (not lost, not stuck), and the next materialization resumes after that epoch."""
    stack, dagster = deploy_stack, deploy_stack.dagster
    stack.mlflow.wait_ready(120)  # restarted at the end of the MLflow-down test
    epochs = 12  # other settings than the first run, so it starts from scratch; ~1 s per epoch
    run_config = {**ds.IN_PROCESS, "ops": {"classifier": {"config": {"epochs": epochs}}}}
    run_id = dagster.launch_assets(["classifier"], ds.CLASSIFIER_PARTITION, run_config)
    worker = _worker_pid(stack, run_id)
    checkpoints = stack.data_root / CHECKPOINTS
    ds.wait_until(lambda: list(checkpoints.glob("seed*/epoch_*.pt")), 120, "an epoch checkpoint",
                  interval=0.1)
    try:
        os.kill(worker, signal.SIGKILL)  # the run worker: a child of the code server we started
    except ProcessLookupError:
        pytest.fail("the run finished before it could be killed; raise `epochs`")
    dagster.stop("webserver", kill=True)
    dagster.stop("daemon", kill=True)
    dagster.start_webserver()
    dagster.start_daemon()
    assert dagster.wait_for_run(run_id, 60) == "FAILURE"
    assert f"Run execution process for {run_id}" in _messages(stack, run_id)

    rerun = dagster.launch_assets(["classifier"], ds.CLASSIFIER_PARTITION, run_config)
    assert dagster.wait_for_run(rerun, 180) == "SUCCESS", _messages(stack, rerun)[-2000:]
    resumed = re.search(rf"resuming {ds.CLASSIFIER_MODEL}/{ds.CLASSIFIER_BACKGROUND} after epoch "
                        r"(\d+)", _messages(stack, rerun))
    assert resumed, "the re-materialization did not resume from the checkpoint"
    after = int(resumed.group(1))
    assert 1 <= after < epochs
    # the same MLflow run continues (tagged with the resuming Dagster run), no epoch twice
    (mlflow_run,) = stack.mlflow_runs(rerun)
    tags = {t["key"]: t["value"] for t in mlflow_run["data"].get("tags", [])}
    assert tags["resumed_from_epoch"] == str(after)
    assert mlflow_run["info"]["status"] == "FINISHED"
    steps = _test_accuracy_steps(stack, mlflow_run["info"]["run_id"])
    assert len(steps) == len(set(steps)) and steps[-1] == epochs, steps
    # epochs up to `after` come from the killed run (the last one may be lost with it)
    assert set(range(1, after)) | set(range(after + 1, epochs + 1)) <= set(steps), steps
