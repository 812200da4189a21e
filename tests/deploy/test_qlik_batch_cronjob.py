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
    K8S,
    QLIK_BATCH_COMPONENT,
    app_config,
    config_env,
    cronjob_container,
    one,
)
from .render import Obj, render_overlay

EXPANSION = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
NAME = "scoring-gateway-qlik-batch"


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render_overlay([K8S], [QLIK_BATCH_COMPONENT])


def test_the_command_is_one_the_cli_accepts_on_the_shipped_config(objects):
    env = {e["name"]: e for e in cronjob_container(objects)["env"]}
    args = cronjob_container(objects)["args"]
    for name in EXPANSION.findall(" ".join(args)):
        assert name in env and "value" in env[name], f"$({name}) is not a literal in the container's env"
    parsed = build_parser().parse_args([EXPANSION.sub("id-1", a) for a in args])
    assert parsed.command == "qlik-batch"
    assert (parsed.dataset_id, parsed.space_id) == ("id-1", "id-1")
    config = parse_config(app_config(), {name: "x" for name in config_env(app_config())} |
                          {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9093"})
    pipeline = next(p for p in config.pipelines if p.name == parsed.pipeline)
    assert pipeline.backend.type == "qlik", "qlik-batch needs a pipeline with a Qlik backend"
    mounts = {m["mountPath"]: m for m in cronjob_container(objects)["volumeMounts"]}
    assert parsed.config.startswith("/etc/scoring-gateway/") and mounts["/etc/scoring-gateway"]["readOnly"]


def test_runs_do_not_overlap_and_the_command_outlives_its_own_timeout(objects):
    spec = one(objects, "CronJob")["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0, "a failed job would fail again: it is not retried blindly"
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    parsed = build_parser().parse_args([EXPANSION.sub("x", a) for a in cronjob_container(objects)["args"]])
    assert job["activeDeadlineSeconds"] > parsed.timeout_s, "the command's own timeout (and cancel) comes first"
    assert job["template"]["spec"]["terminationGracePeriodSeconds"] >= 30, "time to cancel after SIGTERM"


def test_its_pods_reach_only_dns_and_https(objects):
    policy = one(objects, "NetworkPolicy", NAME)["spec"]
    ports = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443)}
