"""``scoring-gateway check``: validate a config and print it resolved, secrets redacted; ``--probe``
also reaches the broker and every backend once, so a deployment fails before it starts, not after.

Exit status: 0 valid (and, with ``--probe``, every target reachable), 1 a probe failed, 2 the config
is invalid or cannot be read (each problem on stderr, starting with its key path).

What a probe does and how it reads the answer:
- **broker**: connects to the bootstrap servers with the configured security settings (TLS, SASL)
  and fetches metadata for the input topics without creating them. Refused or silent → unreachable;
  a SASL rejection → authentication failed; an input topic that is absent or not readable → FAILED.
- **backend**: sends one request for an empty batch (zero rows), built by the pipeline's own codec
  and trusting the pipeline's ``ca_file``. 2xx, or 400/413/422 (a complaint about the data, which
  an empty batch earns), means reachable and authorised; 429 means reachable but rate limited
  (also ok); 401/403/404/405/409 and 5xx are failures, shown with the vendor's own message;
  connection and TLS errors are failures too.
Secrets never appear in the output: the printed config is redacted and every probe line is masked
by ``gateway.runtime.redaction`` (the configured secret values and anything shaped like a credential).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiokafka import errors as kafka_errors
from aiokafka.protocol.metadata import MetadataRequest

from gateway.backends.codec import Codec
from gateway.backends.errors import DataError, from_exception, from_status
from gateway.config import Config, ConfigError, KafkaConfig, PipelineConfig, load_config
from gateway.kafka.connection import broker_addresses, client_options, connect, connection_failure
from gateway.runtime.redaction import Redactor

EXIT_OK = 0
EXIT_PROBE_FAILED = 1
EXIT_INVALID = 2
DEFAULT_PROBE_TIMEOUT_S = 10.0

CodecFactory = Callable[[PipelineConfig], Codec]
SSLContextFactory = Callable[[str | None], ssl.SSLContext | None]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    target: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        if self.ok:
            return f"{self.target}: ok" + (f" ({self.detail})" if self.detail else "")
        return f"{self.target}: FAILED: {self.detail}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, metavar="FILE", help="the YAML config file")
    parser.add_argument("--probe", action="store_true",
                        help="also reach the broker and each pipeline's backend once")
    parser.add_argument("--probe-timeout-s", type=_positive_seconds, default=DEFAULT_PROBE_TIMEOUT_S, metavar="S",
                        help=f"give up on one probe after S seconds (default {DEFAULT_PROBE_TIMEOUT_S:g})")


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.report(args.config), file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(render(config, args.config))
    if not args.probe:
        return EXIT_OK
    results = asyncio.run(probe(config, timeout_s=args.probe_timeout_s))
    for result in results:
        print(result.line())
    sys.stdout.flush()
    return EXIT_OK if all(result.ok for result in results) else EXIT_PROBE_FAILED


def render(config: Config, source: Path | str) -> str:
    """The resolved config as YAML: what the gateway will run with, secrets shown as ``***``."""
    header = f"# {source}: valid; defaults applied, variables resolved, secrets redacted\n"
    return header + yaml.safe_dump(config.redacted(), sort_keys=False, allow_unicode=True)


# --- probes ------------------------------------------------------------------------------------------

async def probe(config: Config, *, timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
                make_codec: CodecFactory | None = None,
                make_ssl_context: SSLContextFactory | None = None) -> list[ProbeResult]:
    """Probe the broker and every backend concurrently; results in config order, broker first,
    each scrubbed of the config's secret values (a vendor or broker message might quote one)."""
    if make_codec is None or make_ssl_context is None:
        # Imported here so that validating a config never depends on the vendor layer.
        from gateway.backends import factory
        make_codec = make_codec or factory.make_codec
        make_ssl_context = make_ssl_context or factory.make_ssl_context
    topics = [(pipeline.name, pipeline.input_topic) for pipeline in config.pipelines]
    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as group:
        kafka = group.create_task(probe_kafka(config.kafka, topics, timeout_s))
        backends = [group.create_task(probe_backend(pipeline, session, timeout_s, make_codec,
                                                    make_ssl_context))
                    for pipeline in config.pipelines]
    redactor = Redactor(config.secret_values())
    return [ProbeResult(r.target, r.ok, redactor.text(r.detail))
            for r in kafka.result() + [task.result() for task in backends]]


