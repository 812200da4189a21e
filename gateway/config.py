"""The gateway's configuration: YAML in, frozen typed objects out, every mistake named by its key path.

Attribute names are the YAML key names of PRODUCT.md §3, so a reader can go from the file to the code
without a mapping table. ``parse_config`` is pure apart from reading ``${file:...}`` secrets, which
keeps every rule unit-testable; ``load_config`` adds the file and ``os.environ``.

Variables and secrets
    ``${VAR}`` is replaced by the environment variable VAR; referring to an unset VAR is an error
    naming the variable and the key that uses it. ``${VAR:-default}`` falls back to
    ``default`` when VAR is unset or empty (the default cannot contain ``}``). ``${file:PATH}`` is
    replaced by the contents of PATH with trailing newlines removed: the form for secrets mounted as
    files (Kubernetes secret volumes); a relative PATH is taken from the config file's directory.
    ``$${`` writes a literal ``${``. Substitution happens inside string values after the YAML is
    read, so a secret containing ``#``, ``:`` or quotes cannot change the document's structure. A
    value produced by substitution is converted to the key's type (``port: ${ADMIN_PORT:-9400}`` is
    the integer 9400), and for keys that may be null an empty result or ``null`` means null
    (``sasl_password: ${KAFKA_SASL_PASSWORD:-}``).

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

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

# DataRobot's Prediction API rejects request bodies over 50 MB.
DATAROBOT_MAX_BODY_BYTES = 52_428_800
# Qlik Predict: "Maximum number of columns in the dataset: 500".
QLIK_MAX_COLUMNS = 500


class ConfigError(ValueError):
    """An invalid configuration; ``errors`` holds one line per problem, each naming its key path."""

    def __init__(self, errors: list[str] | tuple[str, ...]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))


# --- validation machinery ---------------------------------------------------------------------------

class _Invalid:
    """Marks a value that failed validation, so dependent checks are skipped instead of cascading."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


class Substituted(str):
    """A string produced by ``${...}`` substitution: may be converted to the key's type."""


class _Errors:
    """Collects problems during one parse; also remembers secret values so no message echoes them.

    ``resolve`` performs ``${...}`` substitution on a value about to be validated, so problems are
    reported in document order whatever their kind.
    """

    def __init__(self, substitution: _Substitution | None = None) -> None:
        self.lines: list[str] = []
        self.secrets: set[str] = set()
        self.substitution = substitution

    def resolve(self, value: Any, path: str) -> Any:
        return value if self.substitution is None else self.substitution.tree(value, path, self)

    def add(self, path: str, message: str) -> Any:
        self.lines.append(f"{path or '(top level)'}: {message}")
        return INVALID

    def __len__(self) -> int:
        return len(self.lines)

    def scrubbed(self) -> list[str]:
        lines = self.lines
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= 4:
                lines = [line.replace(secret, "***") for line in lines]
        return lines


Check = Callable[[Any, str, _Errors], Any]


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _describe(value: Any, *, secret: bool = False) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, (int, float)):
        return "a number" if secret else repr(value)
    if isinstance(value, str):
        return "a string" if secret else repr(str(value))
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _typed(value: Any) -> Any:
    """A substituted string read as a YAML scalar, so ``"9400"`` becomes 9400 and ``""`` null."""
    if not isinstance(value, Substituted):
        return value
    try:
        loaded = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        return value
    return loaded if loaded is None or isinstance(loaded, (bool, int, float, str)) else value


def _nullable(check: Check) -> Check:
    def nullable(value: Any, path: str, errs: _Errors) -> Any:
        if value is None or (isinstance(value, Substituted) and value.strip() in ("", "null", "~")):
            return None
        return check(value, path, errs)
    return nullable


def _integer(*, gt: int | None = None, ge: int | None = None, le: int | None = None) -> Check:
    def integer(value: Any, path: str, errs: _Errors) -> Any:
        value = _typed(value)
        if value is None:
            return errs.add(path, "must not be null (leave the key out to use the default)")
        if isinstance(value, bool) or not isinstance(value, int):
            return errs.add(path, f"expected an integer, got {_describe(value)}")
        return _bounded(value, path, errs, gt=gt, ge=ge, le=le)
    return integer


