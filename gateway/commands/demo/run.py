"""One demo run, step by step: emulator, topics, gateway, produce, watch, read back, summarise."""

from __future__ import annotations

import asyncio
import signal
import time
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry
from rich.console import Console

from gateway.commands.demo.embedded import EmbeddedGateway, _load_config, demo_config, write_config
from gateway.commands.demo.emulator import deployment_url, running_emulator
from gateway.commands.demo.options import (
    CHALLENGER_DEPLOYMENT,
    CONFIG_FILE,
    DEAD_LETTER_TOPIC,
    EMULATOR_LOG_FILE,
    GATEWAY_READY_S,
    HOST,
    INPUT_TOPIC,
    LOG_FILE,
    PARTITIONS,
    PREDICTIONS_TOPIC,
    READ_BACK_BASE_S,
    READ_BACK_RATE,
    SCORING_BASE_S,
    SCORING_MIN_RATE,
    TOPICS,
    TOPICS_S,
    DemoOptions,
    Interrupted,
)
from gateway.commands.demo.outputs import read_outputs
from gateway.commands.demo.produce import produce
from gateway.commands.demo.progress import progress_view, read_counts, watch
from gateway.commands.demo.sample_data import SampleRecord, churn_records
from gateway.commands.demo.summary import Summary, print_summary, summarize
from gateway.commands.demo.waits import _bounded, owned_task
from gateway.kafka.embedded import EmbeddedBroker, create_topics, free_port


