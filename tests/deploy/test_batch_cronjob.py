"""k8s/batch: the CronJob component that runs `scoring-gateway batch`, rendered in an overlay with the
base: valid against the Kubernetes schemas, secured like the Deployment, wired to the same config and
credentials, and running a command the CLI accepts."""

from __future__ import annotations

import re

import pytest

from gateway.cli import build_parser
from gateway.config import parse_config

from .project import (
    BATCH_COMPONENT,
    COMMON_LABELS,
    K8S,
    SECRET_EXAMPLE,
    app_config,
    config_env,
    gateway_container,
    kinds,
    one,
    project_version,
)
from .render import Obj, load_documents, pod_template, referenced_files, render, render_overlay
from .test_manifest_schemas import KUBERNETES_VERSIONS, is_crd, validate_builtin

EXPANSION = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@pytest.fixture(scope="module")
def batch_objects() -> list[Obj]:
    return render_overlay([K8S], [BATCH_COMPONENT])


def cronjob(objects: list[Obj]) -> Obj:
    return one(objects, "CronJob")


def batch_container(objects: list[Obj]) -> Obj:
    template = pod_template(cronjob(objects))
    assert template is not None
    (container,) = template["spec"]["containers"]
    return container


def test_the_component_adds_a_cronjob_its_claim_and_policy_and_changes_nothing_else(batch_objects):
    base = render(K8S)
    assert kinds(batch_objects) == sorted([*kinds(base), "CronJob", "PersistentVolumeClaim", "NetworkPolicy"])
    added = {(o["kind"], o["metadata"]["name"]) for o in batch_objects} - {(o["kind"], o["metadata"]["name"])
                                                                          for o in base}
    assert added == {("CronJob", "scoring-gateway-batch"), ("PersistentVolumeClaim", "scoring-gateway-batch"),
                     ("NetworkPolicy", "scoring-gateway-batch")}
    assert [o for o in batch_objects if (o["kind"], o["metadata"]["name"]) not in added] == base
    assert not [str(p) for p in referenced_files(BATCH_COMPONENT) if not p.is_file()]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_batch_objects_match_the_kubernetes_schemas(batch_objects, version):
    for obj in batch_objects:
        if not is_crd(obj):
            validate_builtin(obj, version)


def test_security_context_is_the_deployments(batch_objects):
    deployment_pod = pod_template(one(batch_objects, "Deployment"))["spec"]
    batch_pod = pod_template(cronjob(batch_objects))["spec"]
    assert batch_pod["securityContext"] == deployment_pod["securityContext"]
    assert batch_container(batch_objects)["securityContext"] == gateway_container(batch_objects)["securityContext"]
    for key in ("automountServiceAccountToken", "enableServiceLinks"):
        assert batch_pod[key] == deployment_pod[key]


def test_image_resources_and_labels(batch_objects):
    container = batch_container(batch_objects)
    assert container["image"] == gateway_container(batch_objects)["image"]
    assert {"requests", "limits"} <= set(container["resources"])
    expected = {**COMMON_LABELS, "app.kubernetes.io/version": project_version(),
                "app.kubernetes.io/name": "scoring-gateway-batch", "app.kubernetes.io/component": "batch"}
    for obj in batch_objects:
        if obj["metadata"]["name"] == "scoring-gateway-batch":
            assert obj["metadata"]["labels"] == expected, obj["kind"]


def test_batch_pods_are_not_the_gateways(batch_objects):
    """The Service, the PodDisruptionBudget and the gateway's NetworkPolicy select gateway pods only."""
    pod_labels = pod_template(cronjob(batch_objects))["metadata"]["labels"]
    selectors = [one(batch_objects, "Service")["spec"]["selector"],
                 one(batch_objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                 one(batch_objects, "NetworkPolicy", "scoring-gateway")["spec"]["podSelector"]["matchLabels"]]
    for selector in selectors:
        assert not selector.items() <= pod_labels.items()
    policy = one(batch_objects, "NetworkPolicy", "scoring-gateway-batch")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert "ingress" not in policy["spec"] and "Ingress" in policy["spec"]["policyTypes"]
    gateway_egress = one(batch_objects, "NetworkPolicy", "scoring-gateway")["spec"]["egress"]
    assert policy["spec"]["egress"] == gateway_egress


def test_the_command_is_one_the_cli_accepts_on_the_shipped_config(batch_objects):
    container = batch_container(batch_objects)
    env = {e["name"]: e for e in container["env"]}
    args = container["args"]
    for name in EXPANSION.findall(" ".join(args)):
        assert name in env, f"$({name}) is not in the container's env"
    job_name = env["JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert job_name == "metadata.labels['batch.kubernetes.io/job-name']"
    parsed = build_parser().parse_args([EXPANSION.sub("job-1", a) for a in args])
    assert parsed.command == "batch"
    assert parsed.writeback.startswith("/data/output/job-1"), "each Job writes its own folder"
    config = parse_config(app_config(), {name: "x" for name in config_env(app_config())} |
                          {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9093"})
    assert parsed.pipeline in [p.name for p in config.pipelines]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert parsed.config.startswith(next(p for p in mounts if p == "/etc/scoring-gateway"))
    for path in (parsed.input, parsed.writeback):
        assert path.startswith("/data/") and not mounts["/data"].get("readOnly", False)


def test_config_and_credentials_come_from_where_the_deployments_do(batch_objects):
    template = pod_template(cronjob(batch_objects))["spec"]
    deployment = pod_template(one(batch_objects, "Deployment"))["spec"]
    config_volume = next(v for v in template["volumes"] if "configMap" in v)
    assert config_volume["configMap"] == next(v for v in deployment["volumes"] if "configMap" in v)["configMap"]
    assert config_volume["configMap"]["name"].startswith("scoring-gateway-config-"), "the generated, hashed name"
    claim = next(v for v in template["volumes"] if "persistentVolumeClaim" in v)
    claim_name = one(batch_objects, "PersistentVolumeClaim")["metadata"]["name"]
    assert claim["persistentVolumeClaim"]["claimName"] == claim_name
    env = {e["name"]: e for e in batch_container(batch_objects)["env"]}
    assert config_env(app_config()) <= set(env), "a ${VAR} of config.yaml is missing from the CronJob's env"
    (secret,) = load_documents(SECRET_EXAMPLE)
    for entry in env.values():
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    gateway_env = {e["name"]: e for e in gateway_container(batch_objects)["env"]}
    for name in config_env(app_config()):
        assert env[name] == gateway_env[name]


def test_runs_do_not_overlap_and_a_dead_pod_is_retried(batch_objects):
    spec = cronjob(batch_objects)["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 1
    assert job["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert batch_container(batch_objects)["securityContext"]["readOnlyRootFilesystem"] is True
