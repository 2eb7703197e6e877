"""Run the docker/ deployment's services as local processes: PostgreSQL, MLflow, Dagster.

The deployment and browser tests use this instead of Docker (no engine here). It starts the same
programs with the same configuration files as docker/docker-compose.yml (docker/dagster.yaml,
docker/workspace.yaml, docker/postgres/init-mlflow-db.sh), bound to 127.0.0.1 on free ports, and
stops every process it started by its PID (each in its own process group, so a code server's run
workers go with it).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
LOCATION_NAME = "beauty_pipeline"
CODE_MODULE = "beauty_pipeline.definitions"
PG_USER = "beauty"
PG_PASSWORD = "deploy-test-only"  # a throwaway cluster in a temp dir, bound to 127.0.0.1
DAGSTER_DB = "dagster"
MLFLOW_DB = "mlflow"


class DeploymentUnavailable(RuntimeError):
    """A system binary the deployment needs is missing and could not be installed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5,
               alive: Callable[[], None] | None = None) -> Any:
    """Poll check() until it returns a truthy value; `alive` raises if a process died meanwhile."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if alive:
            alive()
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # the service is still coming up
            last_error = error
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last_error})")


def console(script: str, module: str) -> list[str]:
    """The console script beside this interpreter (as compose runs it), else `python -m`."""
    path = Path(sys.executable).parent / script
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


def http_ok(url: str) -> bool:
    """True when url answers 200."""
    return requests.get(url, timeout=3).status_code == 200


@dataclass
class Service:
    """One started process: its Popen (own process group) and log file."""

    name: str
    argv: list[str]
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]

    def check_alive(self) -> None:
        """Raise with the log tail when the process has exited."""
        if not self.running():
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n"
                               f"{self.log_tail()}")


@dataclass
class ProcessSupervisor:
    """Starts services in their own process groups and stops exactly those, by PID."""

    log_dir: Path
    services: list[Service] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None, account: pwd.struct_passwd | None = None) -> Service:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=cwd, start_new_session=True,
                user=account.pw_uid if account else None,
                group=account.pw_gid if account else None,
                extra_groups=[] if account else None)
        service = Service(name, argv, popen, log_path)
        self.services.append(service)
        return service

    def stop(self, service: Service, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
        """Signal the service's process group (id = its PID); SIGKILL what is left after grace."""
        if service.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.popen.wait(timeout=grace)
        # children (run workers, gunicorn/uvicorn workers) share the group; clear them too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(service.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.popen.wait(timeout=5)
        if service in self.services:
            self.services.remove(service)

    def kill(self, service: Service) -> None:
        """Crash the service: SIGKILL its whole process group at once."""
        self.stop(service, sig=signal.SIGKILL, grace=5.0)

    def stop_all(self, grace: float = 15.0) -> None:
        """SIGTERM every group at once, then wait for each (SIGKILL after the shared grace)."""
        services = list(reversed(self.services))
        for service in services:
            if service.running():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(service.pid, signal.SIGINT if service.name == "postgres"
                              else signal.SIGTERM)
        deadline = time.monotonic() + grace
        for service in services:
            self.stop(service, grace=max(0.0, deadline - time.monotonic()))


# ---------------------------------------------------------------------------------------------
# PostgreSQL from the Debian packages
# ---------------------------------------------------------------------------------------------

def postgres_bindir() -> Path | None:
    """The directory with initdb/postgres/psql, from pg_config or /usr/lib/postgresql/*/bin."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            bindir = subprocess.check_output([pg_config, "--bindir"], text=True).strip()
            candidates.insert(0, bindir)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    return None


def ensure_system_deps() -> None:
    """Install PostgreSQL/Chromium with scripts/install-system-deps.sh when they are missing."""
    if postgres_bindir() and shutil.which("chromium"):
        return
    script = REPO / "scripts" / "install-system-deps.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise DeploymentUnavailable(
            f"{script.name} failed ({result.returncode}): {result.stderr[-500:]}")


def _service_user() -> pwd.struct_passwd | None:
    """initdb refuses root: when root, run Postgres as the `postgres` (or `nobody`) user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise DeploymentUnavailable("running as root and neither `postgres` nor `nobody` exists")


