"""Static checks of docker/ and docker/k8s/: the files agree with the code and with Dagster's
own config schemas, without Docker or a Kubernetes cluster."""

from __future__ import annotations

import importlib
import re
from importlib.metadata import entry_points
from pathlib import Path

import click
import pytest
import yaml

from beauty_pipeline import settings

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
K8S = DOCKER / "k8s"
CODE_MODULE = "beauty_pipeline.definitions"
PROJECT_SERVICES = ("mlflow", "code-location", "webserver", "daemon")


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(DOCKER / "docker-compose.yml")


def command_list(service: dict) -> list[str]:
    command = service["command"]
    return command if isinstance(command, list) else command.split()


def click_command(script: str, *subcommands: str):
    """The click command behind a console script (and its subcommands), to read its options."""
    entry = next(e for e in entry_points(group="console_scripts") if e.name == script)
    command = entry.load()
    if not isinstance(command, click.Command):  # a main() wrapper beside the module's `cli`
        command = importlib.import_module(entry.module).cli
    for name in subcommands:
        command = command.commands[name]
    return command


def option_names(command) -> set[str]:
    return {opt for param in command.params for opt in param.opts + param.secondary_opts}


def flags(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("-")]


# --- docker-compose.yml -------------------------------------------------------------------------

def test_compose_has_the_five_services_and_publishes_only_the_two_uis(compose):
    """Postgres, MLflow, code location, webserver, daemon; only the UIs reach the host."""
    services = compose["services"]
    assert set(services) == {"postgres", *PROJECT_SERVICES}
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert set(published) == {"mlflow", "webserver"}
    for ports in published.values():
        (port,) = ports
        assert port.startswith("${UI_BIND_ADDRESS:-127.0.0.1}:"), port


