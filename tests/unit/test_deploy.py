"""deploy/ as a user applies it: a pinned image that a loaded or pushed image satisfies."""

from __future__ import annotations

import tomllib
from typing import Any

import yaml
from helpers import ROOT

import workerpool

DEPLOY = ROOT / "deploy"


def _operator_container() -> dict[str, Any]:
    deployment = yaml.safe_load((DEPLOY / "operator.yaml").read_text())
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_the_image_tag_is_the_package_version_everywhere() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version == workerpool.__version__
    images = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["images"]
    assert images == [{"name": "workerpool", "newName": "workerpool", "newTag": version}]
    assert _operator_container()["image"] == f"workerpool:{version}"
    assert f"docker build -t workerpool:{version} ." in (ROOT / "Dockerfile").read_text()


def test_a_loaded_image_is_used_without_a_registry() -> None:
    # with the default (Always for :latest) `kind load`-ed images go ImagePullBackOff
    assert _operator_container()["imagePullPolicy"] == "IfNotPresent"


def test_ready_means_serving_and_kopf_needs_no_passwd_entry() -> None:
    container = _operator_container()
    liveness = "--liveness=http://0.0.0.0:8080/healthz"
    assert liveness in container["args"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080} in container["ports"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} \
        in container["env"]


def test_the_image_user_is_numeric_and_exists() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "\nUSER 10001:10001\n" in dockerfile  # runAsNonRoot needs a number
    assert "useradd --uid 10001 --gid 10001" in dockerfile
