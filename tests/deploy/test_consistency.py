"""The manifests, the gateway config they ship and the image agree with each other.

No cluster or Docker engine is available, so these checks read the rendered manifests, k8s/config.yaml
and the Dockerfile, and run the gateway's own `check` command on the config as a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry

from gateway.runtime.admin import AdminServer
from gateway.runtime.health import Health

from .dockerfile import final_stage, healthcheck_command, parse_dockerfile
from .project import (
    APP_CONFIG,
    DOCKERFILE,
    PARTITIONS_ANNOTATION,
    QLIK_REQUESTS_PER_MINUTE,
    REPO,
    app_config,
    config_env,
    gateway_container,
    is_placeholder,
    one,
    project_version,
    required_env,
)
from .render import Obj, pod_template, split_image

CHECK_MODULE = REPO / "gateway" / "commands" / "check.py"
SASL_MECHANISMS = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


def admin_port() -> int:
    port = app_config()["admin"]["port"]
    assert isinstance(port, int), "admin.port is written out in k8s/config.yaml, not left to a default"
    return port


def container_env(objects: list[Obj]) -> dict[str, Obj]:
    return {e["name"]: e for e in gateway_container(objects)["env"]}


def dummy_env(objects: list[Obj]) -> dict[str, str]:
    """The pod's environment with every Secret value replaced by a recognisable stand-in."""
    return {name: e.get("value", f"dummy-{name.lower()}-value")
            for name, e in container_env(objects).items()}


def secret_variables(node: object, key: str = "") -> set[str]:
    """Variables that feed secret-valued config keys (tokens, passwords, keys), which must stay hidden."""
    if isinstance(node, dict):
        return set().union(set(), *(secret_variables(v, k) for k, v in node.items()))
    if isinstance(node, list):
        return set().union(set(), *(secret_variables(v, key) for v in node))
    if isinstance(node, str) and re.search(r"password|token|key", key):
        return required_env(node)
    return set()


def prestop_sleep_s(container: Obj) -> float:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["python", "-c"], "the image has python; a shell is not guaranteed"
    compile(command[2], "<preStop>", "exec")
    (seconds,) = re.findall(r"time\.sleep\(([\d.]+)\)", command[2])
    return float(seconds)


def max_replicas(objects: list[Obj]) -> tuple[int, Obj]:
    for obj in objects:
        if obj["kind"] == "ScaledObject":
            return obj["spec"]["maxReplicaCount"], obj
        if obj["kind"] == "HorizontalPodAutoscaler":
            return obj["spec"]["maxReplicas"], obj
    raise AssertionError("no autoscaler")