def test_compose_takes_credentials_only_from_the_env_file(compose):
    """No literal password anywhere; POSTGRES_PASSWORD is required (`:?`), not defaulted."""
    text = (DOCKER / "docker-compose.yml").read_text()
    # $${...} is expanded by the container's shell at run time, not by compose
    references = re.findall(r"(?<!\$)\$\{POSTGRES_PASSWORD([^}]*)\}", text)
    assert references and all(ref.startswith(":?") for ref in references), references
    example = dict(line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example["POSTGRES_PASSWORD"] == ""
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    used |= set(re.findall(r"\$\{([A-Z_]+)", (DOCKER / "docker-compose.gpu.yml").read_text()))
    assert used <= set(example), f"not in .env.example: {used - set(example)}"
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


def test_compose_services_use_the_code_location_module_and_settings_env(compose):
    """The gRPC server loads beauty_pipeline.definitions; env names are settings.py's constants."""
    services = compose["services"]
    code = services["code-location"]
    argv = command_list(code)
    assert argv[:3] == ["dagster", "code-server", "start"]
    assert argv[argv.index("-m") + 1] == CODE_MODULE
    module = importlib.import_module(CODE_MODULE)
    assert module.defs is not None
    env = code["environment"]
    assert env[settings.HOME_ENV] == "/data"
    assert env[settings.MLFLOW_URI_ENV] == "http://mlflow:5000"
    assert settings.DEVICE_ENV in env and settings.PROFILE_ENV in env
    assert "pipeline-data:/data" in code["volumes"]
    assert env["DAGSTER_CODE_LOCATION_PORT"] == argv[argv.index("-p") + 1]
    for name in ("webserver", "daemon"):
        workspace = command_list(services[name])[command_list(services[name]).index("-w") + 1]
        assert workspace == "/opt/dagster/dagster_home/workspace.yaml"


def test_compose_commands_use_options_the_installed_clis_have(compose):
    """Every flag in a service command exists in the installed dagster / mlflow CLIs."""
    services = compose["services"]
    cli = {
        "code-location": click_command("dagster", "code-server", "start"),
        "webserver": click_command("dagster-webserver"),
        "daemon": click_command("dagster-daemon", "run"),
        "mlflow": click_command("mlflow", "server"),
    }
    mlflow_argv = " ".join(command_list(services["mlflow"])[2:]).split()
    argvs = {name: command_list(services[name]) for name in ("code-location", "webserver",
                                                              "daemon")}
    argvs["mlflow"] = mlflow_argv
    for name, argv in argvs.items():
        unknown = set(flags(argv)) - option_names(cli[name])
        assert not unknown, f"{name}: {unknown}"
    health = services["code-location"]["healthcheck"]["test"][1:]
    assert set(flags(health)) <= option_names(click_command("dagster", "api",
                                                            "grpc-health-check"))


def test_compose_env_matches_the_dagster_instance_and_workspace_files(compose):
    """Every {env: X} in docker/dagster.yaml and workspace.yaml is set for the Dagster services."""
    wanted = set(re.findall(r"\{env: ([A-Z_]+)\}", (DOCKER / "dagster.yaml").read_text()))
    wanted |= set(re.findall(r"\{env: ([A-Z_]+)\}", (DOCKER / "workspace.yaml").read_text()))
    assert wanted
    for name in ("code-location", "webserver", "daemon"):
        assert wanted <= set(compose["services"][name]["environment"]), name
    mlflow_cmd = " ".join(command_list(compose["services"]["mlflow"]))
    assert "postgresql+psycopg2://" in mlflow_cmd and "--serve-artifacts" in mlflow_cmd
    assert "mlflow-artifacts:/mlflow/artifacts" in compose["services"]["mlflow"]["volumes"]
    init = compose["services"]["postgres"]["volumes"][1].split(":")[0]
    assert (DOCKER / init).is_file()


def test_dockerfile_copies_what_exists_and_ships_the_instance_files():
    """COPY sources exist (README.md included: pyproject's readme) and are not docker-ignored."""
    text = (DOCKER / "Dockerfile").read_text()
    sources = [part for line in text.splitlines() if line.startswith("COPY")
               for part in line.split()[1:-1]]
    assert {"pyproject.toml", "README.md", "beauty_pipeline", "docker/dagster.yaml",
            "docker/workspace.yaml"} <= set(sources)
    missing = [s for s in sources if not (REPO / s).exists()]
    assert not missing, f"COPY sources missing from the repository: {missing}"
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    for source in sources:
        assert f"!{source}" in ignore or f"!{source}/" in ignore, source
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in text and "USER beauty" in text
    assert re.search(r"ARG TORCH_VERSION=(\S+)", text).group(1) == \
        importlib.import_module("torch").__version__.split("+")[0]


# --- dagster.yaml variants ------------------------------------------------------------------------

PG_ENV = {"DAGSTER_POSTGRES_HOST": "db", "DAGSTER_POSTGRES_PORT": "5432",
          "DAGSTER_POSTGRES_USER": "u", "DAGSTER_POSTGRES_PASSWORD": "p",
          "DAGSTER_POSTGRES_DB": "dagster", "DAGSTER_CODE_LOCATION_HOST": "code-location",
          "DAGSTER_CODE_LOCATION_PORT": "4000"}


@pytest.mark.parametrize("path", [DOCKER / "dagster.yaml", REPO / "dagster.yaml"],
                         ids=["docker", "root"])
def test_dagster_yaml_variants_load_through_dagsters_instance_schema(path, tmp_path, monkeypatch):
    """Both instance files pass Dagster's own validation (schema + concurrency rules)."""
    from dagster._core.instance.config import dagster_instance_config

    if not path.exists():
        pytest.skip(f"{path.relative_to(REPO)} not written yet")
    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "dagster.yaml").write_text(path.read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["concurrency"]["pools"]["default_limit"] >= 1


def test_docker_instance_resolves_to_postgres_storage_and_queued_runs(tmp_path, monkeypatch):
    """The env-driven instance builds Postgres storage with psycopg2 and the queued coordinator."""
    from dagster._core.instance.ref import InstanceRef
    from dagster_postgres.utils import pg_url_from_config

    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "dagster.yaml").write_text((DOCKER / "dagster.yaml").read_text())
    ref = InstanceRef.from_dir(str(tmp_path))
    assert ref.storage_data.class_name == "DagsterPostgresStorage"
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"
    assert ref.run_launcher_data.class_name == "DefaultRunLauncher"
    db = load_yaml(DOCKER / "dagster.yaml")["storage"]["postgres"]["postgres_db"]
    resolved = {k: PG_ENV[v["env"]] if isinstance(v, dict) else v for k, v in db.items()}
    url = pg_url_from_config({"postgres_db": {**resolved, "port": int(resolved["port"])}})
    assert url == "postgresql+psycopg2://u:p@db:5432/dagster"


