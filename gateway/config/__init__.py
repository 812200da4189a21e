"""The gateway's configuration: YAML in, frozen typed objects out, every mistake named by its key path.

The sections are pydantic models (``models``, ``backend``) whose attribute names are the YAML key
names of PRODUCT.md §3; each key's type, default, constraint and description sit in one field
declaration, from which the JSON Schema (``scoring-gateway schema``) and the README's reference
tables come. ``parse_config`` is pure apart from reading ``${file:...}`` secrets, which keeps every
rule unit-testable; ``load_config`` adds the file and ``os.environ``.

Variables and secrets
    ``${VAR}`` is replaced by the environment variable VAR; referring to an unset VAR is an error
    naming the variable and the key that uses it. ``${VAR:-default}`` falls back to
    ``default`` when VAR is unset or empty (the default cannot contain ``}``). ``${file:PATH}`` is
    replaced by the contents of PATH with trailing newlines removed: the form for secrets mounted as
    files (Kubernetes secret volumes); a relative PATH is taken from the config file's directory.
    ``$${`` writes a literal ``${``. A value produced by substitution is converted to the key's type
    (``port: ${ADMIN_PORT:-9400}`` is the integer 9400), and for keys that may be null an empty
    result or ``null`` means null (``sasl_password: ${KAFKA_SASL_PASSWORD:-}``).

Errors
    Every problem found is reported at once, one ``ConfigError.errors`` line each, starting with the
    key path (``pipelines[0].batching.max_rows: must be > 0``); YAML syntax errors start with the
    file and line instead. Values of secret keys and of ``${file:...}`` contents are never echoed.

Secrets
    ``backend.token``, ``backend.datarobot_key`` and ``kafka.sasl_password`` are secrets: printed as
    ``***`` by :meth:`Config.redacted`, and listed by :meth:`Config.secret_values` so logging can
    scrub them. ``backend.token`` is optional: both vendors require one in production, but a local
    emulator accepts requests without one, and a missing token fails loudly on the first call (401).
"""

from .backend import BackendConfig, DataRobotBackend, QlikBackend
from .errors import ConfigError, UnknownPipeline
from .kafka import KafkaConfig
from .loading import load_config, parse_config
from .models import (
    DATAROBOT_MAX_BODY_BYTES,
    QLIK_MAX_COLUMNS,
    AdminConfig,
    BatchingConfig,
    ChallengerConfig,
    CircuitBreakerConfig,
    ConcurrencyConfig,
    Config,
    ExplanationsConfig,
    OutputsConfig,
    PipelineConfig,
    RetryConfig,
)
from .schema import json_schema
from .secrets import is_secret_key
from .section import Section

__all__ = [
    "DATAROBOT_MAX_BODY_BYTES",
    "QLIK_MAX_COLUMNS",
    "AdminConfig",
    "BackendConfig",
    "BatchingConfig",
    "ChallengerConfig",
    "CircuitBreakerConfig",
    "ConcurrencyConfig",
    "Config",
    "ConfigError",
    "DataRobotBackend",
    "ExplanationsConfig",
    "KafkaConfig",
    "OutputsConfig",
    "PipelineConfig",
    "QlikBackend",
    "RetryConfig",
    "Section",
    "UnknownPipeline",
    "is_secret_key",
    "json_schema",
    "load_config",
    "parse_config",
]
