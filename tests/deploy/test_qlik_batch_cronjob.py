"""k8s/batch/qlik: the CronJob component that runs `scoring-gateway qlik-batch`, rendered in an overlay
with the base: valid against the Kubernetes schemas, secured like the Deployment, wired to the same
config and credentials, running a command the CLI accepts, and giving that command the time to
cancel the job after SIGTERM."""

from __future__ import annotations

import re

import pytest

from gateway.cli import build_parser
from gateway.config import parse_config

from .project import (
    COMMON_LABELS,
    K8S,
    QLIK_BATCH_COMPONENT,
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
NAME = "scoring-gateway-qlik-batch"


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render_overlay([K8S], [QLIK_BATCH_COMPONENT])


def container(objects: list[Obj]) -> Obj:
    template = pod_template(one(objects, "CronJob"))
    assert template is not None
    (only,) = template["spec"]["containers"]
    return only


def test_the_component_adds_a_cronjob_and_its_policy_and_changes_nothing_else(objects):
    base = render(K8S)
    assert kinds(objects) == sorted([*kinds(base), "CronJob", "NetworkPolicy"])
    added = {(o["kind"], o["metadata"]["name"]) for o in objects} - {(o["kind"], o["metadata"]["name"]) for o in base}
    assert added == {("CronJob", NAME), ("NetworkPolicy", NAME)}
    assert [o for o in objects if (o["kind"], o["metadata"]["name"]) not in added] == base
    assert not [str(p) for p in referenced_files(QLIK_BATCH_COMPONENT) if not p.is_file()]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_objects_match_the_kubernetes_schemas(objects, version):
    for obj in objects:
        if not is_crd(obj):
            validate_builtin(obj, version)


def test_security_context_image_and_labels_are_the_deployments(objects):
    deployment_pod = pod_template(one(objects, "Deployment"))["spec"]
    pod = pod_template(one(objects, "CronJob"))["spec"]
    assert pod["securityContext"] == deployment_pod["securityContext"]
    assert container(objects)["securityContext"] == gateway_container(objects)["securityContext"]
    assert container(objects)["securityContext"]["readOnlyRootFilesystem"] is True
    assert container(objects)["image"] == gateway_container(objects)["image"]
    for key in ("automountServiceAccountToken", "enableServiceLinks"):
        assert pod[key] == deployment_pod[key]
    expected = {**COMMON_LABELS, "app.kubernetes.io/version": project_version(),
                "app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "batch"}
    for obj in objects:
        if obj["metadata"]["name"] == NAME:
            assert obj["metadata"]["labels"] == expected, obj["kind"]


def test_its_pods_are_not_the_gateways_and_reach_only_dns_and_https(objects):
    pod_labels = pod_template(one(objects, "CronJob"))["metadata"]["labels"]
    for selector in (one(objects, "Service")["spec"]["selector"],
                     one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                     one(objects, "NetworkPolicy", "scoring-gateway")["spec"]["podSelector"]["matchLabels"]):
        assert not selector.items() <= pod_labels.items()
    policy = one(objects, "NetworkPolicy", NAME)["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert "ingress" not in policy and "Ingress" in policy["policyTypes"]
    ports = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443)}


def test_the_command_is_one_the_cli_accepts_on_the_shipped_config(objects):
    env = {e["name"]: e for e in container(objects)["env"]}
    args = container(objects)["args"]
    for name in EXPANSION.findall(" ".join(args)):
        assert name in env and "value" in env[name], f"$({name}) is not a literal in the container's env"
    parsed = build_parser().parse_args([EXPANSION.sub("id-1", a) for a in args])
    assert parsed.command == "qlik-batch"
    assert (parsed.dataset_id, parsed.space_id) == ("id-1", "id-1")
    config = parse_config(app_config(), {name: "x" for name in config_env(app_config())} |
                          {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9093"})
    pipeline = next(p for p in config.pipelines if p.name == parsed.pipeline)
    assert pipeline.backend.type == "qlik", "qlik-batch needs a pipeline with a Qlik backend"
    mounts = {m["mountPath"]: m for m in container(objects)["volumeMounts"]}
    assert parsed.config.startswith("/etc/scoring-gateway/") and mounts["/etc/scoring-gateway"]["readOnly"]


def test_config_and_credentials_come_from_where_the_deployments_do(objects):
    template = pod_template(one(objects, "CronJob"))["spec"]
    deployment = pod_template(one(objects, "Deployment"))["spec"]
    volume = next(v for v in template["volumes"] if "configMap" in v)
    assert volume["configMap"] == next(v for v in deployment["volumes"] if "configMap" in v)["configMap"]
    assert volume["configMap"]["name"].startswith("scoring-gateway-config-"), "the generated, hashed name"
    env = {e["name"]: e for e in container(objects)["env"]}
    assert config_env(app_config()) <= set(env), "a ${VAR} of config.yaml is missing from the CronJob's env"
    (secret,) = load_documents(SECRET_EXAMPLE)
    gateway_env = {e["name"]: e for e in gateway_container(objects)["env"]}
    for name in config_env(app_config()):
        assert env[name] == gateway_env[name]
    for entry in env.values():
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]


def test_runs_do_not_overlap_and_the_command_outlives_its_own_timeout(objects):
    spec = one(objects, "CronJob")["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0, "a failed job would fail again: it is not retried blindly"
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    parsed = build_parser().parse_args([EXPANSION.sub("x", a) for a in container(objects)["args"]])
    assert job["activeDeadlineSeconds"] > parsed.timeout_s, "the command's own timeout (and cancel) comes first"
    assert job["template"]["spec"]["terminationGracePeriodSeconds"] >= 30, "time to cancel after SIGTERM"