def test_workspace_yaml_points_at_the_grpc_code_location(monkeypatch):
    """docker/workspace.yaml validates against Dagster's workspace schema."""
    from dagster._config import process_config
    from dagster._core.workspace.config_schema import WORKSPACE_CONFIG_SCHEMA

    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    result = process_config(WORKSPACE_CONFIG_SCHEMA, load_yaml(DOCKER / "workspace.yaml"))
    assert result.success, result.errors
    (entry,) = result.value["load_from"]
    assert entry["grpc_server"] == {"host": "code-location", "port": 4000,
                                    "location_name": "beauty_pipeline"}


# --- Kubernetes: Helm values + executor -----------------------------------------------------------

CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    return CAMEL.sub("_", name).lower()


def snake_keys(value, depth: int):
    """camelCase keys to snake_case for `depth` levels (the Helm chart does this when rendering)."""
    if depth <= 0 or not isinstance(value, dict):
        return value
    return {snake(k): snake_keys(v, depth - 1) for k, v in value.items()}


@pytest.fixture(scope="module")
def values() -> dict:
    return load_yaml(K8S / "values.yaml")


@pytest.fixture(scope="module")
def executor_config() -> dict:
    return load_yaml(K8S / "executor.yaml")["execution"]["config"]


def test_helm_run_launcher_values_validate_against_k8s_run_launcher_schema(values):
    """runLauncher.config.k8sRunLauncher, rendered as the chart does, is valid launcher config."""
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    rendered = {snake(k): v for k, v in launcher["config"]["k8sRunLauncher"].items()}
    rendered["run_k8s_config"] = snake_keys(rendered["run_k8s_config"], 1)
    # what the chart adds from its own fields
    rendered.update({"instance_config_map": "dagster-instance", "dagster_home": "/opt/dagster",
                     "postgres_password_secret": values["global"]["postgresqlSecretName"],
                     "service_account_name": "dagster"})
    result = process_config(K8sRunLauncher.config_type(), rendered)
    assert result.success, result.errors


def test_helm_user_deployment_runs_the_code_location_with_shared_data(values):
    """The user deployment serves beauty_pipeline.definitions with the data root on a RWX claim."""
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["codeServerArgs"] == ["-m", CODE_MODULE]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env[settings.HOME_ENV] == "/data"
    assert env[settings.MLFLOW_URI_ENV].startswith("http://")
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    mounts = {m["name"]: m["mountPath"] for m in deployment["volumeMounts"]}
    assert mounts["pipeline-data"] == env[settings.HOME_ENV]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
              for v in deployment["volumes"] if "persistentVolumeClaim" in v}
    pvc = load_yaml(K8S / "data-pvc.yaml")
    assert claims["pipeline-data"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    config_mount = mounts["executor-config"]
    assert env["BEAUTY_PIPELINE_K8S_EXECUTOR_CONFIG"] == f"{config_mount}/executor.yaml"


def test_helm_concurrency_values_render_to_a_valid_instance_pool_config(values, tmp_path):
    """The chart's concurrency block (camelCase) becomes a dagster.yaml block Dagster accepts."""
    from dagster._core.instance.config import dagster_instance_config

    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    block = {section: snake_keys(concurrency[section], 1) for section in ("pools", "runs")}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({"concurrency": block}))
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["concurrency"]["pools"]["default_limit"] >= 1
    assert config["concurrency"]["pools"]["granularity"] == "op"
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(
        {"run_monitoring": snake_keys(monitoring, 1)}))
    dagster_instance_config(str(tmp_path))


