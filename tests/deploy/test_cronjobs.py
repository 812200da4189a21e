"""What both CronJob components (k8s/batch and k8s/batch/qlik) owe the base, rendered in an overlay
with it: they add their own objects and change nothing else, match the Kubernetes schemas, run the
gateway's image secured and labelled like the Deployment, are not selected as gateway pods, and read
the config and credentials from where the Deployment does. Each component's own file tests its
command and its policies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from .project import (
    BATCH_COMPONENT,
    COMMON_LABELS,
    K8S,
    QLIK_BATCH_COMPONENT,
    SECRET_EXAMPLE,
    app_config,
    config_env,
    cronjob_container,
    gateway_container,
    kinds,
    one,
    project_version,
)
from .render import Obj, load_documents, pod_template, referenced_files, render, render_overlay
from .test_manifest_schemas import KUBERNETES_VERSIONS, is_crd, validate_builtin


@dataclass(frozen=True)
class Component:
    path: Path
    name: str
    added_kinds: tuple[str, ...]

    def render(self) -> list[Obj]:
        return render_overlay([K8S], [self.path])


COMPONENTS = {
    "batch": Component(BATCH_COMPONENT, "scoring-gateway-batch", ("CronJob", "PersistentVolumeClaim", "NetworkPolicy")),
    "qlik-batch": Component(QLIK_BATCH_COMPONENT, "scoring-gateway-qlik-batch", ("CronJob", "NetworkPolicy")),
}


@pytest.fixture(scope="module", params=sorted(COMPONENTS))
def rendered(request: pytest.FixtureRequest) -> tuple[Component, list[Obj]]:
    component = COMPONENTS[request.param]
    return component, component.render()


def test_the_component_adds_its_objects_and_changes_nothing_else(rendered):
    component, objects = rendered
    base = render(K8S)
    assert kinds(objects) == sorted([*kinds(base), *component.added_kinds])
    named = {(o["kind"], o["metadata"]["name"]) for o in objects}
    added = named - {(o["kind"], o["metadata"]["name"]) for o in base}
    assert added == {(kind, component.name) for kind in component.added_kinds}
    assert [o for o in objects if (o["kind"], o["metadata"]["name"]) not in added] == base
    assert not [str(p) for p in referenced_files(component.path) if not p.is_file()]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_objects_match_the_kubernetes_schemas(rendered, version):
    for obj in rendered[1]:
        if not is_crd(obj):
            validate_builtin(obj, version)


def test_security_context_image_resources_and_labels_are_the_deployments(rendered):
    component, objects = rendered
    deployment_pod = pod_template(one(objects, "Deployment"))["spec"]
    pod = pod_template(one(objects, "CronJob"))["spec"]
    container, gateway = cronjob_container(objects), gateway_container(objects)
    assert pod["securityContext"] == deployment_pod["securityContext"]
    assert container["securityContext"] == gateway["securityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["image"] == gateway["image"]
    assert {"requests", "limits"} <= set(container["resources"])
    for key in ("automountServiceAccountToken", "enableServiceLinks"):
        assert pod[key] == deployment_pod[key]
    expected = {**COMMON_LABELS, "app.kubernetes.io/version": project_version(),
                "app.kubernetes.io/name": component.name, "app.kubernetes.io/component": "batch"}
    for obj in objects:
        if obj["metadata"]["name"] == component.name:
            assert obj["metadata"]["labels"] == expected, obj["kind"]


def test_its_pods_are_not_the_gateways_and_take_no_traffic(rendered):
    """The Service, the PodDisruptionBudget and the gateway's NetworkPolicy select gateway pods only;
    the component's own policy selects its pods and lets nothing in."""
    component, objects = rendered
    pod_labels = pod_template(one(objects, "CronJob"))["metadata"]["labels"]
    for selector in (one(objects, "Service")["spec"]["selector"],
                     one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                     one(objects, "NetworkPolicy", "scoring-gateway")["spec"]["podSelector"]["matchLabels"]):
        assert not selector.items() <= pod_labels.items()
    policy = one(objects, "NetworkPolicy", component.name)["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert "ingress" not in policy and "Ingress" in policy["policyTypes"]


def test_config_and_credentials_come_from_where_the_deployments_do(rendered):
    objects = rendered[1]
    template = pod_template(one(objects, "CronJob"))["spec"]
    deployment = pod_template(one(objects, "Deployment"))["spec"]
    volume = next(v for v in template["volumes"] if "configMap" in v)
    assert volume["configMap"] == next(v for v in deployment["volumes"] if "configMap" in v)["configMap"]
    assert volume["configMap"]["name"].startswith("scoring-gateway-config-"), "the generated, hashed name"
    env = {e["name"]: e for e in cronjob_container(objects)["env"]}
    assert config_env(app_config()) <= set(env), "a ${VAR} of config.yaml is missing from the CronJob's env"
    gateway_env = {e["name"]: e for e in gateway_container(objects)["env"]}
    for name in config_env(app_config()):
        assert env[name] == gateway_env[name]
    (secret,) = load_documents(SECRET_EXAMPLE)
    for entry in env.values():
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