class Demo:
    """One demo run: owns the emulator and the gateway; the broker is started and stopped by ``main``."""

    def __init__(self, options: DemoOptions, broker: EmbeddedBroker, workdir: Path, console: Console) -> None:
        self.options = options
        self.broker = broker
        self.workdir = workdir
        self.console = console
        self._interrupted = False
        self._waiting_for_signal = False
        self._signalled = asyncio.Event()
        self._task: asyncio.Task[object] | None = None

    async def run(self) -> Summary:
        """The whole run; raises DemoError with the cause, or Interrupted after a clean stop."""
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            return await self._run()
        except asyncio.CancelledError:
            if self._interrupted:
                raise Interrupted from None
            raise
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        if self._waiting_for_signal:
            self._signalled.set()
        elif not self._interrupted and self._task is not None:
            self._interrupted = True  # a second signal must not cut the cleanup short
            self._task.cancel()

    async def _run(self) -> Summary:
        opts = self.options
        # Made before the clock starts, so making them does not compete with the gateway for the loop.
        records = list(churn_records(opts.records, seed=opts.seed))
        malformed: dict[str, int] = {}
        for record in records:
            if record.malformed:
                malformed[record.malformed] = malformed.get(record.malformed, 0) + 1
        async with AsyncExitStack() as stack:
            emulator = await stack.enter_async_context(running_emulator(opts, self.workdir / EMULATOR_LOG_FILE))
            await _bounded(create_topics(self.broker.bootstrap, {t: PARTITIONS for t in TOPICS}),
                           TOPICS_S, "cannot create the topics")
            backend_url = await deployment_url(emulator.url, opts.backend)
            challenger_url = await deployment_url(emulator.url, opts.backend, CHALLENGER_DEPLOYMENT) \
                if opts.challenger else None
            config_path = self.workdir / CONFIG_FILE
            write_config(config_path, demo_config(opts, self.broker.bootstrap, backend_url, free_port(HOST),
                                                  challenger_url))
            registry = CollectorRegistry()
            gateway = EmbeddedGateway(_load_config(config_path), registry)
            stack.push_async_callback(gateway.stop)
            await gateway.start()
            self._introduce(emulator.url, emulator.pid, gateway.admin_port, config_path)
            await gateway.wait_ready(GATEWAY_READY_S)
            await self._score(gateway, registry, records)
            outputs = await read_outputs(self.broker.bootstrap, opts.records,
                                         READ_BACK_BASE_S + opts.records / READ_BACK_RATE)
            summary = summarize(opts, outputs, malformed, read_counts(registry), config_path, self.workdir)
            print_summary(self.console, summary, outputs)
            if opts.challenger:
                await self._comparisons(registry, emulator.url, summary.metrics["predicted"])
            if opts.backend == "datarobot":
                await self._datarobot_options(emulator.url)
            if opts.keep_running:
                self._print_addresses(emulator.url, gateway.admin_port, config_path)
                self._waiting_for_signal = True
                await self._signalled.wait()
                self.console.print("stopping...")
        summary.clean_shutdown = gateway.clean
        return summary

    async def _comparisons(self, registry: CollectorRegistry, emulator_url: str, predicted: int) -> None:
        """The champion/challenger agreement the gateway counted, beside the emulator's own count."""
        from gateway.commands.demo.comparisons import agreement_line

        line = await _bounded(agreement_line(registry, emulator_url, predicted), 15,
                              "cannot read the emulator's challenger count")
        self.console.print(line, markup=False)

    async def _datarobot_options(self, emulator_url: str) -> None:
        """Prediction warnings and multiclass explanations, shown with two requests of their own."""
        from gateway.commands.demo.datarobot_options import lines, showcase

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            shown = await _bounded(showcase(emulator_url, session), 15, "cannot show the DataRobot query options")
        for line in lines(shown):
            self.console.print(line)

    def _introduce(self, emulator_url: str, emulator_pid: int | None, admin_port: int, config_path: Path) -> None:
        o = self.options
        kind = "no explanations" if o.explanations == "off" else f"{o.explanations.upper()} explanations"
        self.console.print(f"[bold]scoring-gateway demo[/]: {o.records:,} churn records → {o.backend} "
                           f"({kind}), emulator latency {o.latency_ms:g} ms per request")
        self.console.print(f"  broker    {self.broker.bootstrap} (tansu, pid {self.broker.pid})")
        self.console.print(f"  emulator  {emulator_url} (pid {emulator_pid})")
        self.console.print(f"  gateway   admin http://{HOST}:{admin_port}  (in-process, uvloop)")
        self.console.print(f"  config    {config_path}")
        self.console.print(f"  logs      {self.workdir / LOG_FILE}")

    async def _score(self, gateway: EmbeddedGateway, registry: CollectorRegistry,
                     records: list[SampleRecord]) -> None:
        """Produce every record while watching the gateway's counters until all are published."""
        n, rate = len(records), self.options.rate
        deadline = time.monotonic() + SCORING_BASE_S + n / SCORING_MIN_RATE + (n / rate if rate else 0.0)
        produced = [0]
        with progress_view(self.console, n) as view:
            async with owned_task(produce(self.broker.bootstrap, records, produced, rate)) as producing:
                await watch(gateway, registry, n, deadline, view, producing, produced)

    def _print_addresses(self, emulator_url: str, admin_port: int, config_path: Path) -> None:
        admin = f"http://{HOST}:{admin_port}"
        lines = [
            "[bold]Everything keeps running[/] until Ctrl-C or SIGTERM:",
            f"  gateway admin   {admin}/metrics   {admin}/healthz   {admin}/readyz",
            f"  emulator        {emulator_url}",
            "                  POST /api/v1/ml/deployments/{id}/realtime-predictions/actions/run  (Qlik)",
            "                  POST /predApi/v1.0/deployments/{id}/predictions  (DataRobot)",
            "                  GET /_emulator/deployments   GET|POST /_emulator/config   GET /_emulator/stats",
            f"  kafka           bootstrap servers {self.broker.bootstrap}",
            f"                  topics {INPUT_TOPIC} → {PREDICTIONS_TOPIC}, {DEAD_LETTER_TOPIC} "
            f"({PARTITIONS} partitions each)",
            f"  config          {config_path}",
        ]
        for line in lines:
            self.console.print(line)
