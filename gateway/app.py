"""``scoring-gateway run``: every pipeline of the config plus the admin server, in one process.

The app owns one task group: one task per pipeline and the admin server. SIGTERM/SIGINT set the
stop event; each pipeline then drains (stop fetching, finish in-flight work within
``shutdown_timeout_s``, publish, commit) and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from gateway.config import Config, ConfigError, load_config
from gateway.errors import GatewayError
from gateway.kafka.connection import KafkaStartError
from gateway.kafka.startup import wait_for_kafka
from gateway.runtime.admin import AdminServer
from gateway.runtime.comparison_metrics import ComparisonFamilies
from gateway.runtime.health import Health
from gateway.runtime.logs import configure_logging
from gateway.runtime.loop import run_loop
from gateway.runtime.memory import tune_for_batches
from gateway.runtime.metrics import Metrics
from gateway.stream.pipeline import Pipeline

if TYPE_CHECKING:
    from gateway.tracing import Tracing

log = logging.getLogger(__name__)
# On exit, queued spans get this long to reach the collector (the exporter's thread does not hold the exit).
TRACING_FLUSH_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML configuration file")
    parser.add_argument("--log-format", choices=("json", "text"), default="json",
                        help="json lines (default) or text for humans")
    parser.add_argument("--log-level", default="INFO")


def main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.report(args.config), file=sys.stderr)
        return 2
    configure_logging(args.log_format, args.log_level, secrets=config.secret_values())
    try:
        return run_until_signalled(config)
    except OSError as exc:  # only the admin server's bind runs outside serve()'s own failure handling
        admin = config.admin
        print(f"scoring-gateway run: cannot listen on {admin.host}:{admin.port} for /metrics, /healthz and "
              f"/readyz ({exc.strerror or exc}): set admin.port (0 lets the OS choose) or stop the process "
              "holding it", file=sys.stderr)
        return 1


def start_tracing(config: Config) -> Tracing | None:
    """The tracer provider of ``config.tracing``; None when tracing is off (the section is absent)."""
    if config.tracing is None:
        return None
    from gateway.tracing import Tracing

    tracing = Tracing(config.tracing)
    log.info("tracing_started", extra={"exporter": config.tracing.exporter, "endpoint": config.tracing.endpoint,
                                       "sample_ratio": config.tracing.sample_ratio})
    return tracing


async def stop_tracing(tracing: Tracing) -> None:
    """Export the spans still queued, for at most :data:`TRACING_FLUSH_S`."""
    try:
        await asyncio.wait_for(asyncio.to_thread(tracing.shutdown), TRACING_FLUSH_S)
    except TimeoutError:
        log.warning("tracing_flush_timeout", extra={"timeout_s": TRACING_FLUSH_S})


def run_until_signalled(config: Config) -> int:
    tune_for_batches()
    return run_loop(serve(config))


async def serve(config: Config, stop: asyncio.Event | None = None,
                registry: CollectorRegistry | None = None,
                ready: asyncio.Future[AdminServer] | None = None, handle_signals: bool = True,
                metrics: Metrics | None = None) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT arrives); returns the process exit status.

    ``metrics`` replaces the Prometheus instruments (anything with ``Metrics``' interface); the
    benchmarks use it to measure what the instruments cost.
    """
    stop = stop or asyncio.Event()
    if handle_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    registry = registry or CollectorRegistry()
    metrics = metrics if metrics is not None else Metrics(registry)
    health = Health([p.name for p in config.pipelines], metrics=metrics)
    comparisons = ComparisonFamilies(registry) if any(p.challenger for p in config.pipelines) else None
    admin = AdminServer(config.admin.host, config.admin.port, registry, health)
    await admin.start()
    log.info("gateway_started", extra={"pipelines": [p.name for p in config.pipelines],
                                       "admin_port": admin.port})
    if ready is not None and not ready.done():
        ready.set_result(admin)
    status = 0
    tracing = start_tracing(config)
    try:
        if not await _broker_ready(config, health, stop):
            return status  # stopped while waiting
        async with asyncio.TaskGroup() as group:
            for pipeline_config in config.pipelines:
                pipeline_metrics = metrics.pipeline(pipeline_config.name)
                pipeline = Pipeline(pipeline_config, config.kafka, metrics=pipeline_metrics, health=health,
                                    shutdown_timeout_s=config.shutdown_timeout_s, comparisons=comparisons,
                                    tracing=None if tracing is None else tracing.pipeline(pipeline_config,
                                                                                          pipeline_metrics))
                group.create_task(pipeline.run(stop))
    except* Exception as failure:
        # A pipeline that cannot go on stops the process: nothing uncommitted is lost, and the
        # orchestrator restarts it. Each cause is logged once, secrets masked: an expected
        # operational error as its one line, anything else with its traceback.
        for exc in failure.exceptions:
            expected = isinstance(exc, (GatewayError, KafkaStartError))
            log.error("pipeline_failed", exc_info=None if expected else exc,
                      extra={"error": str(exc) if expected else repr(exc)})
        health.set_failed(str(failure.exceptions[0]))
        status = 1
    finally:
        await admin.stop()
        if tracing is not None:
            await stop_tracing(tracing)
        log.info("gateway_stopped", extra={"status": status})
    return status


async def _broker_ready(config: Config, health: Health, stop: asyncio.Event) -> bool:
    """Wait for the broker before any client starts (the admin server answers meanwhile: alive,
    not ready, the reason on ``/readyz``). ``False`` when stopped while waiting; a broker that
    refuses, or stays away past ``kafka.startup_timeout_s``, raises a ``KafkaError``, which
    ``except*`` handles as it does a pipeline's failure: one line, exit status 1."""
    topics = [topic for p in config.pipelines
              for topic in (p.input_topic, p.outputs.predictions, p.outputs.explanations, p.outputs.dead_letter,
                            p.outputs.comparisons)
              if topic]

    def waiting(cause: str | None) -> None:
        for pipeline in config.pipelines:
            health.set_broker_ok(pipeline.name, cause is None, f"waiting for kafka: {cause}")

    return await wait_for_kafka(config.kafka, list(dict.fromkeys(topics)), stop, on_wait=waiting)
