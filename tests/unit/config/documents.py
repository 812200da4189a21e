"""The documents the config tests start from: the contract's example and the smallest valid config,
with a way to change it by dotted path and to collect the errors it raises."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, parse_config

# PRODUCT.md §3's example, copied into the repository (see tests/fixtures/product/SOURCES.md).
PRODUCT_EXAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "product" / "config-example.yaml"
QLIK_URL = "https://tenant.eu.qlikcloud.com/api/v1/ml/deployments/c35f4b70-3ce4-4a30-b62b-2aef16943bc4/realtime-predictions/actions/run"
DATAROBOT_URL = "https://example.orm.datarobot.com/predApi/v1.0/deployments/0123456789abcdef01234567/predictions"


def product_example() -> str:
    return PRODUCT_EXAMPLE.read_text(encoding="utf-8")


def base(kind: str = "qlik") -> dict[str, Any]:
    """The smallest valid config: only the required keys."""
    return {
        "kafka": {"bootstrap_servers": "broker:9092"},
        "pipelines": [{
            "name": "churn",
            "input_topic": "churn-features",
            "backend": {"type": kind, "url": QLIK_URL if kind == "qlik" else DATAROBOT_URL},
            "outputs": {"predictions": "churn-predictions", "dead_letter": "churn-dead-letter"},
        }],
    }


def errors_of(raw: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, environ or {})
    assert str(info.value) == "\n".join(info.value.errors)
    return list(info.value.errors)


def with_changes(kind: str = "qlik", **changes: Any) -> dict[str, Any]:
    """``base(kind)`` with changes at dotted paths (``__`` also separates; ``p`` stands for
    ``pipelines.0``); a value of DELETE removes the key."""
    raw = copy.deepcopy(base(kind))
    for dotted, value in changes.items():
        node: Any = raw
        parts = dotted.replace("__", ".").split(".")
        parts = ["pipelines", "0", *parts[1:]] if parts[0] == "p" else parts
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value is DELETE:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
    return raw


DELETE = object()