def test_executor_config_validates_against_k8s_job_executor_schema(executor_config):
    """docker/k8s/executor.yaml is valid run config for dagster_k8s.k8s_job_executor."""
    from dagster._config import process_config
    from dagster_k8s import k8s_job_executor

    result = process_config(k8s_job_executor.config_schema.config_type, executor_config)
    assert result.success, result.errors
    gpu = executor_config["per_step_k8s_config"]["classifier"]["container_config"]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == 1


def _classifier_k8s_tags() -> dict | None:
    """The `dagster-k8s/config` op tag on the classifier asset, if the code defines one."""
    from dagster import AssetKey

    from beauty_pipeline.definitions import defs

    node = defs.resolve_asset_graph().get(AssetKey("classifier"))
    tags = node.assets_def.node_def.tags if node.assets_def.node_def else {}
    raw = tags.get("dagster-k8s/config")
    if raw is None:
        return None
    import json

    return json.loads(raw) if isinstance(raw, str) else raw


def test_classifier_step_pod_requests_one_gpu_and_mounts_the_data_root(values, executor_config):
    """Render the classifier's step Job offline (dagster-k8s's own job builder) and inspect it."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
    )

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    code_location = K8sContainerContext(
        env_vars=[f"{e['name']}={e['value']}" for e in deployment["env"]],
        volumes=deployment["volumes"], volume_mounts=deployment["volumeMounts"])
    executor = K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
        executor_config["step_k8s_config"]))
    op_tag = _classifier_k8s_tags()
    per_step = UserDefinedDagsterK8sConfig.from_dict(
        executor_config["per_step_k8s_config"]["classifier"])
    context = code_location.merge(executor)
    if op_tag is not None:
        context = context.merge(K8sContainerContext(
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(op_tag)))
    context = context.merge(K8sContainerContext(run_k8s_config=per_step))
    job_config = DagsterK8sJobConfig(
        job_image="registry.example.com/beauty-pipeline:0.1.0-cu128", dagster_home="/opt/dagster",
        instance_config_map="dagster-instance",
        postgres_password_secret=values["global"]["postgresqlSecretName"])
    job = construct_dagster_k8s_job(
        job_config, ["dagster", "api", "execute_step"], "dagster-step-classifier",
        user_defined_k8s_config=context.run_k8s_config, component="step_worker")
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert str(container.resources.limits["nvidia.com/gpu"]) == "1"
    assert container.resources.requests["cpu"] == "4"
    assert {m.name: m.mount_path for m in container.volume_mounts}["pipeline-data"] == "/data"
    claims = {v.name: v.persistent_volume_claim.claim_name for v in pod.volumes
              if v.persistent_volume_claim}
    assert claims["pipeline-data"] == "beauty-pipeline-data"
    assert any(t.key == "nvidia.com/gpu" for t in pod.tolerations)
    assert job.spec.backoff_limit == 0
    env = {e.name: e.value for e in container.env}
    assert env[settings.HOME_ENV] == "/data"


def test_gpu_steps_are_in_the_gpu_pool_and_cpu_steps_are_not():
    """The pool the instance caps (concurrency.pools) is the one every GPU step uses; the CPU
    stages (faces, study set, background variants) stay outside it, free to run beside them."""
    from dagster import AssetKey

    from beauty_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in ("classifier", "fairface_backbone", "gradcam", "shortcut_audit"):
        node = graph.get(AssetKey(key))
        assert node.assets_def.node_def.pool == "gpu", key
    for key in ("celebrity_faces", "face_dataset", "face_dataset_variant"):
        assert graph.get(AssetKey(key)).assets_def.node_def.pool is None, key


def _render_step(values, executor_config, op_name: str):
    """A step's pod as dagster-k8s builds it: code location, executor, op tag, per-step config."""
    import json

    from dagster import AssetKey
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
    )

    from beauty_pipeline.definitions import defs

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    context = K8sContainerContext(
        env_vars=[f"{e['name']}={e['value']}" for e in deployment["env"]],
        volumes=deployment["volumes"], volume_mounts=deployment["volumeMounts"])
    context = context.merge(K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
        executor_config["step_k8s_config"])))
    tag = defs.resolve_asset_graph().get(AssetKey(op_name)).assets_def.node_def.tags.get(
        "dagster-k8s/config")
    if tag is not None:
        tag = json.loads(tag) if isinstance(tag, str) else tag
        context = context.merge(K8sContainerContext(
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(tag)))
    per_step = executor_config.get("per_step_k8s_config", {}).get(op_name)
    if per_step:
        context = context.merge(K8sContainerContext(
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(per_step)))
    job_config = DagsterK8sJobConfig(
        job_image="registry.example.com/beauty-pipeline:0.1.0-cu128", dagster_home="/opt/dagster",
        instance_config_map="dagster-instance",
        postgres_password_secret=values["global"]["postgresqlSecretName"])
    job = construct_dagster_k8s_job(
        job_config, ["dagster", "api", "execute_step"], f"dagster-step-{op_name}",
        user_defined_k8s_config=context.run_k8s_config, component="step_worker")
    return job.spec.template.spec


