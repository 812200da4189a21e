"""The emulator's options: one frozen value, validated the same way from the command line and from
``POST /_emulator/config``, so a test can break and heal the backend mid-stream.

A change produces a new :class:`EmulatorOptions` (requests in flight keep the one they started
with); keys not given keep their values, and a given ``error_rate`` map replaces the previous one.

The default latency model is a real service's, not an instant one: ``DEFAULT_LATENCY_MS`` per
request plus ``DEFAULT_PER_ROW_MS`` per row, twice that with SHAP and a hundred times that with
XEMP (the DataRobot documentation: XEMP "can be 100x slower than regular predictions"). Callers
that want an instant backend ask for it: ``latency_ms=0, per_row_ms=0``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.emulator.features import cell_text
from gateway.errors import SettingsError

EXPLANATION_ALGORITHMS = ("shap", "xemp")
DEFAULT_LATENCY_MS = 5.0  # a few ms of network and server overhead per request
DEFAULT_PER_ROW_MS = 0.02  # 500 rows add 10 ms
DEFAULT_SHAP_MULTIPLIER = 2.0  # "much faster [than XEMP] but can add some latency too"
DEFAULT_XEMP_MULTIPLIER = 100.0  # "can be 100x slower than regular predictions"
# Fixed when the server starts; everything else can change at run time.
START_ONLY = frozenset({"tls_cert", "tls_key"})
SECRETS = frozenset({"token", "datarobot_key"})


class OptionError(SettingsError, ValueError):
    """An option value that cannot be used; the message names the option."""


@dataclass(frozen=True, slots=True)
class EmulatorOptions:
    """Everything that shapes the emulator's answers. Times in ms unless the name says otherwise."""

    token: str | None = None  # required bearer token (both vendors); None = accept any
    datarobot_key: str | None = None  # required DataRobot-Key header; None = not required
    latency_ms: float = DEFAULT_LATENCY_MS  # per request
    per_row_ms: float = DEFAULT_PER_ROW_MS
    jitter_ms: float = 0.0  # uniform extra latency in [0, jitter_ms), from the seeded generator
    shap_multiplier: float = DEFAULT_SHAP_MULTIPLIER  # a request with SHAP takes its plain latency times this
    xemp_multiplier: float = DEFAULT_XEMP_MULTIPLIER  # the same for XEMP
    explanation_algorithm: str = "shap"  # the DataRobot deployments' default
    error_rate: Mapping[int, float] = field(default_factory=lambda: MappingProxyType({}))  # status -> P
    retry_after_s: float = 1.0  # Retry-After sent with injected 429 and 503
    rate_limit_per_minute: int | None = None  # sliding 60 s window per vendor; None = unlimited
    max_concurrent_requests: int | None = None  # per vendor, in progress at once; beyond: 429; None = unlimited
    crash_value: str | None = None  # a feature value (as text) on which the model fails: 500 for its request
    hang_rate: float = 0.0  # P(never answer)
    drop_rate: float = 0.0  # P(close the connection without an answer)
    seed: int | None = None  # makes faults and jitter reproducible
    tls_cert: str | None = None
    tls_key: str | None = None
    datasets: str | None = None  # Qlik batch predictions: the folder of apply datasets (<dataSetId>.parquet|csv)
    spaces: str | None = None  # Qlik batch predictions: writeback files go to <spaces>/<spaceId or personal>/

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = _CHECKS[spec.name](spec.name, getattr(self, spec.name))
            object.__setattr__(self, spec.name, value)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise OptionError("tls_cert and tls_key must be given together")

    def updated(self, patch: Mapping[str, object]) -> EmulatorOptions:
        """These options with ``patch`` applied; raises :class:`OptionError` and changes nothing on bad input."""
        unknown = sorted(set(patch) - set(OPTION_NAMES))
        if unknown:
            raise OptionError(f"unknown option {unknown[0]!r}; known options: {', '.join(sorted(RUNTIME_NAMES))}")
        fixed = sorted(set(patch) & START_ONLY)
        if fixed:
            raise OptionError(f"{fixed[0]} can only be set when the emulator starts")
        # The values are checked by __post_init__ (each option's _CHECKS entry), not by their static type.
        return dataclasses.replace(self, **patch)  # type: ignore[arg-type]

    def public(self) -> dict[str, object]:
        """The current values as ``GET /_emulator/config`` shows them (secrets masked)."""
        view: dict[str, object] = {}
        for name in OPTION_NAMES:
            value = getattr(self, name)
            if name in SECRETS and value is not None:
                value = "***"
            elif name == "error_rate":
                value = {str(status): p for status, p in value.items()}
            view[name] = value
        return view


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise OptionError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _probability(name: str, value: object) -> float:
    number = _number(name, value)
    if number > 1.0:
        raise OptionError(f"{name} must be a probability between 0 and 1, got {value!r}")
    return number


