"""Executor choice: in-process/multiprocess by default, one Kubernetes pod per step on a cluster."""

import os
from pathlib import Path

import yaml

EXECUTOR_ENV = "BEAUTY_PIPELINE_EXECUTOR"
K8S_CONFIG_ENV = "BEAUTY_PIPELINE_K8S_EXECUTOR_CONFIG"


def configured_executor():
    """None (Dagster's default) unless BEAUTY_PIPELINE_EXECUTOR=k8s selects k8s_job_executor."""
    choice = os.environ.get(EXECUTOR_ENV, "default")
    if choice == "default":
        return None
    if choice != "k8s":
        raise ValueError(f"{EXECUTOR_ENV}={choice!r}; expected 'default' or 'k8s'")
    from dagster_k8s import k8s_job_executor  # the `team` extra

    path = os.environ.get(K8S_CONFIG_ENV, "")
    config = yaml.safe_load(Path(path).read_text())["execution"]["config"] if path else {}
    return k8s_job_executor.configured(config, name="k8s_job_executor")
