"""Build a pipeline's codec and TLS context from its configuration.

``make_codec`` reads the configuration by attribute name (``pipeline.backend.type``, ``.url``, …:
the YAML keys of the product contract), so any object of that shape works, and maps it onto the
codecs' keyword arguments. Keys of the other vendor are ignored here; the configuration loader
rejects them.
"""

from __future__ import annotations

import ssl
from typing import Any

from gateway.backends.codec import Codec
from gateway.backends.datarobot.codec import DataRobotCodec
from gateway.backends.qlik.codec import QlikCodec


def make_codec(pipeline: Any, *, explain: bool = True) -> Codec:
    """The codec for ``pipeline.backend``, with ``pipeline.batching.max_bytes`` as the body cap;
    ``explain=False`` asks for predictions only, whatever the backend's explanation settings."""
    backend = pipeline.backend
    kind = getattr(backend, "type", None)
    batching = getattr(pipeline, "batching", None)
    common: dict[str, Any] = {
        "url": backend.url,
        "token": getattr(backend, "token", None),
        "max_bytes": getattr(batching, "max_bytes", None),
        "response_format": getattr(backend, "response_format", None) or "json",
    }
    if kind == "qlik":
        return QlikCodec(
            **common,
            include_shap=explain and bool(getattr(backend, "include_shap", False)),
            include_source=bool(getattr(backend, "include_source", False)),
            include_not_predicted_reason=bool(getattr(backend, "include_not_predicted_reason", False)),
            index_column=getattr(backend, "index_column", None),
            stringify_values=bool(getattr(backend, "stringify_values", False)),
        )
    if kind == "datarobot":
        passthrough = getattr(backend, "passthrough_columns", None)
        return DataRobotCodec(
            **common,
            datarobot_key=getattr(backend, "datarobot_key", None),
            auth_scheme=getattr(backend, "auth_scheme", None) or "bearer",
            username=getattr(backend, "username", None),
            body_format=getattr(backend, "body_format", None) or "csv",
            gzip=bool(getattr(backend, "gzip", False)),
            max_explanations=(getattr(backend, "max_explanations", 0) or 0) if explain else 0,
            explanation_algorithm=getattr(backend, "explanation_algorithm", None),
            threshold_low=getattr(backend, "threshold_low", None),
            threshold_high=getattr(backend, "threshold_high", None),
            passthrough_columns=passthrough if passthrough == "all" else tuple(passthrough or ()),
            **datarobot_query_options(backend),
        )
    raise ValueError(f"pipeline {getattr(pipeline, 'name', '?')!r}: backend.type must be qlik or "
                     f"datarobot, not {kind!r}")


# -- DataRobot query options (explanation class selectors, prediction warnings, adjusted predictions) --

def datarobot_query_options(backend: Any) -> dict[str, Any]:
    """The DataRobot codec's keywords for the four query keys the seed lists after the explanation
    ones; each left out of the backend means "not sent"."""
    return {
        "explanation_num_top_classes": getattr(backend, "explanation_num_top_classes", None),
        "explanation_class_names": tuple(getattr(backend, "explanation_class_names", None) or ()),
        "exclude_adjusted_predictions": getattr(backend, "exclude_adjusted_predictions", None),
        "prediction_warning_enabled": getattr(backend, "prediction_warning_enabled", None),
    }


def make_ssl_context(ca_file: str | None) -> ssl.SSLContext | None:
    """A context trusting ``ca_file`` (and verifying host names); None = the system's default store."""
    if not ca_file:
        return None
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"ca_file {ca_file!r}: {exc}") from exc