def _optional_text(name: str, value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise OptionError(f"{name} must be a non-empty string or null, got {value!r}")
    return value


def _algorithm(name: str, value: object) -> str:
    if value not in EXPLANATION_ALGORITHMS:
        raise OptionError(f"{name} must be one of {', '.join(EXPLANATION_ALGORITHMS)}, got {value!r}")
    return str(value)


def _positive_count(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"{name} must be a positive integer or null, got {value!r}")
    return value


def _cell_value(name: str, value: object) -> str | None:
    """A value as request cells are compared with it: text; a JSON number or boolean becomes its text."""
    if value is None:
        return None
    text = cell_text(value)
    if text is None or not text:
        raise OptionError(f"{name} must be a non-empty string (the value as text), a number, a boolean or null, "
                          f"got {value!r}")
    return text


def _seed(name: str, value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise OptionError(f"{name} must be an integer or null, got {value!r}")
    return value


def _error_rate(name: str, value: object) -> Mapping[int, float]:
    if not isinstance(value, Mapping):
        raise OptionError(f"{name} must be an object of HTTP status -> probability, got {value!r}")
    rates: dict[int, float] = {}
    for key, probability in value.items():
        status = parse_status(key)
        if status is None:
            raise OptionError(f"{name}: {key!r} is not an HTTP error status (400-599)")
        rates[status] = _probability(f"{name}[{status}]", probability)
    if sum(rates.values()) > 1.0 + 1e-12:
        raise OptionError(f"{name}: probabilities add up to more than 1")
    return MappingProxyType(rates)


def parse_status(key: object) -> int | None:
    """An error status from ``503`` or ``"503"``; None when it is not one."""
    if isinstance(key, bool):
        return None
    if isinstance(key, str) and key.strip().isdigit():
        key = int(key.strip())
    if isinstance(key, int) and 400 <= key <= 599:
        return key
    return None


def parse_error_rate_arg(text: str) -> tuple[int, float]:
    """``STATUS=P`` from the command line."""
    status_text, sep, rate_text = text.partition("=")
    status = parse_status(status_text)
    if not sep or status is None:
        raise OptionError(f"--error-rate expects STATUS=P with an error status 400-599, got {text!r}")
    try:
        rate = float(rate_text)
    except ValueError:
        raise OptionError(f"--error-rate {text!r}: {rate_text!r} is not a number") from None
    return status, _probability("--error-rate", rate)


_CHECKS = {
    "token": _optional_text,
    "datarobot_key": _optional_text,
    "latency_ms": _number,
    "per_row_ms": _number,
    "jitter_ms": _number,
    "shap_multiplier": _number,
    "xemp_multiplier": _number,
    "explanation_algorithm": _algorithm,
    "error_rate": _error_rate,
    "retry_after_s": _number,
    "rate_limit_per_minute": _positive_count,
    "max_concurrent_requests": _positive_count,
    "crash_value": _cell_value,
    "hang_rate": _probability,
    "drop_rate": _probability,
    "seed": _seed,
    "tls_cert": _optional_text,
    "tls_key": _optional_text,
    "datasets": _optional_text,
    "spaces": _optional_text,
}
OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(EmulatorOptions))
RUNTIME_NAMES = frozenset(OPTION_NAMES) - START_ONLY
assert set(_CHECKS) == set(OPTION_NAMES)