def _number(*, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Check:
    def number(value: Any, path: str, errs: _Errors) -> Any:
        value = _typed(value)
        if value is None:
            return errs.add(path, "must not be null (leave the key out to use the default)")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return errs.add(path, f"expected a number, got {_describe(value)}")
        if not math.isfinite(value):
            return errs.add(path, f"must be a finite number, got {value!r}")
        return _bounded(value, path, errs, gt=gt, ge=ge, le=le)
    return number


def _bounded(value: float, path: str, errs: _Errors, *, gt: float | None, ge: float | None,
             le: float | None) -> Any:
    if gt is not None and not value > gt:
        return errs.add(path, f"must be > {gt}")
    if ge is not None and not value >= ge:
        return errs.add(path, f"must be >= {ge}")
    if le is not None and not value <= le:
        return errs.add(path, f"must be <= {le}")
    return value


def _boolean() -> Check:
    def boolean(value: Any, path: str, errs: _Errors) -> Any:
        value = _typed(value)
        if not isinstance(value, bool):
            return errs.add(path, f"expected true or false, got {_describe(value)}")
        return value
    return boolean


def _string(*, choices: tuple[str, ...] | None = None, secret: bool = False,
            pattern: re.Pattern[str] | None = None, pattern_help: str = "") -> Check:
    def string(value: Any, path: str, errs: _Errors) -> Any:
        if value is None:
            return errs.add(path, "must not be null (leave the key out to use the default)")
        if not isinstance(value, str):
            hint = "" if secret or not isinstance(value, (int, float)) else " (quote it)"
            return errs.add(path, f"expected a string, got {_describe(value, secret=secret)}{hint}")
        text = str(value)
        if secret:
            errs.secrets.add(text)
        if not text.strip():
            return errs.add(path, "must not be empty")
        if choices is not None and text not in choices:
            return errs.add(path, f"must be one of {', '.join(choices)}, got {text!r}")
        if pattern is not None and not pattern.fullmatch(text):
            return errs.add(path, f"{text!r} is not valid: {pattern_help}")
        return text
    return string


def _string_list(*, item: Check, allow_empty: bool = False) -> Check:
    def string_list(value: Any, path: str, errs: _Errors) -> Any:
        if not isinstance(value, list):
            return errs.add(path, f"expected a list of names, got {_describe(value)}")
        if not value and not allow_empty:
            return errs.add(path, "must not be empty")
        items = tuple(item(v, f"{path}[{i}]", errs) for i, v in enumerate(value))
        if INVALID in items:
            return INVALID
        seen: set[str] = set()
        for i, name in enumerate(items):
            if name in seen:
                return errs.add(f"{path}[{i}]", f"duplicate name {name!r}")
            seen.add(name)
        return items
    return string_list


def _one_of(*checks: tuple[Callable[[Any], bool], Check], expected: str) -> Check:
    """The first check whose predicate accepts the value decides; else a type error."""
    def one_of(value: Any, path: str, errs: _Errors) -> Any:
        value = _typed(value)
        for accepts, check in checks:
            if accepts(value):
                return check(value, path, errs)
        return errs.add(path, f"expected {expected}, got {_describe(value)}")
    return one_of


_TOPIC = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9._-]{1,249}")
_TOPIC_HELP = "a Kafka topic name has 1-249 letters, digits, '.', '_' or '-'"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_NAME_HELP = "use letters, digits, '.', '_' or '-' (at most 100, starting with a letter or digit)"


def _topic() -> Check:
    return _string(pattern=_TOPIC, pattern_help=_TOPIC_HELP)


def _bootstrap_servers() -> Check:
    """``host:port`` entries, comma-separated or as a list; stored as the comma-joined string."""
    entry = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?")

    def bootstrap_servers(value: Any, path: str, errs: _Errors) -> Any:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        if not isinstance(value, str):
            return errs.add(path, f"expected 'host:port[,host:port...]', got {_describe(value)}")
        entries = [e.strip() for e in value.split(",")]
        if not any(entries):
            return errs.add(path, "must not be empty")
        for text in entries:
            match = entry.fullmatch(text)
            if not match or (match.group(1) is not None and not 0 < int(match.group(1)) < 65536):
                return errs.add(path, f"{text!r} is not a host:port address")
        return ",".join(entries)
    return bootstrap_servers


