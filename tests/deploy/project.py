"""Where the deployment files are and how the tests read them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from .render import Obj

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
HPA_COMPONENT = K8S / "hpa"
BATCH_COMPONENT = K8S / "batch"
QLIK_BATCH_COMPONENT = BATCH_COMPONENT / "qlik"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
APP_CONFIG = K8S / "config.yaml"
SECRET_EXAMPLE = K8S / "secret.example.yaml"

# Qlik's real-time run endpoint: Tier 2, 100 requests/min per user (qlik.dev API reference, "Rate limiting").
QLIK_REQUESTS_PER_MINUTE = 100
PARTITIONS_ANNOTATION = "scoring-gateway/input-topic-partitions"
COMMON_LABELS = {
    "app.kubernetes.io/name": "scoring-gateway",
    "app.kubernetes.io/part-of": "scoring-gateway",
    "app.kubernetes.io/component": "gateway",
    "app.kubernetes.io/managed-by": "kustomize",
}
SELECTOR = {"app.kubernetes.io/name": "scoring-gateway"}
# ${VAR} or ${VAR:-default}; `$${` is the escape for a literal `${`.
ENV_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def project_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def app_config() -> dict[str, Any]:
    """The gateway config shipped in the ConfigMap, as written (no substitution)."""
    return yaml.safe_load(APP_CONFIG.read_text(encoding="utf-8"))


def required_env(text: str) -> set[str]:
    """Variables a config value needs from the environment: referenced without a default."""
    return {m.group(1) for m in ENV_REFERENCE.finditer(text) if m.group(2) is None}


def config_env(node: Any) -> set[str]:
    """required_env over every string value of a parsed config (comments are not substituted)."""
    if isinstance(node, str):
        return required_env(node)
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list):
        return set().union(*(config_env(item) for item in node)) if node else set()
    return set()


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def kinds(objects: list[Obj]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def gateway_container(objects: list[Obj]) -> Obj:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the pod runs the gateway alone"
    return containers[0]


def cronjob_container(objects: list[Obj]) -> Obj:
    """The one container of the one CronJob's pods."""
    (container,) = one(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return container


def is_placeholder(module_file: Path) -> bool:
    """True while a sub-command module is still the skeleton's stand-in, not its real implementation."""
    return "Placeholder: filled in by its own change." in module_file.read_text(encoding="utf-8")