@pytest.mark.parametrize("op_name", ["classifier", "gradcam", "shortcut_audit"])
def test_every_gpu_pool_step_pod_asks_for_one_gpu(values, executor_config, op_name):
    """The gpu-pool steps each get one NVIDIA GPU (op tag and per-step config) and tolerate the
    GPU nodes' taint; with N GPU nodes, N classifier partitions run as parallel pods."""
    pod = _render_step(values, executor_config, op_name)
    (container,) = pod.containers
    assert str(container.resources.limits["nvidia.com/gpu"]) == "1"
    assert any(t.key == "nvidia.com/gpu" for t in pod.tolerations)


@pytest.mark.parametrize("op_name", ["celebrity_faces", "face_dataset_variant"])
def test_data_step_pods_size_their_worker_pools_by_their_cpu_request(values, executor_config,
                                                                     op_name):
    """Data steps request CPUs and no GPU; BEAUTY_PIPELINE_CPUS is that request (downward API),
    which available_cpus() reads, so the face and mask pools start one worker per requested core."""
    pod = _render_step(values, executor_config, op_name)
    (container,) = pod.containers
    assert "nvidia.com/gpu" not in (container.resources.limits or {})
    assert int(container.resources.requests["cpu"]) >= 2
    (cpus,) = [e for e in container.env if e.name == settings.CPUS_ENV]
    assert cpus.value_from.resource_field_ref.resource == "requests.cpu"
    assert str(cpus.value_from.resource_field_ref.divisor) == "1"


def test_available_cpus_reads_the_pod_request_then_the_affinity(monkeypatch):
    """The env var (a pod's CPU request) wins; a bad one is a clear error; else the affinity."""
    import os

    from beauty_pipeline.errors import PipelineError

    monkeypatch.setenv(settings.CPUS_ENV, "3")
    assert settings.available_cpus() == 3
    for wrong in ("zero", "0"):
        monkeypatch.setenv(settings.CPUS_ENV, wrong)
        with pytest.raises(PipelineError, match=settings.CPUS_ENV):
            settings.available_cpus()
    monkeypatch.delenv(settings.CPUS_ENV)
    assert settings.available_cpus() == len(os.sched_getaffinity(0))
