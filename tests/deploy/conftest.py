"""Rendered manifests shared by the deployment tests (rendered once; tests must not mutate them)."""

from __future__ import annotations

import pytest

from .project import HPA_COMPONENT, K8S
from .render import Obj, render, render_overlay


@pytest.fixture(scope="session")
def base_objects() -> list[Obj]:
    """`kubectl apply -k k8s/`: the KEDA variant."""
    return render(K8S)


@pytest.fixture(scope="session")
def hpa_objects() -> list[Obj]:
    """An overlay with k8s/ as its resource and k8s/hpa as its component: the HPA variant."""
    return render_overlay([K8S], [HPA_COMPONENT])


@pytest.fixture(scope="session", params=["keda", "hpa"])
def variant_objects(request: pytest.FixtureRequest, base_objects: list[Obj],
                    hpa_objects: list[Obj]) -> list[Obj]:
    return base_objects if request.param == "keda" else hpa_objects