@dataclass
class PostgresServer:
    """A throwaway cluster in its own temp dir on 127.0.0.1:port with password auth over TCP."""

    supervisor: ProcessSupervisor
    port: int = field(default_factory=free_port)
    root: Path | None = None
    service: Service | None = None

    def start(self) -> PostgresServer:
        bindir = postgres_bindir()
        if bindir is None:
            raise DeploymentUnavailable("PostgreSQL binaries (initdb, postgres) not found")
        account = _service_user()
        # not under pytest's 0700 tmp tree: the postgres user must be able to reach it
        self.root = Path(tempfile.mkdtemp(prefix="beauty-pg-"))
        data, sockets = self.root / "pgdata", self.root / "pgsock"
        sockets.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        if account:
            for path in (self.root, sockets, pwfile):
                os.chown(path, account.pw_uid, account.pw_gid)
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, "--pwfile", str(pwfile),
             "-A", "scram-sha-256", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=120,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None)
        self.service = self.supervisor.start(
            "postgres",
            [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(sockets), "-c", "fsync=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200", "-c", "shared_buffers=64MB"],
            account=account)
        wait_until(self._accepting, 60, "PostgreSQL", alive=self.service.check_alive)
        self.create_database(DAGSTER_DB)
        self.run_compose_init_script()
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown on SIGINT) and delete its cluster directory."""
        if self.service:
            self.supervisor.stop(self.service, sig=signal.SIGINT)
            self.service = None
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _accepting(self) -> bool:
        with contextlib.closing(self.connect("postgres")):
            return True

    def connect(self, db: str):
        """A psycopg2 connection to db as the deployment user."""
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=PG_USER,
                                password=PG_PASSWORD, dbname=db, connect_timeout=3)

    def create_database(self, name: str) -> None:
        conn = self.connect("postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def run_compose_init_script(self) -> None:
        """Create MLflow's database with the very script the compose Postgres runs at init."""
        bindir = postgres_bindir()
        env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
               "POSTGRES_USER": PG_USER, "POSTGRES_DB": DAGSTER_DB, "MLFLOW_POSTGRES_DB": MLFLOW_DB,
               "PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGPASSWORD": PG_PASSWORD}
        subprocess.run(["sh", str(DOCKER / "postgres" / "init-mlflow-db.sh")], env=env,
                       check=True, capture_output=True, timeout=60)

    def query(self, db: str, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of one read query."""
        conn = self.connect(db)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        finally:
            conn.close()

    def url(self, db: str) -> str:
        return f"postgresql+psycopg2://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{db}"


# ---------------------------------------------------------------------------------------------
# MLflow tracking server
# ---------------------------------------------------------------------------------------------

@dataclass
class MlflowServer:
    """`mlflow server` on Postgres with proxied artifacts, as the compose `mlflow` service."""

    supervisor: ProcessSupervisor
    postgres: PostgresServer
    artifacts: Path
    port: int = field(default_factory=free_port)
    service: Service | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120, wait: bool = True) -> MlflowServer:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.service = self.supervisor.start("mlflow", [
            *console("mlflow", "mlflow"), "server",
            "--backend-store-uri", self.postgres.url(MLFLOW_DB),
            "--serve-artifacts", "--artifacts-destination", str(self.artifacts),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--allowed-hosts", f"localhost:{self.port},127.0.0.1:{self.port},127.0.0.1,localhost",
        ], env=quiet_env())
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        """Block until /health answers (the compose healthcheck's URL)."""
        if self.service is None:
            self.start(wait=False)
        wait_until(lambda: http_ok(f"{self.uri}/health"), timeout, "the MLflow server",
                   alive=self.service.check_alive)

    def stop(self) -> None:
        if self.service:
            self.supervisor.stop(self.service)
            self.service = None

    def api(self, path: str, payload: dict | None = None) -> dict:
        """Call the MLflow REST API (GET without payload, POST with)."""
        url = f"{self.uri}/api/2.0/mlflow/{path}"
        response = (requests.post(url, json=payload, timeout=10) if payload is not None
                    else requests.get(url, timeout=10))
        response.raise_for_status()
        return response.json()


def quiet_env(**extra: str) -> dict[str, str]:
    """The current environment with few threads per process (2 shared cores) and no telemetry."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                "DAGSTER_DISABLE_TELEMETRY": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# Dagster: code location (gRPC), webserver, daemon
# ---------------------------------------------------------------------------------------------

@dataclass
class DagsterDeployment:
    """The compose trio as processes, sharing docker/dagster.yaml and docker/workspace.yaml."""

    supervisor: ProcessSupervisor
    postgres: PostgresServer
    home: Path
    pipeline_env: dict[str, str]
    code_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    code_server: Service | None = None
    webserver: Service | None = None
    daemon: Service | None = None

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(DOCKER / "dagster.yaml", self.home / "dagster.yaml")
        shutil.copy(DOCKER / "workspace.yaml", self.home / "workspace.yaml")

    @property
    def env(self) -> dict[str, str]:
        """What compose's x-dagster-env gives every Dagster service, pointed at local ports."""
        return quiet_env(
            DAGSTER_HOME=str(self.home),
            DAGSTER_POSTGRES_HOST="127.0.0.1", DAGSTER_POSTGRES_PORT=str(self.postgres.port),
            DAGSTER_POSTGRES_USER=PG_USER, DAGSTER_POSTGRES_PASSWORD=PG_PASSWORD,
            DAGSTER_POSTGRES_DB=DAGSTER_DB,
            DAGSTER_CODE_LOCATION_HOST="127.0.0.1", DAGSTER_CODE_LOCATION_PORT=str(self.code_port),
        )

    @property
    def workspace(self) -> str:
        return str(self.home / "workspace.yaml")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start_code_server(self, extra_env: dict[str, str] | None = None,
                          timeout: float = 180) -> Service:
        env = {**self.env, **self.pipeline_env, **(extra_env or {})}
        self.code_server = self.supervisor.start("code-server", [
            *console("dagster", "dagster"), "code-server", "start",
            "-h", "127.0.0.1", "-p", str(self.code_port), "-m", CODE_MODULE,
        ], env=env, cwd=self.home)
        wait_until(self._code_server_healthy, timeout, "the Dagster code server",
                   interval=1.0, alive=self.code_server.check_alive)
        return self.code_server

    def _code_server_healthy(self) -> bool:
        from dagster._grpc.client import DagsterGrpcClient

        return DagsterGrpcClient(port=self.code_port, host="127.0.0.1").ping("ok")["echo"] == "ok"

    def start_webserver(self, timeout: float = 120) -> Service:
        self.webserver = self.supervisor.start("webserver", [
            *console("dagster-webserver", "dagster_webserver"),
            "-h", "127.0.0.1", "-p", str(self.web_port), "-w", self.workspace,
        ], env=self.env, cwd=self.home)
        wait_until(lambda: http_ok(f"{self.url}/server_info"), timeout, "the Dagster webserver",
                   alive=self.webserver.check_alive)
        wait_until(self._location_loaded, timeout, "the code location in the webserver",
                   interval=1.0, alive=self.webserver.check_alive)
        return self.webserver

    def start_daemon(self, timeout: float = 120) -> Service:
        self.daemon = self.supervisor.start("daemon", [
            *console("dagster-daemon", "dagster._daemon"), "run", "-w", self.workspace,
        ], env=self.env, cwd=self.home)
        wait_until(self._daemons_healthy, timeout, "dagster-daemon heartbeats", interval=2.0,
                   alive=self.daemon.check_alive)
        return self.daemon

    def prepare_upstream(self, background: str = "original", timeout: float = 300) -> str:
        """Materialize a classifier partition's inputs in one process (see PREPARE_UPSTREAM)."""
        result = subprocess.run(
            [sys.executable, "-c", PREPARE_UPSTREAM, background],
            env={**self.env, **self.pipeline_env}, cwd=self.home, capture_output=True, text=True,
            timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"preparing the upstream assets failed:\n{result.stderr[-4000:]}")
        return result.stdout.strip()

    def stop(self, name: str, kill: bool = False) -> None:
        service = getattr(self, name)
        if service is not None:
            (self.supervisor.kill if kill else self.supervisor.stop)(service)
            setattr(self, name, None)

    # --- GraphQL ---------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """POST a GraphQL document to the webserver; raise on GraphQL errors."""
        response = requests.post(f"{self.url}/graphql",
                                 json={"query": query, "variables": variables or {}}, timeout=30)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def client(self):
        """dagster-graphql's client for this webserver."""
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient("127.0.0.1", port_number=self.web_port, timeout=60)

    def _location_loaded(self) -> bool:
        data = self.graphql("""{ workspaceOrError { __typename ... on Workspace {
            locationEntries { name loadStatus locationOrLoadError { __typename
              ... on PythonError { message } } } } } }""")
        entries = data["workspaceOrError"]["locationEntries"]
        for entry in entries:
            error = entry["locationOrLoadError"]
            if error and error["__typename"] == "PythonError":
                raise RuntimeError(f"code location failed to load: {error['message']}")
        return any(e["name"] == LOCATION_NAME and e["loadStatus"] == "LOADED" for e in entries)

    def _daemons_healthy(self) -> bool:
        data = self.graphql("""{ instance { daemonHealth { allDaemonStatuses {
            daemonType healthy required } } } }""")
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        return all(s["healthy"] for s in statuses if s["required"])

    def sensor_state(self, name: str) -> dict:
        """A sensor's instigation state with its latest ticks, as the webserver reports it."""
        data = self.graphql("""query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
            __typename ... on Sensor { sensorState { id selectorId status
              ticks(limit: 20) { status timestamp } } } ... on PythonError { message } } }""",
                            {"s": {"repositoryLocationName": LOCATION_NAME,
                                   "repositoryName": "__repository__", "sensorName": name}})
        sensor = data["sensorOrError"]
        if sensor["__typename"] != "Sensor":
            raise RuntimeError(f"sensor {name}: {sensor}")
        return sensor["sensorState"]

    def stop_sensor(self, name: str) -> str:
        """Turn a sensor off through GraphQL; returns its new status."""
        state = self.sensor_state(name)
        data = self.graphql("""mutation($id: String, $sel: String) {
            stopSensor(id: $id, jobSelectorId: $sel) { __typename
              ... on StopSensorMutationResult { instigationState { status } }
              ... on PythonError { message } } }""",
                            {"id": state["id"], "sel": state["selectorId"]})
        result = data["stopSensor"]
        if result["__typename"] != "StopSensorMutationResult":
            raise RuntimeError(f"stopping {name}: {result}")
        return result["instigationState"]["status"]

    def run_status(self, run_id: str) -> str:
        data = self.graphql("""query($id: ID!) { runOrError(runId: $id) { __typename
            ... on Run { status } } }""", {"id": run_id})
        return data["runOrError"].get("status", data["runOrError"]["__typename"])

    def wait_for_run(self, run_id: str, timeout: float,
                     done: tuple[str, ...] = ("SUCCESS", "FAILURE", "CANCELED")) -> str:
        """Poll until the run reaches one of `done`; fail early if a service died."""
        def alive() -> None:
            for service in (self.code_server, self.webserver, self.daemon):
                if service is not None:
                    service.check_alive()

        return wait_until(lambda: (s := self.run_status(run_id)) in done and s, timeout,
                          f"run {run_id} to finish", interval=2.0, alive=alive)

    def run_messages(self, run_id: str, limit: int = 2000) -> list[dict]:
        """The run's event log as GraphQL sees it (typename, message, stepKey, metadata labels)."""
        data = self.graphql("""query($id: ID!, $limit: Int) {
          logsForRun(runId: $id, limit: $limit) { __typename
            ... on EventConnection { events { __typename
              ... on MessageEvent { message stepKey level timestamp }
              ... on MaterializationEvent { metadataEntries { label } }
              ... on ExecutionStepFailureEvent { error { message } }
              ... on RunFailureEvent { message }
            } } } }""", {"id": run_id, "limit": limit})
        return data["logsForRun"]["events"]

    def launch_assets(self, assets: list[str], partition: str | dict[str, str] | None = None,
                      run_config: dict | None = None) -> str:
        """Submit a materialization through the webserver with dagster-graphql's client.

        A multi-partition is given as {dimension: key}; like the UI, the run then carries the
        per-dimension tags too, which is what makes its partition key a MultiPartitionKey.
        """
        tags: dict[str, str] = {}
        if isinstance(partition, dict):
            tags["dagster/partition"] = "|".join(partition[d] for d in sorted(partition))
            tags.update({f"dagster/partition/{d}": k for d, k in partition.items()})
        elif partition:
            tags["dagster/partition"] = partition
        return self.client().submit_job_execution(
            "__ASSET_JOB", repository_location_name=LOCATION_NAME,
            repository_name="__repository__", run_config=run_config or {}, tags=tags,
            asset_selection=[[a] for a in assets])


# Demo sizes small enough for a 2-core CI box; read by beauty_pipeline.settings and the demo data
# resource in the code location (and in every run it launches).
TINY_DEMO_ENV = {
    "BEAUTY_PIPELINE_PROFILE": "demo",
    "BEAUTY_PIPELINE_DEVICE": "cpu",
    "BEAUTY_PIPELINE_DEMO_PERSONS": "6",
    "BEAUTY_PIPELINE_DEMO_PHOTOS_PER_PERSON": "6",
    "BEAUTY_PIPELINE_DEMO_ORDINARY": "48",
    "BEAUTY_PIPELINE_DEMO_IMAGE_SIZE": "32",
    "BEAUTY_PIPELINE_IMAGE_SIZE": "32",
    "BEAUTY_PIPELINE_EPOCHS": "2",
    "BEAUTY_PIPELINE_BATCH_SIZE": "16",
    "BEAUTY_PIPELINE_BACKBONE_EPOCHS": "1",
}

# Materializes everything upstream of one classifier partition into the instance at $DAGSTER_HOME
# (the Postgres-backed one) in a single process, so that only the training step itself has to go
# through the webserver: ranking, one run per person, the study set, the backbone, one variant.
PREPARE_UPSTREAM = """
import sys
from dagster import AssetKey, DagsterInstance, materialize
from beauty_pipeline.definitions import defs

background = sys.argv[1]
assets = list(defs.assets)

def run(keys, partition=None):
    return materialize(assets, selection=[AssetKey(k) for k in keys], instance=instance,
                       partition_key=partition, resources=defs.resources)

with DagsterInstance.get() as instance:
    persons = run(["ranking"]).output_for_node("ranking")["person"].tolist()
    instance.add_dynamic_partitions("person", persons)
    for person in persons:
        run(["celebrity_photos", "celebrity_faces"], person)
    run(["fairface_faces", "face_dataset", "fairface_backbone"])
    run(["face_dataset_variant"], background)
    print(f"prepared {len(persons)} persons and the {background} variant")
"""


@contextlib.contextmanager
def supervised(log_dir: Path) -> Iterator[ProcessSupervisor]:
    """A supervisor whose processes are all stopped, by PID, however the block exits."""
    supervisor = ProcessSupervisor(log_dir)
    try:
        yield supervisor
    finally:
        supervisor.stop_all()


# ---------------------------------------------------------------------------------------------
# The whole stack, shared by the deployment and browser tests
# ---------------------------------------------------------------------------------------------

CLASSIFIER_MODEL = "resnet18"
CLASSIFIER_BACKGROUND = "original"
CLASSIFIER_PARTITION = {"model": CLASSIFIER_MODEL, "background": CLASSIFIER_BACKGROUND}
# the key as Dagster stores it: dimension keys joined in dimension-name order
CLASSIFIER_PARTITION_KEY = f"{CLASSIFIER_BACKGROUND}|{CLASSIFIER_MODEL}"
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
SENSORS = ("ranking_sensor", "study_automation")


@dataclass
class Stack:
    """Postgres, MLflow server, Dagster code location + webserver + daemon, demo inputs ready."""

    root: Path
    supervisor: ProcessSupervisor
    postgres: PostgresServer
    mlflow: MlflowServer
    dagster: DagsterDeployment
    timings: dict[str, float] = field(default_factory=dict)
    classifier_run_id: str | None = None
    sensor_ticks: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @classmethod
    def start(cls, root: Path) -> Stack:
        """Bring everything up, overlapping the slow starts (MLflow migrations, torch imports)."""
        from concurrent.futures import ThreadPoolExecutor

        started = time.monotonic()
        supervisor = ProcessSupervisor(root / "logs")
        postgres = PostgresServer(supervisor)
        try:
            postgres.start()
            mlflow = MlflowServer(supervisor, postgres, root / "mlflow-artifacts")
            pipeline_env = {**TINY_DEMO_ENV, "BEAUTY_PIPELINE_HOME": str(root / "data"),
                            "BEAUTY_PIPELINE_MLFLOW_URI": mlflow.uri,
                            "PYTHONPATH": os.pathsep.join(
                                p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
            dagster = DagsterDeployment(supervisor, postgres, root / "dagster_home", pipeline_env)
            stack = cls(root, supervisor, postgres, mlflow, dagster)
            stack.timings["postgres"] = time.monotonic() - started
            with ThreadPoolExecutor(3) as pool:
                waits = [pool.submit(mlflow.start), pool.submit(dagster.start_code_server),
                         pool.submit(dagster.prepare_upstream, CLASSIFIER_BACKGROUND)]
                for future in waits:
                    future.result()
            stack.timings["mlflow+code_server+upstream"] = time.monotonic() - started
            with ThreadPoolExecutor(2) as pool:
                for future in [pool.submit(dagster.start_webserver),
                               pool.submit(dagster.start_daemon)]:
                    future.result()
            stack.timings["ready"] = time.monotonic() - started
            stack.record_sensor_ticks()
            stack.timings["sensor_ticks"] = time.monotonic() - started
            return stack
        except BaseException:
            supervisor.stop_all()
            postgres.stop()
            raise

    def stop(self) -> None:
        self.supervisor.stop_all()
        self.postgres.stop()

    def record_sensor_ticks(self, timeout: float = 120) -> None:
        """Wait for the daemon's first tick of each sensor (both default to RUNNING), keep them in
        `sensor_ticks`, then stop the sensors: on a 2-core box the declarative automation must not
        start materializing the rest of the graph behind the tests' backs."""
        for name in SENSORS:
            self.sensor_ticks[name] = wait_until(
                lambda name=name: self.dagster.sensor_state(name)["ticks"], timeout,
                f"the daemon's first {name} tick", interval=1.0, alive=self.dagster.daemon.check_alive)
        for name in SENSORS:
            self.stop_sensor_for_good(name)

    def stop_sensor_for_good(self, name: str, timeout: float = 60) -> None:
        """Stop a sensor and wait until its stored state says STOPPED; a daemon tick that was in
        flight can write the code-declared state back once, so the stop is repeated until it holds."""
        def stopped() -> bool:
            if self.postgres_sensor_status(name) == "STOPPED":
                return True
            self.dagster.stop_sensor(name)
            return False

        wait_until(stopped, timeout, f"{name} to stay stopped", interval=2.0)

    def postgres_sensor_status(self, name: str) -> str | None:
        """The instigator status Postgres holds for a sensor (what the daemon acts on)."""
        selector = self.dagster.sensor_state(name)["selectorId"]
        rows = self.postgres.query("dagster", "SELECT status FROM instigators WHERE selector_id = %s",
                                   (selector,))
        return rows[0][0] if rows else None

    def ensure_classifier_run(self, timeout: float = 180) -> str:
        """One successful classifier materialization launched through GraphQL (made once)."""
        if self.classifier_run_id is None:
            run_id = self.dagster.launch_assets(["classifier"], CLASSIFIER_PARTITION, IN_PROCESS)
            status = self.dagster.wait_for_run(run_id, timeout)
            if status != "SUCCESS":
                raise RuntimeError(f"classifier run {run_id} ended {status}")
            self.classifier_run_id = run_id
        return self.classifier_run_id

    def mlflow_runs(self, dagster_run_id: str | None = None) -> list[dict]:
        """The study experiment's runs on the server (optionally of one Dagster run)."""
        experiment = self.mlflow.api("experiments/get-by-name?experiment_name=beauty-pipeline")
        query = {"experiment_ids": [experiment["experiment"]["experiment_id"]],
                 "max_results": 100}
        if dagster_run_id:
            query["filter"] = f"tags.dagster_run_id = '{dagster_run_id}'"
        return self.mlflow.api("runs/search", query).get("runs", [])


_shared: dict[str, Any] = {"stack": None, "holders": 0, "error": None}


def acquire_stack(root: Path) -> Stack:
    """The session's one stack (started on first use); pair every call with release_stack()."""
    if _shared["error"] is not None:
        raise _shared["error"]
    if _shared["stack"] is None:
        ensure_system_deps()
        try:
            _shared["stack"] = Stack.start(root)
        except Exception as error:
            _shared["error"] = error
            raise
        atexit.register(_stop_at_exit)  # also when the session dies before the fixture teardown
    _shared["holders"] += 1
    return _shared["stack"]


def _stop_at_exit() -> None:
    if _shared["stack"] is not None:
        _shared["stack"].stop()
        _shared["stack"] = None


def release_stack() -> None:
    """Stop the shared stack when its last holder is done."""
    _shared["holders"] -= 1
    if _shared["holders"] <= 0 and _shared["stack"] is not None:
        _shared["stack"].stop()
        _shared["stack"] = None
