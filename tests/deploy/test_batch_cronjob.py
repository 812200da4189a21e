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
    K8S,
    app_config,
    config_env,
    cronjob_container,
    one,
)
from .render import Obj, pod_template, render_overlay

EXPANSION = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@pytest.fixture(scope="module")
def batch_objects() -> list[Obj]:
    return render_overlay([K8S], [BATCH_COMPONENT])


def cronjob(objects: list[Obj]) -> Obj:
    return one(objects, "CronJob")


def test_the_command_is_one_the_cli_accepts_on_the_shipped_config(batch_objects):
    container = cronjob_container(batch_objects)
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


def test_runs_do_not_overlap_and_a_dead_pod_is_retried(batch_objects):
    spec = cronjob(batch_objects)["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 1
    assert job["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert cronjob_container(batch_objects)["securityContext"]["readOnlyRootFilesystem"] is True


def test_it_writes_to_its_own_claim_and_reaches_what_the_gateway_reaches(batch_objects):
    template = pod_template(cronjob(batch_objects))["spec"]
    claim = next(v for v in template["volumes"] if "persistentVolumeClaim" in v)
    claim_name = one(batch_objects, "PersistentVolumeClaim")["metadata"]["name"]
    assert claim["persistentVolumeClaim"]["claimName"] == claim_name
    policy = one(batch_objects, "NetworkPolicy", "scoring-gateway-batch")["spec"]
    assert policy["egress"] == one(batch_objects, "NetworkPolicy", "scoring-gateway")["spec"]["egress"]