def _url() -> Check:
    def url(value: Any, path: str, errs: _Errors) -> Any:
        text = _string()(value, path, errs)
        if text is INVALID:
            return INVALID
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            return errs.add(path, f"is not a valid URL: {exc}")
        if parts.scheme not in ("http", "https"):
            return errs.add(path, f"invalid URL scheme {parts.scheme or '(none)'!r}: expected https or http")
        if not parts.hostname:
            return errs.add(path, "has no host")
        if parts.username is not None or parts.password is not None:
            return errs.add(path, "must not carry credentials: use backend.token")
        if parts.query or parts.fragment:
            return errs.add(path, "must not carry a query string or fragment: the backend options set "
                                  "the query parameters")
        return text
    return url


@dataclass(frozen=True, slots=True)
class _Section:
    """Validates a mapping into the dataclass ``cls``; a missing or null section means all defaults."""

    cls: type

    def __call__(self, value: Any, path: str, errs: _Errors) -> Any:
        return _parse_section(self.cls, {} if value is None else value, path, errs)


@dataclass(frozen=True, slots=True)
class _SectionList:
    cls: type

    def __call__(self, value: Any, path: str, errs: _Errors) -> Any:
        if not isinstance(value, list):
            return errs.add(path, f"expected a list, got {_describe(value)}")
        if not value:
            return errs.add(path, "must have at least one entry")
        items = tuple(_parse_section(self.cls, v, f"{path}[{i}]", errs) for i, v in enumerate(value))
        return INVALID if INVALID in items else items


def _key(check: Check, default: Any = dataclasses.MISSING, *, secret: bool = False,
         only_for: str | None = None) -> Any:
    """A config key: its validator, default, whether it is secret, and which backend type it is for."""
    metadata = {"check": check, "secret": secret, "only_for": only_for}
    if isinstance(check, _Section):
        # A section whose keys all have defaults may be left out of the file, and of constructor calls.
        required = any(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                       for f in dataclasses.fields(check.cls))
        return field(metadata=metadata) if required else field(default_factory=check.cls, metadata=metadata)
    return field(default=default, metadata=metadata)


