"""``kafka:``: the broker connection every pipeline of a process shares, and its cross-key rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from ..json_types import JsonObject
from .errors import Problem
from .secrets import SECRET
from .section import NULL_OR_REFERENCE, REFERENCE, Keys, Rule, Section
from .types import BootstrapServers, Flag, NonNegativeInt, NonNegativeNumber, PositiveInt, Text

_SASL_KEYS = ("sasl_mechanism", "sasl_username", "sasl_password")
_SSL_KEYS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


def _literal(value: JsonObject) -> JsonObject:
    """``value``'s schema, but not for a ``${...}`` reference (whose value is known only at load time)."""
    return {"allOf": [value, {"not": REFERENCE}]}


def _heartbeat_within_session(keys: Keys) -> Iterator[Problem]:
    if keys.ok("heartbeat_interval_ms", "session_timeout_ms"):
        heartbeat, session = keys["heartbeat_interval_ms"], keys.of("session_timeout_ms", int)
        if isinstance(heartbeat, int) and heartbeat >= session:
            yield ("heartbeat_interval_ms",), f"must be < session_timeout_ms ({session})"


def _sasl_with_sasl_protocols(keys: Keys) -> Iterator[Problem]:
    if not keys.ok("security_protocol"):
        return
    protocol = keys.of("security_protocol", str)
    for key in filter(keys.ok, _SASL_KEYS):
        if protocol.startswith("SASL_") and keys[key] is None:
            yield (key,), f"required with security_protocol {protocol}"
        elif not protocol.startswith("SASL_") and keys[key] is not None:
            yield (key,), f"only used with security_protocol SASL_PLAINTEXT or SASL_SSL (it is {protocol})"


def _tls_with_tls_protocols(keys: Keys) -> Iterator[Problem]:
    if keys.ok("security_protocol") and keys["security_protocol"] not in ("SSL", "SASL_SSL"):
        for key in _SSL_KEYS:
            if keys.ok(key) and keys[key] is not None:
                yield (key,), f"only used with security_protocol SSL or SASL_SSL (it is {keys['security_protocol']})"


def _client_key_needs_certificate(keys: Keys) -> Iterator[Problem]:
    if keys.ok("ssl_keyfile", "ssl_certfile") and keys["ssl_keyfile"] is not None and keys["ssl_certfile"] is None:
        yield ("ssl_keyfile",), "needs ssl_certfile (the client certificate)"


def _when_protocol(protocols: list[str], then: JsonObject) -> JsonObject:
    condition: JsonObject = {"properties": {"security_protocol": {"enum": [*protocols]}}}
    if "PLAINTEXT" not in protocols:  # the default: a left-out key matches only a list holding it
        condition["required"] = ["security_protocol"]
    return {"if": condition, "then": then}


class KafkaConfig(Section):
    bootstrap_servers: BootstrapServers = Field(description="`host:port[,host:port…]` (a YAML list also works)")
    group_id: Text = Field("scoring-gateway", description="consumer group shared by every replica (and every "
                                                          "pipeline of a process)")
    client_id: Text = Field("scoring-gateway", description="client id sent to the broker")
    session_timeout_ms: PositiveInt = Field(
        10000, description="group membership timeout (a join takes about half of it on some brokers)")
    heartbeat_interval_ms: PositiveInt | None = Field(
        None, description="null = `session_timeout_ms / 3`, at most 100 (how soon a member notices a rebalance)")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a new group starts: `earliest` (no backlog skipped) or `latest`")
    startup_timeout_s: NonNegativeNumber = Field(
        300, description="how long start-up waits for an unreachable broker or coordinator (0: no wait)")
    commit_interval_ms: PositiveInt = Field(1000, description="how often acknowledged offsets are committed")
    max_poll_records: PositiveInt = Field(2000, description="most records one fetch returns")
    producer_linger_ms: NonNegativeInt = Field(
        0, description="producer batching delay (outputs are already batched per partition; a linger would only "
                       "add latency)")
    enable_idempotence: Flag = Field(
        True, description="idempotent producer (with `acks=all`, always): a produce the client retries is written "
                          "once. Set `false` only for a broker without idempotent producers (`InitProducerId`), "
                          "such as the embedded tansu broker; the demo's generated config does")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (required with username and password for "
                          "`SASL_*`)")
    sasl_username: Text | None = Field(None, description="SASL user")
    sasl_password: Annotated[Text | None, SECRET] = Field(None, description="SASL password (secret)")
    ssl_cafile: Text | None = Field(None, description="CA bundle for the broker's TLS; null = the system store")
    ssl_certfile: Text | None = Field(None, description="client certificate for mutual TLS")
    ssl_keyfile: Text | None = Field(None, description="client key for mutual TLS (needs `ssl_certfile`)")

    rules = (
        Rule(_heartbeat_within_session),  # JSON Schema cannot compare two values
        Rule(_sasl_with_sasl_protocols, schema={"allOf": [
            _when_protocol(["SASL_PLAINTEXT", "SASL_SSL"], {
                "required": list(_SASL_KEYS), "properties": {key: {"not": {"type": "null"}} for key in _SASL_KEYS}}),
            _when_protocol(["PLAINTEXT", "SSL"], {"properties": dict.fromkeys(_SASL_KEYS, NULL_OR_REFERENCE)}),
        ]}),
        Rule(_tls_with_tls_protocols, schema=_when_protocol(
            ["PLAINTEXT", "SASL_PLAINTEXT"], {"properties": dict.fromkeys(_SSL_KEYS, NULL_OR_REFERENCE)})),
        Rule(_client_key_needs_certificate, schema={
            "if": {"required": ["ssl_keyfile"], "properties": {"ssl_keyfile": _literal({"type": "string"})}},
            "then": {"required": ["ssl_certfile"], "properties": {"ssl_certfile": {"not": {"type": "null"}}}},
        }),
    )
