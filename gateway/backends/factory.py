"""Build a pipeline's codec and TLS context from its typed configuration.

The configuration models (``gateway.config.backend``) declare every backend key and its default;
``make_codec`` only maps each vendor's model onto its codec's keyword arguments, so a default is
stated once, where the key is.
"""

from __future__ import annotations

import ssl
from typing import assert_never

from gateway.backends.codec import Codec
from gateway.backends.datarobot.codec import DataRobotCodec
from gateway.backends.errors import BackendSettingsError
from gateway.backends.qlik.codec import QlikCodec
from gateway.config import DataRobotBackend, PipelineConfig, QlikBackend


def make_codec(pipeline: PipelineConfig, *, explain: bool = True) -> Codec:
    """The codec for ``pipeline.backend``, with ``pipeline.batching.max_bytes`` as the body cap;
    ``explain=False`` asks for predictions only, whatever the backend's explanation settings."""
    backend = pipeline.backend
    max_bytes = pipeline.batching.max_bytes
    match backend:
        case QlikBackend():
            return QlikCodec(
                url=backend.url, token=backend.token, max_bytes=max_bytes,
                response_format=backend.response_format,
                include_shap=explain and backend.include_shap,
                include_source=backend.include_source,
                include_not_predicted_reason=backend.include_not_predicted_reason,
                index_column=backend.index_column,
                stringify_values=backend.stringify_values)
        case DataRobotBackend():
            return DataRobotCodec(
                url=backend.url, token=backend.token, max_bytes=max_bytes,
                response_format=backend.response_format,
                datarobot_key=backend.datarobot_key,
                auth_scheme=backend.auth_scheme,
                username=backend.username,
                body_format=backend.body_format,
                gzip=backend.gzip,
                max_explanations=backend.max_explanations if explain else 0,
                explanation_algorithm=backend.explanation_algorithm,
                threshold_low=backend.threshold_low,
                threshold_high=backend.threshold_high,
                passthrough_columns=backend.passthrough_columns,
                explanation_num_top_classes=backend.explanation_num_top_classes,
                explanation_class_names=backend.explanation_class_names,
                exclude_adjusted_predictions=backend.exclude_adjusted_predictions,
                prediction_warning_enabled=backend.prediction_warning_enabled)
        case _:
            assert_never(backend)


def make_ssl_context(ca_file: str | None) -> ssl.SSLContext | None:
    """A context trusting ``ca_file`` (and verifying host names); None = the system's default store."""
    if not ca_file:
        return None
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise BackendSettingsError(f"ca_file {ca_file!r}: {exc}") from exc