async def probe_kafka(kafka: KafkaConfig, topics: Sequence[tuple[str, str]],
                      timeout_s: float) -> list[ProbeResult]:
    """One broker line, then one line per (pipeline, input topic) when the broker answered."""
    target = f"kafka {kafka.bootstrap_servers}"
    try:
        options = client_options(kafka)  # the very settings the consumer and producer use
    except (OSError, ssl.SSLError) as exc:
        return [ProbeResult(target, False, f"cannot load the TLS files: {exc}")]
    failures: list[str] = []
    for host, port in broker_addresses(kafka.bootstrap_servers):
        try:
            conn = await asyncio.wait_for(connect(options, host, port, timeout_s), timeout_s)
        except Exception as exc:  # classified below; the probe must report, never crash
            failures.append(f"{host}:{port}: {connection_failure(exc, kafka, timeout_s)}")
            continue
        try:
            return await _describe_topics(conn, target, f"{host}:{port}", topics, timeout_s)
        except Exception as exc:
            failures.append(f"{host}:{port}: metadata request failed: {connection_failure(exc, kafka, timeout_s)}")
        finally:
            conn.close()
    return [ProbeResult(target, False, "; ".join(failures))]


async def _describe_topics(conn: Any,  # untyped library: aiokafka's connection
                           target: str, via: str, topics: Sequence[tuple[str, str]],
                           timeout_s: float) -> list[ProbeResult]:
    """The broker line and a line per input topic."""
    names = list(dict.fromkeys(topic for _, topic in topics))
    request = MetadataRequest(names, allow_auto_topic_creation=False)  # a probe must not create topics
    response = await asyncio.wait_for(conn.send(request), timeout_s)
    # Topic entries are (error_code, name, [is_internal,] partitions) depending on the version.
    found = {entry[1]: (entry[0], entry[-1]) for entry in response.topics}
    results = [ProbeResult(target, True, f"via {via}, {len(response.brokers)} broker(s)")]
    for pipeline, topic in topics:
        line = f"pipeline {pipeline} input topic {topic}"
        error_code, partitions = found.get(topic, (3, []))
        if error_code == 0:
            results.append(ProbeResult(line, True, f"{len(partitions)} partition(s)"))
        else:
            results.append(ProbeResult(line, False, _topic_failure(kafka_errors.for_code(error_code).__name__)))
    return results


def _topic_failure(error_name: str) -> str:
    if error_name == "UnknownTopicOrPartitionError":
        return "the topic does not exist"
    if error_name == "TopicAuthorizationFailedError":
        return "not authorised to read the topic"
    return error_name


async def probe_backend(pipeline: PipelineConfig, session: aiohttp.ClientSession, timeout_s: float,
                        make_codec: CodecFactory, make_ssl_context: SSLContextFactory) -> ProbeResult:
    """Send one empty batch to the pipeline's backend and classify the answer (see module docstring)."""
    backend = pipeline.backend
    target = f"pipeline {pipeline.name} backend {backend.type} {backend.url}"
    try:
        codec = make_codec(pipeline)
        request = codec.encode(pipeline.features, [])
        ssl_context = make_ssl_context(backend.ca_file)
    except Exception as exc:  # bad CA file, codec refusing its settings: a finding, not a crash
        return ProbeResult(target, False, f"cannot build the request: {type(exc).__name__}: {exc}")
    timeout = aiohttp.ClientTimeout(total=min(timeout_s, pipeline.retry.request_timeout_s))
    try:
        async with session.request(request.method, request.url, headers=request.headers, data=request.body,
                                   ssl=ssl_context if ssl_context is not None else True,
                                   timeout=timeout) as response:
            body = await response.read()
            status, headers = response.status, response.headers
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        if isinstance(exc, asyncio.TimeoutError):
            return ProbeResult(target, False, f"no answer within {timeout.total:g}s")
        try:
            reason = from_exception(backend.type, exc).message
        except Exception:  # a transport error the failure tree does not know: report it as it is
            reason = f"{type(exc).__name__}: {exc}"
        return ProbeResult(target, False, reason)
    if 200 <= status < 300:
        return ProbeResult(target, True, f"HTTP {status}")
    failure = from_status(backend.type, status, headers, body)
    if isinstance(failure, DataError):
        return ProbeResult(target, True, f"HTTP {status} for an empty batch: reachable and authorised")
    if status == 429:
        return ProbeResult(target, True, f"HTTP 429: reachable but rate limited: {failure.message}")
    return ProbeResult(target, False, f"HTTP {status}: {failure.message}")
