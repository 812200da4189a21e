"""Every object `kubectl apply -k` would send validates against the schema of its kind, offline.

There is no cluster here, so nothing is applied. Built-in kinds are checked with kubernetes-validate,
which bundles the Kubernetes OpenAPI schemas, in strict mode (an unknown field is an error, as with
`kubectl apply --validate=strict`), for the oldest Kubernetes version these manifests support and
the newest one bundled. The CRD kinds (ServiceMonitor, PrometheusRule, ScaledObject,
TriggerAuthentication) are checked against the models that cloudcoil-models-prometheus-operator
and cloudcoil-models-keda generate from the CRDs those projects publish: strict types, required
fields and the CRDs' patterns, plus a round trip that rejects fields the CRD does not define (the
API server would drop them silently, so a misspelt field would do nothing).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor
from kubernetes_validate import utils as kubernetes_validate
from pydantic import BaseModel

from .project import SECRET_EXAMPLE, one
from .render import Obj, load_documents

# The PDB's unhealthyPodEvictionPolicy is in the schema from 1.26 but only enabled by default from 1.27.
OLDEST_SUPPORTED = "1.27"
KUBERNETES_VERSIONS = (OLDEST_SUPPORTED, kubernetes_validate.latest_version())
CRD_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PrometheusRule,
    ("keda.sh/v1alpha1", "ScaledObject"): ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TriggerAuthentication,
}


def is_crd(obj: Obj) -> bool:
    return (obj["apiVersion"], obj["kind"]) in CRD_MODELS


def validate_builtin(obj: Obj, version: str) -> None:
    """Raises if the object breaks its kind's schema, or if no schema exists for its kind."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise AssertionError(exc.message) from exc


def undefined_fields(given: Any, kept: Any, path: str = "") -> Iterator[str]:
    """Paths present in the manifest but absent after a pass through the CRD model."""
    if isinstance(given, dict) and isinstance(kept, dict):
        for key, value in given.items():
            if key not in kept:
                yield f"{path}.{key}"
            else:
                yield from undefined_fields(value, kept[key], f"{path}.{key}")
    elif isinstance(given, list) and isinstance(kept, list):
        for index, (item, kept_item) in enumerate(zip(given, kept, strict=True)):
            yield from undefined_fields(item, kept_item, f"{path}[{index}]")


def validate_crd(obj: Obj) -> None:
    model = CRD_MODELS[(obj["apiVersion"], obj["kind"])]
    parsed = model.model_validate_json(json.dumps(obj), strict=True)
    kept = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    unknown = list(undefined_fields(obj, kept))
    assert not unknown, f"{obj['kind']}/{obj['metadata']['name']}: fields not in the CRD: {unknown}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_objects_match_the_kubernetes_schemas(variant_objects: list[Obj], version: str) -> None:
    builtin = [obj for obj in variant_objects if not is_crd(obj)]
    assert {obj["kind"] for obj in builtin} >= {"Deployment", "Service", "ConfigMap",
                                                "PodDisruptionBudget", "NetworkPolicy"}
    for obj in builtin:
        validate_builtin(obj, version)


def test_custom_resources_match_their_crds(variant_objects: list[Obj]) -> None:
    crds = [obj for obj in variant_objects if is_crd(obj)]
    assert {obj["kind"] for obj in crds} >= {"ServiceMonitor", "PrometheusRule"}
    for obj in crds:
        validate_crd(obj)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_secret_example_matches_the_secret_schema(version: str) -> None:
    (secret,) = load_documents(SECRET_EXAMPLE)
    validate_builtin(secret, version)


def test_the_builtin_check_rejects_mistakes(base_objects: list[Obj]) -> None:
    """Controls: the validator is really strict, so the passes above mean something."""
    deployment = copy.deepcopy(one(base_objects, "Deployment"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 35
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST_SUPPORTED, strict=True)
    service = copy.deepcopy(one(base_objects, "Service"))
    service["spec"]["ports"][0]["port"] = "9400"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, OLDEST_SUPPORTED, strict=True)


def test_the_crd_check_rejects_mistakes(base_objects: list[Obj]) -> None:
    scaled = copy.deepcopy(one(base_objects, "ScaledObject"))
    scaled["spec"]["maxReplicaCount"] = "4"
    with pytest.raises(ValueError):
        validate_crd(scaled)
    scaled = copy.deepcopy(one(base_objects, "ScaledObject"))
    scaled["spec"]["maxReplicas"] = 4
    with pytest.raises(AssertionError, match="maxReplicas"):
        validate_crd(scaled)
    monitor = copy.deepcopy(one(base_objects, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(ValueError):
        validate_crd(monitor)