def _unknown_key(key: object, known: list[str]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _parse_section(cls: type, raw: Any, path: str, errs: _Errors) -> Any:
    if not isinstance(raw, Mapping):
        return errs.add(path, f"expected a mapping, got {_describe(raw)}")
    before = len(errs)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            errs.add(_join(path, key), _unknown_key(key, list(fields)))
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        check: Check = f.metadata["check"]
        only_for = f.metadata["only_for"]
        kind = values.get("type")
        if name in raw and only_for is not None and isinstance(kind, str) and kind != only_for:
            values[name] = errs.add(key_path, f"only valid for type {only_for} (this backend is {kind})")
        elif name in raw:
            value = raw[name]
            if not isinstance(check, (_Section, _SectionList)):  # sections resolve their own keys
                value = errs.resolve(value, key_path)
            if f.metadata["secret"] and isinstance(value, str):
                errs.secrets.add(str(value))
            # INVALID here means a ${...} reference failed and was reported.
            values[name] = INVALID if value is INVALID else check(value, key_path, errs)
        elif isinstance(check, _Section):
            values[name] = check({}, key_path, errs)
        elif f.default is not dataclasses.MISSING:
            values[name] = f.default
        else:
            values[name] = errs.add(key_path, "required")
    cross_check = _CROSS_CHECKS.get(cls)
    if cross_check is not None:
        cross_check(values, raw, path, errs)
    if len(errs) > before:
        return INVALID
    return cls(**values)


def _valid(values: Mapping[str, Any], *names: str) -> bool:
    return all(values.get(name) is not INVALID for name in names)


# --- the configuration objects -----------------------------------------------------------------------

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaConfig:
    bootstrap_servers: str = _key(_bootstrap_servers())
    group_id: str = _key(_string(), "scoring-gateway")
    client_id: str = _key(_string(), "scoring-gateway")
    session_timeout_ms: int = _key(_integer(gt=0), 10000)
    # None = session_timeout_ms / 3, the client's usual ratio.
    heartbeat_interval_ms: int | None = _key(_nullable(_integer(gt=0)), None)
    # A new consumer group starts at the oldest retained record, so a backlog is never skipped.
    auto_offset_reset: str = _key(_string(choices=("earliest", "latest")), "earliest")
    commit_interval_ms: int = _key(_integer(gt=0), 1000)
    max_poll_records: int = _key(_integer(gt=0), 2000)
    producer_linger_ms: int = _key(_integer(ge=0), 0)
    # Idempotent producer: a retried produce is written once per partition. Off only for brokers
    # that do not support it (InitProducerId), such as the embedded tansu broker of the demo.
    enable_idempotence: bool = _key(_boolean(), True)
    security_protocol: str = _key(_string(choices=_SECURITY_PROTOCOLS), "PLAINTEXT")
    sasl_mechanism: str | None = _key(_nullable(_string(choices=_SASL_MECHANISMS)), None)
    sasl_username: str | None = _key(_nullable(_string()), None)
    sasl_password: str | None = _key(_nullable(_string(secret=True)), None, secret=True)
    ssl_cafile: str | None = _key(_nullable(_string()), None)
    ssl_certfile: str | None = _key(_nullable(_string()), None)
    ssl_keyfile: str | None = _key(_nullable(_string()), None)


def _check_kafka(values: dict[str, Any], raw: Mapping[str, Any], path: str, errs: _Errors) -> None:
    if _valid(values, "heartbeat_interval_ms", "session_timeout_ms"):
        heartbeat, session = values["heartbeat_interval_ms"], values["session_timeout_ms"]
        if heartbeat is not None and heartbeat >= session:
            errs.add(_join(path, "heartbeat_interval_ms"), f"must be < session_timeout_ms ({session})")
    protocol = values.get("security_protocol")
    if protocol is INVALID:
        return
    sasl_keys = ("sasl_mechanism", "sasl_username", "sasl_password")
    if protocol.startswith("SASL_"):
        for key in sasl_keys:
            if values.get(key) is None:
                errs.add(_join(path, key), f"required with security_protocol {protocol}")
    else:
        for key in sasl_keys:
            if values.get(key) not in (None, INVALID):
                errs.add(_join(path, key), "only used with security_protocol SASL_PLAINTEXT or SASL_SSL "
                                           f"(it is {protocol})")
    if protocol not in ("SSL", "SASL_SSL"):
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if values.get(key) not in (None, INVALID):
                errs.add(_join(path, key), f"only used with security_protocol SSL or SASL_SSL (it is {protocol})")
    if values.get("ssl_keyfile") not in (None, INVALID) and values.get("ssl_certfile") is None:
        errs.add(_join(path, "ssl_keyfile"), "needs ssl_certfile (the client certificate)")


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminConfig:
    host: str = _key(_string(), "0.0.0.0")
    port: int = _key(_integer(ge=0, le=65535), 9400)  # 0 lets the OS choose


_BACKEND_TYPES = ("qlik", "datarobot")
_QLIK = "qlik"
_DATAROBOT = "datarobot"
_QLIK_PATH = re.compile(r"(?:/.*)?/api/v1/ml/deployments/[^/]+(?:/aliases/[^/]+)?"
                        r"/realtime-predictions/actions/run/?")
_QLIK_DEPRECATED_PATH = re.compile(r"(?:/.*)?/api/v1/automl-deployments/[^/]+/realtime-predictions/?")
_DATAROBOT_PATH = re.compile(r"(?:/.*)?/(?:predApi/v1\.0|api/v2)/deployments/[^/]+/predictions/?")


def _max_explanations() -> Check:
    return _one_of(
        (lambda v: isinstance(v, int) and not isinstance(v, bool), _integer(ge=0)),
        (lambda v: v == "all", lambda v, p, e: "all"),
        expected='an integer >= 0 or "all"')


def _passthrough_columns() -> Check:
    names = _string_list(item=_string(), allow_empty=True)
    return _one_of(
        (lambda v: isinstance(v, list), names),
        (lambda v: v == "all", lambda v, p, e: "all"),
        expected='a list of column names or "all"')


_UNIT = _nullable(_number(ge=0, le=1))


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendConfig:
    type: str = _key(_string(choices=_BACKEND_TYPES))  # parsed first: later keys depend on it
    url: str = _key(_url())
    token: str | None = _key(_nullable(_string(secret=True)), None, secret=True)
    ca_file: str | None = _key(_nullable(_string()), None)
    rate_limit_per_minute: float | None = _key(_nullable(_number(gt=0)), None)
    response_format: str = _key(_string(choices=("json", "csv")), "json")
    # Qlik only
    include_shap: bool = _key(_boolean(), True, only_for=_QLIK)
    include_source: bool = _key(_boolean(), False, only_for=_QLIK)
    include_not_predicted_reason: bool = _key(_boolean(), True, only_for=_QLIK)
    index_column: str | None = _key(_nullable(_string()), None, only_for=_QLIK)
    stringify_values: bool = _key(_boolean(), False, only_for=_QLIK)
    # DataRobot only
    datarobot_key: str | None = _key(_nullable(_string(secret=True)), None, secret=True,
                                     only_for=_DATAROBOT)
    auth_scheme: str = _key(_string(choices=("bearer", "token", "basic")), "bearer", only_for=_DATAROBOT)
    username: str | None = _key(_nullable(_string()), None, only_for=_DATAROBOT)
    body_format: str = _key(_string(choices=("csv", "json")), "csv", only_for=_DATAROBOT)
    gzip: bool = _key(_boolean(), False, only_for=_DATAROBOT)
    max_explanations: int | str = _key(_max_explanations(), 0, only_for=_DATAROBOT)
    explanation_algorithm: str | None = _key(_nullable(_string(choices=("shap", "xemp"))), None,
                                             only_for=_DATAROBOT)
    threshold_low: float | None = _key(_UNIT, None, only_for=_DATAROBOT)
    threshold_high: float | None = _key(_UNIT, None, only_for=_DATAROBOT)
    passthrough_columns: tuple[str, ...] | str = _key(_passthrough_columns(), (), only_for=_DATAROBOT)

    def applies(self, key: str) -> bool:
        """Whether ``key`` means anything for this backend's type (the other vendor's keys do not)."""
        only_for = next(f.metadata["only_for"] for f in dataclasses.fields(self) if f.name == key)
        return only_for is None or only_for == self.type


def _check_backend(values: dict[str, Any], raw: Mapping[str, Any], path: str, errs: _Errors) -> None:
    kind, url = values.get("type"), values.get("url")
    if _valid(values, "type", "url"):
        _check_backend_path(kind, urlsplit(url).path, _join(path, "url"), errs)
    if kind == _DATAROBOT:
        _check_datarobot(values, path, errs)


def _check_backend_path(kind: str, url_path: str, path: str, errs: _Errors) -> None:
    if kind == _QLIK and not _QLIK_PATH.fullmatch(url_path):
        if _QLIK_DEPRECATED_PATH.fullmatch(url_path):
            errs.add(path, "the automl-deployments endpoint is withdrawn (sunset 2026-02): use "
                           ".../api/v1/ml/deployments/{id}/realtime-predictions/actions/run")
        else:
            errs.add(path, f"path {url_path!r} is not a Qlik real-time run path (expected "
                           ".../api/v1/ml/deployments/{id}[/aliases/{alias}]/realtime-predictions/actions/run)")
    if kind == _DATAROBOT and not _DATAROBOT_PATH.fullmatch(url_path):
        errs.add(path, f"path {url_path!r} is not a DataRobot prediction path (expected "
                       ".../predApi/v1.0/deployments/{id}/predictions or .../api/v2/deployments/{id}/predictions)")


def _check_datarobot(values: dict[str, Any], path: str, errs: _Errors) -> None:
    scheme = values.get("auth_scheme")
    if scheme == "basic":
        for key in ("username", "token"):
            if values.get(key) is None:
                errs.add(_join(path, key), "required with auth_scheme basic")
    elif scheme is not INVALID and values.get("username") not in (None, INVALID):
        errs.add(_join(path, "username"), f"only used with auth_scheme basic (it is {scheme})")
    if values.get("max_explanations") == "all" and values.get("explanation_algorithm") == "xemp":
        errs.add(_join(path, "max_explanations"), '"all" is only valid with SHAP explanations '
                                                  "(explanation_algorithm is xemp)")
    if _valid(values, "threshold_low", "threshold_high"):
        low, high = values["threshold_low"], values["threshold_high"]
        if low is not None and high is not None and low > high:
            errs.add(_join(path, "threshold_low"), f"must be <= threshold_high ({high})")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchingConfig:
    max_rows: int = _key(_integer(gt=0), 500)
    max_bytes: int = _key(_integer(gt=0), 4_000_000)
    linger_ms: int = _key(_integer(ge=0), 10)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcurrencyConfig:
    max_in_flight_requests: int = _key(_integer(gt=0), 16)
    max_in_flight_records: int = _key(_integer(gt=0), 20000)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    max_attempts: int = _key(_integer(gt=0), 6)
    initial_backoff_ms: int = _key(_integer(ge=0), 100)
    max_backoff_ms: int = _key(_integer(ge=0), 10000)
    max_retry_after_s: float = _key(_number(ge=0), 60)
    request_timeout_s: float = _key(_number(gt=0), 30)


def _check_retry(values: dict[str, Any], raw: Mapping[str, Any], path: str, errs: _Errors) -> None:
    if _valid(values, "initial_backoff_ms", "max_backoff_ms"):
        if values["initial_backoff_ms"] > values["max_backoff_ms"]:
            errs.add(_join(path, "initial_backoff_ms"), f"must be <= max_backoff_ms ({values['max_backoff_ms']})")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExplanationsConfig:
    slow_threshold_ms: int = _key(_integer(gt=0), 2000)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputsConfig:
    predictions: str = _key(_topic())
    explanations: str | None = _key(_nullable(_topic()), None)
    dead_letter: str = _key(_topic())


def _check_outputs(values: dict[str, Any], raw: Mapping[str, Any], path: str, errs: _Errors) -> None:
    seen: dict[str, str] = {}
    for key in ("predictions", "explanations", "dead_letter"):
        topic = values.get(key)
        if topic in (None, INVALID):
            continue
        if topic in seen:
            errs.add(_join(path, key), f"must differ from outputs.{seen[topic]} (both are {topic!r})")
        seen.setdefault(topic, key)




@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineConfig:
    name: str = _key(_string(pattern=_NAME, pattern_help=_NAME_HELP))
    input_topic: str = _key(_topic())
    # Request column order; None = the keys of the records, in first-seen order.
    features: tuple[str, ...] | None = _key(_nullable(_string_list(item=_string())), None)
    backend: BackendConfig = _key(_Section(BackendConfig))
    batching: BatchingConfig = _key(_Section(BatchingConfig))
    concurrency: ConcurrencyConfig = _key(_Section(ConcurrencyConfig))
    retry: RetryConfig = _key(_Section(RetryConfig))
    ordering: str = _key(_string(choices=("key", "none")), "key")
    explanations: ExplanationsConfig = _key(_Section(ExplanationsConfig))
    outputs: OutputsConfig = _key(_Section(OutputsConfig))


def _check_pipeline(values: dict[str, Any], raw: Mapping[str, Any], path: str, errs: _Errors) -> None:
    backend, batching = values.get("backend"), values.get("batching")
    if batching is not INVALID and _backend_type(backend, raw) == _DATAROBOT:
        if batching.max_bytes > DATAROBOT_MAX_BODY_BYTES:
            errs.add(_join(path, "batching.max_bytes"), f"must be <= {DATAROBOT_MAX_BODY_BYTES} for a datarobot "
                                                        "backend (DataRobot rejects bodies over 50 MB)")
    if _valid(values, "batching", "concurrency"):
        if values["concurrency"].max_in_flight_records < batching.max_rows:
            errs.add(_join(path, "concurrency.max_in_flight_records"),
                     f"must be >= batching.max_rows ({batching.max_rows}): a full batch must fit in flight")
    if _valid(values, "input_topic", "outputs"):
        outputs = values["outputs"]
        for key in ("predictions", "explanations", "dead_letter"):
            if getattr(outputs, key) == values["input_topic"]:
                errs.add(_join(path, f"outputs.{key}"), f"must differ from input_topic ({values['input_topic']!r})")
    if _valid(values, "backend", "features"):
        _check_columns(backend, values["features"], path, errs)


def _backend_type(backend: Any, raw: Mapping[str, Any]) -> Any:
    """The backend's type, read as written when the backend section has other errors."""
    if backend is not INVALID:
        return backend.type
    written = raw.get("backend")
    return written.get("type") if isinstance(written, Mapping) else None


def _check_columns(backend: BackendConfig, features: tuple[str, ...] | None, path: str,
                   errs: _Errors) -> None:
    """DataRobot echoes only columns it was sent, so passthrough columns must be among explicit features.
    (Qlik's index column needs no such rule: the codec sends it whatever the feature list.)"""
    if features is None:
        return
    if backend.type == _QLIK and len(features) > QLIK_MAX_COLUMNS:
        errs.add(_join(path, "features"), f"has {len(features)} names; Qlik accepts at most {QLIK_MAX_COLUMNS} columns")
    if backend.type == _DATAROBOT and isinstance(backend.passthrough_columns, tuple):
        for i, name in enumerate(backend.passthrough_columns):
            if name not in features:
                errs.add(_join(path, f"backend.passthrough_columns[{i}]"), f"{name!r} is not one of features")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    kafka: KafkaConfig = _key(_Section(KafkaConfig))
    admin: AdminConfig = _key(_Section(AdminConfig))
    shutdown_timeout_s: float = _key(_number(gt=0), 20)
    pipelines: tuple[PipelineConfig, ...] = _key(_SectionList(PipelineConfig))

    def redacted(self) -> dict[str, Any]:
        """The resolved config as plain data, secrets as ``***``, other-vendor backend keys left out."""
        return _plain(self)

    def secret_values(self) -> frozenset[str]:
        """Every secret string in effect, for log and output scrubbing."""
        return frozenset(value for _, value in _secret_fields(self) if value)


def _check_config(values: dict[str, Any], raw: Mapping[str, Any], path: str, errs: _Errors) -> None:
    # Names as written, so a duplicate is reported even while those pipelines have other errors.
    pipelines = raw.get("pipelines")
    first: dict[str, int] = {}
    for i, pipeline in enumerate(pipelines if isinstance(pipelines, list) else ()):
        name = pipeline.get("name") if isinstance(pipeline, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in first:
            errs.add(f"pipelines[{i}].name", f"duplicate pipeline name {name!r} (also pipelines[{first[name]}])")
        first.setdefault(name, i)


# Checks across the keys of one section, after each key is validated; ``raw`` is the section as written.
_CROSS_CHECKS: Mapping[type, Callable[[dict[str, Any], Mapping[str, Any], str, _Errors], None]] = {
    KafkaConfig: _check_kafka,
    BackendConfig: _check_backend,
    RetryConfig: _check_retry,
    OutputsConfig: _check_outputs,
    PipelineConfig: _check_pipeline,
    Config: _check_config,
}

_SECRET_NAME = re.compile(r".*(password|token|secret).*|.*key", re.IGNORECASE)


def is_secret_key(name: str, declared: bool = False) -> bool:
    """Declared secrets, plus any key whose name says it holds one (``*password*``, ``*token*``, ``*key``)."""
    return declared or bool(_SECRET_NAME.fullmatch(name))


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            if isinstance(obj, BackendConfig) and not obj.applies(f.name):
                continue
            value = getattr(obj, f.name)
            if value is not None and is_secret_key(f.name, f.metadata.get("secret", False)):
                out[f.name] = "***"
            else:
                out[f.name] = _plain(value)
        return out
    if isinstance(obj, tuple):
        return [_plain(v) for v in obj]
    return obj


def _secret_fields(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, tuple):
        for item in obj:
            yield from _secret_fields(item)
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, str) and is_secret_key(f.name, f.metadata.get("secret", False)):
                yield f.name, value
            else:
                yield from _secret_fields(value)


# --- substitution ------------------------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


@dataclass(frozen=True, slots=True)
class _Substitution:
    environ: Mapping[str, str]
    base_dir: Path

    def tree(self, node: Any, path: str, errs: _Errors) -> Any:
        """``node`` with every string resolved; INVALID (reported) when any reference fails."""
        if isinstance(node, list):
            items = [self.tree(value, f"{path}[{i}]", errs) for i, value in enumerate(node)]
            return INVALID if INVALID in items else items
        if isinstance(node, str) and "${" in node:
            return self.string(node, path, errs)
        return node

    def string(self, text: str, path: str, errs: _Errors) -> Any:
        parts: list[str] = []
        substituted = False
        position = 0
        for match in _REFERENCE.finditer(text):
            parts.append(text[position:match.start()])
            position = match.end()
            token = match.group(0)
            if token == "$${":
                parts.append("${")
                continue
            if match.group(1) is None:
                return errs.add(path, "unterminated ${ (write $${ for a literal ${)")
            value = self.reference(match.group(1), path, errs)
            if value is INVALID:
                return INVALID
            parts.append(value)
            substituted = True
        parts.append(text[position:])
        result = "".join(parts)
        return Substituted(result) if substituted else result

    def reference(self, body: str, path: str, errs: _Errors) -> Any:
        if body.startswith("file:"):
            return self.secret_file(body[len("file:"):], path, errs)
        match = _VARIABLE.fullmatch(body)
        if not match:
            return errs.add(path, "malformed reference ${...}: expected ${VAR}, ${VAR:-default} or "
                                       "${file:PATH}")
        name, default = match.group(1), match.group(2)
        value = self.environ.get(name)
        if default is not None:
            return value or default
        if value is None:
            return errs.add(path, f"environment variable {name} is not set "
                                       f"(set it, or write ${{{name}:-default}})")
        return value

    def secret_file(self, name: str, path: str, errs: _Errors) -> Any:
        if not name.strip():
            return errs.add(path, "${file:...} needs a path")
        file_path = Path(name).expanduser()
        if not file_path.is_absolute():
            file_path = self.base_dir / file_path
        try:
            value = file_path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            return errs.add(path, f"cannot read secret file {str(file_path)!r}: {reason}")
        errs.secrets.add(value)
        return value


# --- entry points ------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which YAML would otherwise silently resolve to the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def _read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        # Only the position and the problem: the default rendering quotes the offending line,
        # which may hold a secret.
        mark = exc.problem_mark
        where = f"{source}: line {mark.line + 1}, column {mark.column + 1}" if mark else source
        context = f" ({exc.context})" if exc.context else ""
        raise ConfigError([f"{where}: invalid YAML: {exc.problem}{context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {type(exc).__name__}"]) from None


def parse_config(text_or_mapping: str | Mapping[str, Any], environ: Mapping[str, str], *,
                 base_dir: Path | None = None, source: str = "<config>") -> Config:
    """Validate a YAML document (or already-loaded mapping) into a :class:`Config`.

    ``environ`` supplies ``${VAR}`` values; ``base_dir`` anchors relative ``${file:...}`` paths
    (default: the working directory); ``source`` names the document in YAML syntax errors.
    Raises :class:`ConfigError` listing every problem found.
    """
    raw = _read_yaml(text_or_mapping, source) if isinstance(text_or_mapping, str) else text_or_mapping
    if raw is None:
        raise ConfigError([f"{source}: the configuration is empty"])
    errs = _Errors(_Substitution(environ, base_dir or Path.cwd()))
    config = _parse_section(Config, raw, "", errs) if isinstance(raw, Mapping) else \
        errs.add("", f"expected a mapping at the top of the document, got {_describe(raw)}")
    if errs.lines:
        raise ConfigError(errs.scrubbed())
    return config


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; a missing or unreadable file is a :class:`ConfigError` too."""
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"{file_path}: cannot read the config file: {reason}"]) from None
    return parse_config(text, os.environ if environ is None else environ,
                        base_dir=file_path.resolve().parent, source=str(file_path))