def test_probes_and_port_match_the_admin_server(variant_objects: list[Obj]) -> None:
    container = gateway_container(variant_objects)
    assert container["ports"] == [{"name": "admin", "containerPort": admin_port(), "protocol": "TCP"}]
    assert app_config()["admin"]["host"] == "0.0.0.0", "kubelet and Prometheus reach the pod IP"
    probes = {kind: container[kind]["httpGet"]
              for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes == {"startupProbe": {"path": "/healthz", "port": "admin"},
                      "livenessProbe": {"path": "/healthz", "port": "admin"},
                      "readinessProbe": {"path": "/readyz", "port": "admin"}}


async def test_probe_paths_are_served_by_the_admin_server(base_objects: list[Obj]) -> None:
    """The real admin server, on loopback, answers the paths the manifests and the image ask for."""
    container = gateway_container(base_objects)
    liveness = container["livenessProbe"]["httpGet"]["path"]
    readiness = container["readinessProbe"]["httpGet"]["path"]
    (endpoint,) = one(base_objects, "ServiceMonitor")["spec"]["endpoints"]
    pipeline = app_config()["pipelines"][0]["name"]
    health = Health([pipeline])
    server = AdminServer("127.0.0.1", 0, CollectorRegistry(), health)
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        healthcheck = healthcheck_command(final_stage(parse_dockerfile(DOCKERFILE)))[2].replace(
            f"http://127.0.0.1:{admin_port()}", base)

        async def image_healthcheck() -> int:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", healthcheck, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return await asyncio.wait_for(process.wait(), timeout=30)

        async with aiohttp.ClientSession() as session:
            async def status(path: str) -> int:
                async with session.get(base + path) as response:
                    return response.status

            assert await status("/not-a-probe") == 404, "the server must not answer every path"
            assert await status(endpoint["path"]) == 200
            assert await status(liveness) == 200
            assert await image_healthcheck() == 0
            assert await status(readiness) == 503, "no partitions assigned yet"
            health.set_assigned(pipeline, True, partitions=3)
            assert await status(readiness) == 200
            health.set_failed("an owned task died")
            assert await status(liveness) == 503
            assert await image_healthcheck() != 0
    finally:
        await server.stop()


def test_grace_period_covers_prestop_and_drain(base_objects: list[Obj]) -> None:
    pod_spec = one(base_objects, "Deployment")["spec"]["template"]["spec"]
    drain = app_config()["shutdown_timeout_s"]
    assert drain == 20
    needed = prestop_sleep_s(gateway_container(base_objects)) + drain
    # The margin is for what follows the drain: the last publish, the commit, leaving the group.
    assert pod_spec["terminationGracePeriodSeconds"] >= needed + 5


def test_service_and_monitor_use_the_container_port_name(base_objects: list[Obj]) -> None:
    (port,) = one(base_objects, "Service")["spec"]["ports"]
    assert port == {"name": "admin", "port": admin_port(), "targetPort": "admin", "protocol": "TCP"}
    (endpoint,) = one(base_objects, "ServiceMonitor")["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("admin", "/metrics")


def test_config_file_is_where_the_command_reads_it(base_objects: list[Obj]) -> None:
    container = gateway_container(base_objects)
    cmd = final_stage(parse_dockerfile(DOCKERFILE)).json_args("CMD")
    assert container["args"] == cmd
    config_path = cmd[cmd.index("--config") + 1]
    pod_spec = pod_template(one(base_objects, "Deployment"))["spec"]  # type: ignore[index]
    (volume,) = [v for v in pod_spec["volumes"] if "configMap" in v]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    config_map = one(base_objects, "ConfigMap", volume["configMap"]["name"])
    assert os.path.dirname(config_path) == mount["mountPath"]
    assert os.path.basename(config_path) in config_map["data"]


def test_every_config_variable_comes_from_the_pod_env(base_objects: list[Obj]) -> None:
    env = container_env(base_objects)
    referenced = config_env(app_config())
    assert {"KAFKA_BOOTSTRAP_SERVERS", "QLIK_API_KEY"} <= referenced
    assert referenced <= env.keys(), f"not set by the Deployment: {referenced - env.keys()}"
    for name, entry in env.items():
        if name not in referenced:  # kept for a DataRobot pipeline; must not block a Qlik-only Secret
            assert entry["valueFrom"]["secretKeyRef"].get("optional") is True, name


def test_secrets_reach_the_config_only_through_the_environment() -> None:
    config = app_config()
    backend = config["pipelines"][0]["backend"]
    assert backend["token"] == "${QLIK_API_KEY}"
    assert config["kafka"]["sasl_password"] == "${KAFKA_SASL_PASSWORD}"
    assert config["kafka"]["bootstrap_servers"] == "${KAFKA_BOOTSTRAP_SERVERS}"


@pytest.mark.skipif(is_placeholder(CHECK_MODULE),
                    reason="gateway/commands/check.py is still the skeleton's placeholder")
def test_config_passes_scoring_gateway_check(base_objects: list[Obj]) -> None:
    env = dummy_env(base_objects)
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(APP_CONFIG)],
                            env=os.environ | env, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    secret_vars = secret_variables(app_config())
    assert {"QLIK_API_KEY", "KAFKA_SASL_PASSWORD"} <= secret_vars
    for name in secret_vars:
        assert env[name] not in output, f"{name}'s value is printed by check"
    resolved = yaml.safe_load(result.stdout)
    assert resolved["admin"]["port"] == admin_port()
    assert resolved["shutdown_timeout_s"] == app_config()["shutdown_timeout_s"]
    assert resolved["kafka"]["bootstrap_servers"] == env["KAFKA_BOOTSTRAP_SERVERS"]


def test_image_and_version_agree(variant_objects: list[Obj]) -> None:
    name, tag, digest = split_image(gateway_container(variant_objects)["image"])
    assert (name, tag, digest) == ("registry.example.com/scoring-gateway", project_version(), None)
    versions = {o["metadata"]["labels"]["app.kubernetes.io/version"] for o in variant_objects}
    assert versions == {project_version()}


def test_security_context_matches_the_image_user(base_objects: list[Obj]) -> None:
    pod_spec = one(base_objects, "Deployment")["spec"]["template"]["spec"]
    container = gateway_container(base_objects)
    user = final_stage(parse_dockerfile(DOCKERFILE)).last("USER").split(":")[0]
    # The container's settings win over the pod's; either level must give the restricted profile.
    effective = pod_spec["securityContext"] | container["securityContext"]
    assert effective["runAsNonRoot"] is True
    assert effective["runAsUser"] == int(user) == 10001
    assert effective["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]]
    assert pod_spec["automountServiceAccountToken"] is False


def quantity(value: str | int) -> float:
    """A Kubernetes CPU or memory quantity as a number (cores or bytes)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    text = str(value)
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_resources_are_bounded(base_objects: list[Obj]) -> None:
    resources = gateway_container(base_objects)["resources"]
    for kind in ("cpu", "memory"):
        assert 0 < quantity(resources["requests"][kind]) <= quantity(resources["limits"][kind])
    # One event loop: more than one core is never used.
    assert quantity(resources["limits"]["cpu"]) <= 1


def test_keda_trigger_follows_the_config(base_objects: list[Obj]) -> None:
    config = app_config()
    kafka = config["kafka"]
    (trigger,) = one(base_objects, "ScaledObject")["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["topic"] == config["pipelines"][0]["input_topic"]
    assert meta["consumerGroup"] == kafka["group_id"]
    assert meta["bootstrapServers"] == container_env(base_objects)["KAFKA_BOOTSTRAP_SERVERS"]["value"]
    assert meta["offsetResetPolicy"] == kafka["auto_offset_reset"]
    assert meta["sasl"] == SASL_MECHANISMS[kafka["sasl_mechanism"]]
    assert (meta["tls"] == "enable") == (kafka["security_protocol"] in ("SSL", "SASL_SSL"))
    assert int(meta["lagThreshold"]) > 0
    auth = one(base_objects, "TriggerAuthentication")["spec"]["secretTargetRef"]
    env = container_env(base_objects)
    by_param = {r["parameter"]: (r["name"], r["key"]) for r in auth}
    for parameter, setting in (("username", "sasl_username"), ("password", "sasl_password")):
        (variable,) = required_env(kafka[setting])
        ref = env[variable]["valueFrom"]["secretKeyRef"]
        assert by_param[parameter] == (ref["name"], ref["key"])


def test_replicas_fit_partitions_and_the_shared_vendor_budget(variant_objects: list[Obj]) -> None:
    """Replicas never exceed partitions, and all replicas together stay inside Qlik's 100/min."""
    most, autoscaler = max_replicas(variant_objects)
    partitions = int(autoscaler["metadata"]["annotations"][PARTITIONS_ANNOTATION])
    assert partitions == 12
    assert 1 <= most <= partitions
    for pipeline in app_config()["pipelines"]:
        if pipeline["backend"]["type"] == "qlik":
            rate = pipeline["backend"]["rate_limit_per_minute"]
            assert rate is not None, "an unbounded rate per pod would overrun the shared budget"
            assert rate * most <= QLIK_REQUESTS_PER_MINUTE


def test_network_policy_opens_exactly_what_the_gateway_uses(base_objects: list[Obj]) -> None:
    spec = one(base_objects, "NetworkPolicy")["spec"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    ingress = [(p["protocol"], p["port"]) for rule in spec["ingress"] for p in rule["ports"]]
    assert ingress == [("TCP", admin_port())]
    egress = {(p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"]}
    assert {("UDP", 53), ("TCP", 53)} <= egress
    bootstrap = container_env(base_objects)["KAFKA_BOOTSTRAP_SERVERS"]["value"]
    for server in bootstrap.split(","):
        assert ("TCP", int(server.rsplit(":", 1)[1])) in egress, f"Kafka at {server} is blocked"
    for pipeline in app_config()["pipelines"]:
        url = urlsplit(pipeline["backend"]["url"])
        assert ("TCP", url.port or {"https": 443, "http": 80}[url.scheme]) in egress


def test_disruption_budget_takes_one_pod_at_a_time(base_objects: list[Obj]) -> None:
    spec = one(base_objects, "PodDisruptionBudget")["spec"]
    assert spec["maxUnavailable"] == 1
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
