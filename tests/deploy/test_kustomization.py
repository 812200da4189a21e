"""k8s/ renders into the objects an operator expects, labelled and wired to each other.

Rendered with tests/deploy/render.py, not kubectl (there is no cluster or kubectl here); when a
`kubectl` binary is on PATH, one test also renders with it and compares.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .project import (
    APP_CONFIG,
    COMMON_LABELS,
    HPA_COMPONENT,
    K8S,
    SECRET_EXAMPLE,
    SELECTOR,
    gateway_container,
    kinds,
    one,
    project_version,
)
from .render import (
    Obj,
    RenderError,
    Unsupported,
    load_documents,
    pod_template,
    referenced_files,
    render,
    render_overlay,
)

BASE_KINDS = ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
              "PrometheusRule", "Service", "ServiceMonitor"]
# Kubernetes caps all annotations of an object at 256 KiB; client-side `kubectl apply` copies the
# whole object into one (last-applied-configuration), so a larger dashboard could not be applied.
ANNOTATION_LIMIT = 262144


def labels_of(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("labels", {})


def test_every_referenced_file_exists() -> None:
    for directory in (K8S, HPA_COMPONENT):
        missing = [str(path) for path in referenced_files(directory) if not path.is_file()]
        assert not missing, f"{directory}/kustomization.yaml refers to missing files: {missing}"


def test_keda_variant_has_keda_and_no_hpa(base_objects: list[Obj]) -> None:
    assert kinds(base_objects) == sorted([*BASE_KINDS, "ScaledObject", "TriggerAuthentication"])


def test_hpa_variant_swaps_keda_for_the_hpa(hpa_objects: list[Obj]) -> None:
    assert kinds(hpa_objects) == sorted([*BASE_KINDS, "HorizontalPodAutoscaler"])


def test_secret_example_is_not_applied_and_holds_only_placeholders(base_objects: list[Obj]) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert SECRET_EXAMPLE.name not in kustomization["resources"]
    assert "Secret" not in kinds(base_objects)
    (secret,) = load_documents(SECRET_EXAMPLE)
    assert "data" not in secret, "stringData only: placeholders must be readable as placeholders"
    assert secret["stringData"] and set(secret["stringData"].values()) == {"REPLACE_ME"}


def test_every_object_carries_the_common_labels(variant_objects: list[Obj]) -> None:
    expected = COMMON_LABELS | {"app.kubernetes.io/version": project_version()}
    for obj in variant_objects:
        missing = {k: v for k, v in expected.items() if labels_of(obj).get(k) != v}
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"


def test_pods_carry_the_labels_but_not_managed_by(variant_objects: list[Obj]) -> None:
    template = pod_template(one(variant_objects, "Deployment"))
    assert template is not None
    pod_labels = template["metadata"]["labels"]
    for key in ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/component"):
        assert pod_labels[key] == COMMON_LABELS[key]
    assert pod_labels["app.kubernetes.io/version"] == project_version()


def test_objects_are_namespace_agnostic(variant_objects: list[Obj]) -> None:
    assert [o["metadata"]["name"] for o in variant_objects if "namespace" in o["metadata"]] == []


def test_selectors_pick_the_gateway_pods_and_service(variant_objects: list[Obj]) -> None:
    deployment = one(variant_objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": one(variant_objects, "Service")["spec"]["selector"],
        "PodDisruptionBudget": one(variant_objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        "NetworkPolicy": one(variant_objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    }
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    selectors |= {f"topologySpread[{i}]": c["labelSelector"]["matchLabels"] for i, c in enumerate(spread)}
    for owner, selector in selectors.items():
        assert selector == SELECTOR, f"{owner} selects on {selector}: selectors must stay version-free"
        assert selector.items() <= pod_labels.items(), f"{owner} does not select the gateway pods"
    service = one(variant_objects, "Service")
    monitor_selector = one(variant_objects, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    assert monitor_selector.items() <= labels_of(service).items()


def test_autoscalers_target_the_deployment(base_objects: list[Obj], hpa_objects: list[Obj]) -> None:
    deployment = one(base_objects, "Deployment")
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    scaled = one(base_objects, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    auth = one(base_objects, "TriggerAuthentication")
    assert [t["authenticationRef"]["name"] for t in scaled["spec"]["triggers"]] == [auth["metadata"]["name"]]
    target = one(hpa_objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}


def test_config_map_is_generated_from_config_yaml_and_mounted(variant_objects: list[Obj]) -> None:
    volumes = one(variant_objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    (config_volume,) = [v for v in volumes if "configMap" in v]
    name = config_volume["configMap"]["name"]
    assert name.startswith("scoring-gateway-config-"), "a content-hash name rolls the pods on edits"
    config_map = one(variant_objects, "ConfigMap", name)
    assert config_map["data"] == {"config.yaml": APP_CONFIG.read_text(encoding="utf-8")}


def test_secret_references_exist_in_the_secret_example(variant_objects: list[Obj]) -> None:
    (secret,) = load_documents(SECRET_EXAMPLE)
    refs = [(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in gateway_container(variant_objects)["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    for auth in (o for o in variant_objects if o["kind"] == "TriggerAuthentication"):
        refs += [(r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]]
    assert refs
    for name, key in refs:
        assert name == secret["metadata"]["name"]
        assert key in secret["stringData"], f"{key} is read from the Secret but not documented in the example"


def test_dashboard_is_a_labelled_config_map(base_objects: list[Obj]) -> None:
    dashboard = one(base_objects, "ConfigMap", "scoring-gateway-dashboard")
    assert labels_of(dashboard)["grafana_dashboard"] == "1"
    ((key, text),) = dashboard["data"].items()
    assert key.endswith(".json")
    assert json.loads(text) == json.loads((K8S / "grafana-dashboard.json").read_text(encoding="utf-8"))
    assert len(json.dumps(dashboard)) < ANNOTATION_LIMIT, "too big for client-side kubectl apply"


def test_renderer_refuses_what_it_cannot_do_faithfully(tmp_path: Path) -> None:
    """Control: an unimplemented kustomize feature or a file kustomize would refuse fails the render."""
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamePrefix: x-\n")
    with pytest.raises(Unsupported, match="namePrefix"):
        render(tmp_path)
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../outside.yaml]\n")
    (tmp_path / "outside.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(RenderError, match="outside the kustomization root"):
        render(inner)


def kubectl() -> str | None:
    return shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))


def without_hash(objects: list[Obj]) -> list[Obj]:
    """Generated ConfigMap names with the hash suffix cut off, which this renderer only imitates."""
    text = json.dumps(sorted(objects, key=lambda o: (o["kind"], o["metadata"]["name"])), sort_keys=True)
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] == "ConfigMap" and name.startswith("scoring-gateway-config-"):
            text = text.replace(name, "scoring-gateway-config-HASH")
    return json.loads(text)


@pytest.mark.skipif(kubectl() is None, reason="no kubectl binary on PATH to compare with")
def test_renderer_agrees_with_kubectl_kustomize(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        # kustomize refuses absolute paths here
        "resources": [os.path.relpath(K8S, overlay)],
        "components": [os.path.relpath(HPA_COMPONENT, overlay)]}))
    for directory, ours in ((K8S, render(K8S)), (overlay, render_overlay([K8S], [HPA_COMPONENT]))):
        out = subprocess.run([str(kubectl()), "kustomize", str(directory)], capture_output=True,
                             text=True, check=True, timeout=60).stdout
        theirs = [doc for doc in yaml.safe_load_all(out) if doc]
        assert without_hash(ours) == without_hash(theirs)
