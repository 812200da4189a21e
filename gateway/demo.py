"""``scoring-gateway demo``: the whole product on one machine, in one command, with no outside services.

It starts the embedded tansu broker and the scoring emulator (each its own process, on free loopback
ports, stopped by PID), creates the topics, writes a gateway config into the work directory (so it
can be read, and reused with ``scoring-gateway run --config``), runs the gateway in-process with it
on uvloop, produces sample churn records, shows live progress read from the gateway's own metrics
registry (a rich progress bar, or a plain line a second when stdout is not a terminal), and ends with a summary
computed from the topics themselves: every produced record is matched by ``id`` to exactly one
prediction or dead-letter record, and latency is measured from each input record's timestamp to its
prediction record's timestamp.

Every wait has a deadline, so a run never hangs: a failure ends it with one line on stderr naming
the cause (``demo: cannot start the broker: ...``); logs of the gateway, broker and emulator stay in
the work directory. Exit status: 0 done and every record accounted
for, 1 failed, 2 unusable options, 130 interrupted. The last line on stdout is machine-readable:
``summary: {...}`` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import re
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import aiohttp
import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from gateway.broker import BrokerError, EmbeddedBroker, create_topics, free_port
from gateway.sample_data import CHURN_FEATURES, INVALID_JSON, JSON_ARRAY, TEXT_BASE_FEE, SampleRecord, churn_records

log = logging.getLogger("gateway.demo")
T = TypeVar("T")

HOST = "127.0.0.1"
PIPELINE = "churn"
DEPLOYMENT = "churn"
INPUT_TOPIC = "churn-features"
PREDICTIONS_TOPIC = "churn-predictions"
DEAD_LETTER_TOPIC = "churn-dead-letter"
TOPICS = (INPUT_TOPIC, PREDICTIONS_TOPIC, DEAD_LETTER_TOPIC)
PARTITIONS = 4
DEFAULT_RECORDS = 20_000
# A group join takes about half the session timeout on tansu: keep it short so the demo starts fast.
SESSION_TIMEOUT_MS = 6000
SHUTDOWN_TIMEOUT_S = 10.0
DATAROBOT_MAX_EXPLANATIONS = 3

# Deadlines (seconds). Scoring gets a fixed allowance plus time proportional to the record count,
# generous enough for a loaded CI machine yet far below "hung".
BROKER_START_S = 20.0
EMULATOR_START_S = 15.0
TOPICS_S = 20.0
GATEWAY_START_S = 20.0
GATEWAY_READY_S = 30.0 + 2 * SESSION_TIMEOUT_MS / 1000
SCORING_BASE_S = 30.0
SCORING_MIN_RATE = 250.0  # records/s below which the run is declared stuck
READ_BACK_BASE_S = 15.0
READ_BACK_RATE = 5000.0

TICK_S = 0.25  # live progress refresh
PLAIN_EVERY_S = 1.0  # progress line interval when stdout is not a terminal
RATE_WINDOW_S = 2.0
PRODUCE_CHUNK = 5000
PACED_TICK_S = 0.05
PRODUCER_BATCH_BYTES = 262_144

LOG_FILE = "gateway.log"
BROKER_LOG_FILE = "broker.log"
EMULATOR_LOG_FILE = "emulator.log"
CONFIG_FILE = "gateway.yaml"


class DemoError(Exception):
    """A cause that ends the demo; its text is the one line printed after ``demo: ``."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived before the summary; everything was stopped on the way out."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    backend: str
    records: int
    explanations: str
    keep_running: bool
    workdir: Path | None
    latency_ms: float
    seed: int
    rate: float = 0.0  # records/s to produce at; 0 = as fast as the broker takes them

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DemoOptions:
        """Raises ValueError naming the option when the combination cannot work."""
        if args.records < 1:
            raise ValueError(f"--records must be at least 1, got {args.records}")
        if args.latency_ms < 0:
            raise ValueError(f"--latency-ms must be >= 0, got {args.latency_ms}")
        if args.rate < 0:
            raise ValueError(f"--rate must be >= 0, got {args.rate}")
        if args.backend == "qlik" and args.explanations == "xemp":
            raise ValueError("--explanations xemp needs --backend datarobot (Qlik Predict explains with SHAP only)")
        return cls(args.backend, args.records, args.explanations, args.keep_running,
                   Path(args.workdir) if args.workdir else None, args.latency_ms, args.seed, args.rate)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("qlik", "datarobot"), default="qlik",
                        help="which vendor API the gateway calls (default qlik)")
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS, metavar="N",
                        help=f"sample churn records to produce (default {DEFAULT_RECORDS})")
    parser.add_argument("--explanations", choices=("shap", "xemp", "off"), default="shap",
                        help="explanations asked for (xemp: datarobot only; default shap)")
    parser.add_argument("--keep-running", action="store_true",
                        help="leave broker, emulator and gateway up after the summary until Ctrl-C/SIGTERM")
    parser.add_argument("--workdir", metavar="DIR",
                        help="where the config and logs are written (default: a new temporary directory)")
    parser.add_argument("--latency-ms", type=float, default=5.0,
                        help="the emulator's base latency per request (default 5; explanations multiply it)")
    parser.add_argument("--rate", type=float, default=0.0, metavar="R",
                        help="produce at R records/s to see steady-state latency (default 0: all at once, "
                             "to see throughput)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the sample data (default 7)")


def main(args: argparse.Namespace) -> int:
    try:
        options = DemoOptions.from_args(args)
    except ValueError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    try:
        workdir = _workdir(options.workdir)
    except OSError as exc:
        print(f"demo: cannot use the work directory: {exc}", file=sys.stderr)
        return 1
    console = _console()
    with open(workdir / LOG_FILE, "a", encoding="utf-8") as log_stream:
        _log_to(log_stream)
        broker = EmbeddedBroker(HOST, log_path=workdir / BROKER_LOG_FILE)
        try:
            _start_broker(broker)
            summary = _run_loop(Demo(options, broker, workdir, console).run())
        except DemoError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        except Interrupted:
            console.print("interrupted: everything stopped")
            return 130
        except Exception as exc:
            log.exception("demo_failed")
            print(f"demo: unexpected failure: {describe(exc)} (traceback in {workdir / LOG_FILE})", file=sys.stderr)
            return 1
        finally:
            broker.stop()
            _stop_logging()
    return report_end(console, summary)


def report_end(console: Console, summary: Summary) -> int:
    """The last lines: how the run ended, then ``summary: {json}`` for machines."""
    console.print("gateway, emulator and broker stopped" + ("" if summary.clean_shutdown else
                  " (the gateway's drain overran its timeout and was cancelled)"))
    print("summary: " + orjson.dumps(summary.machine()).decode(), flush=True)
    wrong = summary.missing + summary.unexpected + summary.overlapping
    if wrong:
        print(f"demo: {wrong:,} records not accounted for exactly once (see the summary)", file=sys.stderr)
        return 1
    return 0


def _console() -> Console:
    """Rich for a terminal; for logs and CI a wider fixed width, so table rows and JSON do not wrap."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=120)


def _workdir(given: Path | None) -> Path:
    if given is None:
        return Path(tempfile.mkdtemp(prefix="scoring-gateway-demo-"))
    given.mkdir(parents=True, exist_ok=True)
    return given.resolve()


def _log_to(stream: IO[str]) -> None:
    """The gateway's JSON logs go to a file in the work directory, not over the live progress."""
    from gateway.logs import configure_logging

    configure_logging("json", "INFO", secrets=[], stream=stream)


def _stop_logging() -> None:
    from gateway.logs import GatewayLogHandler

    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, GatewayLogHandler)]:
        root.removeHandler(handler)


def _start_broker(broker: EmbeddedBroker) -> None:
    try:
        broker.start(timeout_s=BROKER_START_S)
    except BrokerError as exc:
        raise DemoError(f"cannot start the broker: {exc}") from None
    except Exception as exc:
        tail = broker.log_tail(2)
        raise DemoError(f"cannot start the broker: {describe(exc)}" + (f" (its log: {tail})" if tail else "")) from None


def _run_loop(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return asyncio.run(coro)
    return uvloop.run(coro)


# ---- the run ------------------------------------------------------------------------------------

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
        self._task: asyncio.Task[Any] | None = None

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
            config_path = self.workdir / CONFIG_FILE
            write_config(config_path, demo_config(opts, self.broker.bootstrap, backend_url, free_port(HOST)))
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
            if opts.keep_running:
                self._print_addresses(emulator.url, gateway.admin_port, config_path)
                self._waiting_for_signal = True
                await self._signalled.wait()
                self.console.print("stopping...")
        summary.clean_shutdown = gateway.clean
        return summary

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


async def _bounded(awaitable: Any, timeout_s: float, what: str) -> Any:
    """``awaitable`` within its deadline; a failure or timeout becomes a DemoError naming ``what``."""
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        raise DemoError(f"{what}: no answer within {timeout_s:.0f}s") from None
    except DemoError:
        raise
    except Exception as exc:
        raise DemoError(f"{what}: {describe(exc)}") from None


def describe(exc: BaseException) -> str:
    """One line for an exception, looking inside exception groups for the first real cause."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@asynccontextmanager
async def owned_task(coro: Any) -> AsyncIterator[asyncio.Task[Any]]:
    """A task that never outlives the block: cancelled and awaited on the way out."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# ---- the emulator ---------------------------------------------------------------------------

class EmulatorProcess:
    """``python -m gateway.emulator`` in its own process and session: the backend gets its own core,
    as a remote API would, and a Ctrl-C at the terminal reaches only the demo, which stops it by PID."""

    def __init__(self, options: DemoOptions, log_path: Path) -> None:
        self.options = options
        self.log_path = log_path
        self.url = ""
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        o = self.options
        return [sys.executable, "-m", "gateway.emulator", "--host", HOST, "--port", "0",
                "--latency-ms", f"{o.latency_ms:g}", "--seed", str(o.seed),
                "--explanation-algorithm", "xemp" if o.explanations == "xemp" else "shap"]

    async def start(self) -> None:
        with open(self.log_path, "ab") as log_file:  # noqa: ASYNC230 - opening a local log file does not block
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(), stdout=asyncio.subprocess.PIPE, stderr=log_file, stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True)
        self.pid = self._proc.pid
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), EMULATOR_START_S)
        except TimeoutError:
            raise DemoError(f"cannot start the emulator: not listening within {EMULATOR_START_S:.0f}s") from None
        found = re.search(rb"(https?://\S+)", line)
        if found is None:
            status = await _exit_status(self._proc, 2.0)
            raise DemoError(f"cannot start the emulator: it exited (status {status}): {_tail(self.log_path)}")
        self.url = found.group(1).decode()

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        if await _exit_status(proc, 5.0) is None:
            proc.kill()
            await proc.wait()


async def _exit_status(proc: asyncio.subprocess.Process, timeout_s: float) -> int | None:
    try:
        return await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        return None


def _tail(path: Path, lines: int = 2) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "no log"
    return " | ".join(text.splitlines()[-lines:]) or "no output"


@asynccontextmanager
async def running_emulator(options: DemoOptions, log_path: Path) -> AsyncIterator[EmulatorProcess]:
    """The emulator, stopped on the way out whatever happened meanwhile."""
    emulator = EmulatorProcess(options, log_path)
    try:
        await emulator.start()
        yield emulator
    finally:
        await emulator.stop()


async def deployment_url(emulator_url: str, backend: str) -> str:
    """The churn deployment's full endpoint URL, by the vendor-format id the emulator lists."""
    async def fetch() -> Any:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(f"{emulator_url}/_emulator/deployments") as response:
            response.raise_for_status()
            return await response.json()

    listing = await _bounded(fetch(), 10, "cannot list the emulator's deployments")
    found = next((d for d in listing.get("deployments", []) if d.get("name") == DEPLOYMENT), None)
    if found is None:
        raise DemoError(f"the emulator lists no {DEPLOYMENT!r} deployment")
    if backend == "qlik":
        return f"{emulator_url}/api/v1/ml/deployments/{found['qlik_id']}/realtime-predictions/actions/run"
    return f"{emulator_url}/predApi/v1.0/deployments/{found['datarobot_id']}/predictions"


# ---- the gateway config and the gateway -----------------------------------------------------

def demo_config(options: DemoOptions, bootstrap: str, backend_url: str, admin_port: int) -> dict[str, Any]:
    """The config the demo runs, in the shape of PRODUCT.md §3; defaults are left out on purpose,
    so the file shows what a deployment has to decide."""
    backend: dict[str, Any] = {
        "type": options.backend,
        "url": backend_url,
        # The emulator accepts any token; the reference shows how a real secret is passed in.
        "token": "${SCORING_GATEWAY_DEMO_TOKEN:-demo-token}",
    }
    if options.backend == "qlik":
        backend["include_shap"] = options.explanations == "shap"
        backend["include_not_predicted_reason"] = True
    else:
        explain = options.explanations != "off"
        backend["max_explanations"] = DATAROBOT_MAX_EXPLANATIONS if explain else 0
        backend["explanation_algorithm"] = options.explanations if explain else None
    return {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": "scoring-gateway-demo",
                  "client_id": "scoring-gateway-demo", "session_timeout_ms": SESSION_TIMEOUT_MS,
                  # tansu answers InitProducerId with an error: no idempotent producer on it.
                  "enable_idempotence": False},
        "admin": {"host": HOST, "port": admin_port},
        "shutdown_timeout_s": SHUTDOWN_TIMEOUT_S,
        "pipelines": [{
            "name": PIPELINE,
            "input_topic": INPUT_TOPIC,
            "features": list(CHURN_FEATURES),
            "backend": backend,
            "outputs": {"predictions": PREDICTIONS_TOPIC, "dead_letter": DEAD_LETTER_TOPIC},
        }],
    }


def write_config(path: Path, doc: dict[str, Any]) -> None:
    header = ("# Written by `scoring-gateway demo`. Run it again against the same broker and backend with\n"
              "#   scoring-gateway run --config " + str(path) + "\n")
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def _load_config(path: Path) -> Any:
    """The written file itself is what runs, so the file a user reads is the file that worked."""
    from gateway.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise DemoError(f"the generated config is invalid: {describe(exc)}") from None


class EmbeddedGateway:
    """``gateway.app.serve`` as a task of this event loop: started, stopped via its stop event, awaited."""

    def __init__(self, config: Any, registry: CollectorRegistry) -> None:
        self.config = config
        self.registry = registry
        self.admin_port = 0
        self.clean = True
        self._stop = asyncio.Event()
        self._task: asyncio.Task[int] | None = None

    async def start(self) -> None:
        from gateway.app import serve

        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(serve(self.config, self._stop, registry=self.registry, ready=ready,
                                               handle_signals=False))
        done, _ = await asyncio.wait({ready, self._task}, timeout=GATEWAY_START_S,
                                     return_when=asyncio.FIRST_COMPLETED)
        if ready in done:
            self.admin_port = ready.result().port
            return
        failure = self.failure()
        await self.stop()
        raise DemoError(f"cannot start the gateway: {failure or f'not started within {GATEWAY_START_S:.0f}s'}")

    def failure(self) -> str | None:
        """Why the gateway ended early, or None while it runs."""
        task = self._task
        if task is None or not task.done():
            return None
        if task.cancelled():
            return "it was cancelled"
        exc = task.exception()
        return describe(exc) if exc is not None else "it stopped by itself"

    async def readiness(self, session: aiohttp.ClientSession) -> tuple[bool, list[str]]:
        """``/readyz`` as the orchestrator sees it: ready, and the reasons when not."""
        url = f"http://{HOST}:{self.admin_port}/readyz"
        try:
            async with session.get(url) as response:
                body = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            return False, [f"/readyz did not answer: {describe(exc)}"]
        reasons = [r for p in body.get("pipelines", {}).values() for r in p.get("reasons", [])]
        return response.status == 200, reasons

    async def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                failure = self.failure()
                if failure:
                    raise DemoError(f"the gateway failed: {failure}")
                ready, reasons = await self.readiness(session)
                if ready:
                    return
                if time.monotonic() > deadline:
                    raise DemoError(f"the gateway was not ready within {timeout_s:.0f}s: "
                                    + ("; ".join(reasons) or "no reason given"))
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """Drain via the stop event; cancel only if the drain overruns its own timeout."""
        task = self._task
        if task is None:
            return
        self._stop.set()
        limit = float(self.config.shutdown_timeout_s) + 10.0
        done, _ = await asyncio.wait({task}, timeout=limit)
        if not done:
            self.clean = False
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif not task.cancelled() and task.exception() is not None:
            self.clean = False


# ---- producing ----------------------------------------------------------------------------------

async def produce(bootstrap: str, records: list[SampleRecord], produced: list[int], rate: float = 0.0) -> None:
    """Produce with the batch API, keyed by customer id onto Kafka's default partition (murmur2).

    Chunk by chunk, so the gateway starts scoring while later records are still on their way; with a
    ``rate``, one small chunk per tick on a fixed schedule (a late tick is caught up, not skipped).
    ``produced[0]`` counts what the broker has acknowledged.
    """
    chunk_size = max(1, int(rate * PACED_TICK_S)) if rate else PRODUCE_CHUNK
    started = time.monotonic()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_batch_size=PRODUCER_BATCH_BYTES,
                                max_request_size=4 * 1_048_576, client_id="scoring-gateway-demo-producer")
    try:
        await _bounded(producer.start(), TOPICS_S, "cannot connect the producer to the broker")
        for start in range(0, len(records), chunk_size):
            if rate:
                await asyncio.sleep(max(0.0, started + start / rate - time.monotonic()))
            chunk = records[start:start + chunk_size]
            by_partition: dict[int, list[SampleRecord]] = {}
            for record in chunk:
                partition = (murmur2(record.key) & 0x7FFFFFFF) % PARTITIONS
                by_partition.setdefault(partition, []).append(record)
            acks = []
            for partition, records_of in by_partition.items():
                batch = producer.create_batch()
                for record in records_of:
                    if batch.append(key=record.key, value=record.value, timestamp=None, headers=[]) is None:
                        acks.append(await producer.send_batch(batch, INPUT_TOPIC, partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=record.key, value=record.value, timestamp=None, headers=[])
                acks.append(await producer.send_batch(batch, INPUT_TOPIC, partition=partition))
            await asyncio.gather(*acks)
            produced[0] += len(chunk)
    finally:
        await producer.stop()


# ---- progress -----------------------------------------------------------------------------------

@dataclass(slots=True)
class Counts:
    """The gateway's own counters for the demo pipeline."""

    consumed: int = 0
    predicted: int = 0
    dead_lettered: int = 0
    stages: dict[str, int] = field(default_factory=dict)

    @property
    def published(self) -> int:
        return self.predicted + self.dead_lettered


def read_counts(registry: CollectorRegistry) -> Counts:
    """One pass over the registry (not one ``get_sample_value`` scan per figure)."""
    counts = Counts()
    for metric in registry.collect():
        if metric.name not in _COUNTED:
            continue
        for sample in metric.samples:
            labels = sample.labels
            if not sample.name.endswith("_total") or labels.get("pipeline") != PIPELINE:
                continue
            value = int(sample.value)
            if metric.name == "scoring_gateway_records_consumed":
                counts.consumed += value
            elif metric.name == "scoring_gateway_records_published":
                if labels.get("outcome") == "predicted":
                    counts.predicted += value
                elif labels.get("outcome") == "dead_letter":
                    counts.dead_lettered += value
            elif value:
                counts.stages[labels.get("stage", "?")] = value
    return counts


_COUNTED = frozenset({"scoring_gateway_records_consumed", "scoring_gateway_records_published",
                      "scoring_gateway_dead_letter_records"})


class ProgressView(Protocol):
    def show(self, produced: int, counts: Counts, rate: float) -> None: ...


class LiveProgress:
    """A rich progress bar, redrawn by the caller a few times per second (no drawing thread)."""

    def __init__(self, console: Console, total: int) -> None:
        self._progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[dead]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, auto_refresh=False)
        self._task = self._progress.add_task("scoring", total=total, rate="", dead="")

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.refresh()
        self._progress.stop()

    def show(self, produced: int, counts: Counts, rate: float) -> None:
        self._progress.update(self._task, completed=counts.published,
                              description=f"scored (produced {produced:,})",
                              rate=f"{rate:,.0f} records/s", dead=f"{counts.dead_lettered:,} dead-lettered")
        self._progress.refresh()


class PlainProgress:
    """One line per second for logs and CI, where a redrawn bar would be noise."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self._total = total
        self._stream = stream
        self._last = 0.0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def show(self, produced: int, counts: Counts, rate: float) -> None:
        now = time.monotonic()
        done = counts.published >= self._total
        if now - self._last < PLAIN_EVERY_S and not done:
            return
        self._last = now
        left = self._total - counts.published
        eta = f"{left / rate:.0f}s" if rate > 0 and left > 0 else ("0s" if left <= 0 else "?")
        share = 100.0 * counts.published / self._total
        print(f"progress: {counts.published:,}/{self._total:,} published ({share:.0f}%), "
              f"{counts.predicted:,} predicted, {counts.dead_lettered:,} dead-lettered, "
              f"{produced:,} produced, {rate:,.0f} records/s, eta {eta}", file=self._stream, flush=True)


def progress_view(console: Console, total: int) -> LiveProgress | PlainProgress:
    return LiveProgress(console, total) if console.is_terminal else PlainProgress(total, sys.stdout)


class RateMeter:
    """Records per second over the last couple of seconds, steadier than tick-to-tick deltas."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self._window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, total: int) -> float:
        samples = self._samples
        samples.append((now, total))
        while len(samples) > 2 and now - samples[0][0] > self._window_s:
            samples.popleft()
        first_t, first_n = samples[0]
        return (total - first_n) / (now - first_t) if now > first_t else 0.0


async def watch(gateway: EmbeddedGateway, registry: CollectorRegistry, total: int, deadline: float,
                view: ProgressView, producing: asyncio.Task[Any], produced: list[int]) -> None:
    """Until the counters say every record is published; fails fast when the gateway or the producer
    fails, the gateway stops itself (an auth or routing failure), or the deadline passes."""
    meter = RateMeter()
    next_check = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            now = time.monotonic()
            counts = read_counts(registry)
            view.show(produced[0], counts, meter.add(now, counts.published))
            failed = producing.exception() if producing.done() and not producing.cancelled() else None
            if failed is not None:
                raise DemoError(f"cannot produce the sample records: {describe(failed)}")
            if counts.published >= total and producing.done():
                return
            failure = gateway.failure()
            if failure:
                raise DemoError(f"the gateway failed: {failure}")
            if now >= next_check:  # a stopped pipeline would otherwise only show as a timeout
                next_check = now + 1.0
                _, reasons = await gateway.readiness(session)
                stopped = [r for r in reasons if r.startswith("stopped")]
                if stopped:
                    raise DemoError(f"the gateway {stopped[0]}")
            if now > deadline:
                raise DemoError(f"timed out: {counts.published:,} of {total:,} records published "
                                f"({produced[0]:,} produced); the gateway log may say why")
            await asyncio.sleep(TICK_S)


# ---- reading the outputs back -------------------------------------------------------------------

@dataclass(slots=True)
class Outputs:
    """What the topics hold, by record ``id``."""

    inputs: dict[str, int] = field(default_factory=dict)  # id -> input timestamp (ms)
    predictions: dict[str, int] = field(default_factory=dict)  # id -> prediction record timestamp (ms)
    dead_letters: dict[str, str] = field(default_factory=dict)  # id -> stage
    duplicates: int = 0
    last_output_ms: int = 0  # timestamp of the latest output record of either kind
    prediction_samples: dict[str, dict[str, Any]] = field(default_factory=dict)  # first per label
    dead_letter_samples: dict[str, dict[str, Any]] = field(default_factory=dict)  # first per stage

    def complete(self, expected: int) -> bool:
        return len(self.inputs) >= expected and len(self.predictions) + len(self.dead_letters) >= expected

    def add_input(self, record: Any) -> None:
        self.inputs[f"{record.topic}/{record.partition}/{record.offset}"] = record.timestamp

    def add_prediction(self, record: Any) -> None:
        doc = orjson.loads(record.value)
        if doc["id"] in self.predictions:
            self.duplicates += 1
            return
        self.predictions[doc["id"]] = record.timestamp
        self.last_output_ms = max(self.last_output_ms, record.timestamp)
        label = str(doc.get("prediction"))
        if label not in self.prediction_samples and len(self.prediction_samples) < 2:
            self.prediction_samples[label] = doc

    def add_dead_letter(self, record: Any) -> None:
        doc = orjson.loads(record.value)
        if doc["id"] in self.dead_letters:
            self.duplicates += 1
            return
        self.dead_letters[doc["id"]] = doc.get("stage", "?")
        self.last_output_ms = max(self.last_output_ms, record.timestamp)
        self.dead_letter_samples.setdefault(doc.get("stage", "?"), doc)


async def read_outputs(bootstrap: str, expected: int, timeout_s: float) -> Outputs:
    """Read all three topics from the beginning (partitions assigned, no group) until every input
    has an output or the deadline passes; what is still missing then shows in the summary."""
    outputs = Outputs()
    route = {INPUT_TOPIC: outputs.add_input, PREDICTIONS_TOPIC: outputs.add_prediction,
             DEAD_LETTER_TOPIC: outputs.add_dead_letter}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id="scoring-gateway-demo-reader")
    try:
        await _bounded(consumer.start(), TOPICS_S, "cannot read the topics back")
        partitions = [TopicPartition(t, p) for t in TOPICS for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while not outputs.complete(expected) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=20_000)
            for tp, records in batch.items():
                add = route[tp.topic]
                for record in records:
                    add(record)
    finally:
        await consumer.stop()
    return outputs


# ---- the summary --------------------------------------------------------------------------------

@dataclass(slots=True)
class Summary:
    backend: str
    explanations: str
    records_in: int
    produced: int
    predicted: int
    dead_lettered: int
    dead_letter_stages: dict[str, int]
    malformed_produced: dict[str, int]
    missing: int
    unexpected: int
    overlapping: int
    duplicates: int
    produce_rate: float  # records/s asked for; 0 = a burst
    produce_span_s: float  # first to last input timestamp
    duration_s: float
    throughput_rps: float
    latency_ms: dict[str, float | None]
    metrics: dict[str, Any]
    config: str
    workdir: str
    clean_shutdown: bool | None = None

    @property
    def accounted(self) -> int:
        return self.predicted + self.dead_lettered - self.overlapping - self.unexpected

    def machine(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["accounted_for"] = self.accounted
        return doc


MALFORMED_LABELS = {INVALID_JSON: "invalid JSON", JSON_ARRAY: "JSON array", TEXT_BASE_FEE: "text BaseFee"}


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, min(len(ordered), math.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]


def summarize(options: DemoOptions, outputs: Outputs, malformed: dict[str, int], counts: Counts,
              config_path: Path, workdir: Path) -> Summary:
    inputs, predictions, dead = outputs.inputs, outputs.predictions, outputs.dead_letters
    predicted_ids, dead_ids = predictions.keys(), dead.keys()
    stages: dict[str, int] = {}
    for stage in dead.values():
        stages[stage] = stages.get(stage, 0) + 1
    latencies = sorted(float(ts - inputs[i]) for i, ts in predictions.items() if i in inputs)
    first_in = min(inputs.values(), default=0)
    last_in = max(inputs.values(), default=0)
    duration_s = max(0.001, (outputs.last_output_ms - first_in) / 1000.0) if inputs and outputs.last_output_ms else 0.0
    answered = len((predicted_ids | dead_ids) & inputs.keys())
    return Summary(
        backend=options.backend,
        explanations=options.explanations,
        records_in=len(inputs),
        produced=options.records,
        predicted=len(predicted_ids),
        dead_lettered=len(dead_ids),
        dead_letter_stages=dict(sorted(stages.items())),
        malformed_produced=dict(sorted(malformed.items())),
        missing=len(inputs) - answered + max(0, options.records - len(inputs)),
        unexpected=len((predicted_ids | dead_ids) - inputs.keys()),
        overlapping=len(predicted_ids & dead_ids),
        duplicates=outputs.duplicates,
        produce_rate=options.rate,
        produce_span_s=round((last_in - first_in) / 1000.0, 3),
        duration_s=round(duration_s, 3),
        throughput_rps=round(len(inputs) / duration_s, 1) if duration_s else 0.0,
        latency_ms={"p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                    "max": latencies[-1] if latencies else None},
        metrics={"consumed": counts.consumed, "predicted": counts.predicted,
                 "dead_lettered": counts.dead_lettered, "dead_letter_stages": counts.stages},
        config=str(config_path),
        workdir=str(workdir),
    )


def print_summary(console: Console, summary: Summary, outputs: Outputs) -> None:
    s = summary
    table = Table(title=f"Summary: {s.backend}, explanations {s.explanations}", show_header=False,
                  title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column()
    stages = ", ".join(f"{stage} {n:,}" for stage, n in s.dead_letter_stages.items()) or "none"
    made = ", ".join(f"{n} {MALFORMED_LABELS.get(kind, kind)}" for kind, n in s.malformed_produced.items())
    exact = s.missing == 0 and s.unexpected == 0 and s.overlapping == 0
    produced = "" if s.records_in == s.produced else f"of {s.produced:,} produced; "
    malformed = f"{produced}{sum(s.malformed_produced.values()):,} malformed on purpose: {made}"
    table.add_row("records in", f"{s.records_in:,}", malformed if made else produced)
    table.add_row("predicted", f"{s.predicted:,}", "")
    table.add_row("dead-lettered", f"{s.dead_lettered:,}", f"by stage: {stages}")
    table.add_row("accounted for", f"{s.accounted:,}",
                  ("[green]every input has exactly one output, matched by id[/]" if exact else
                   f"[red]missing {s.missing:,}, unexpected {s.unexpected:,}, both {s.overlapping:,}[/]")
                  + (f" ({s.duplicates:,} duplicates)" if s.duplicates else ""))
    table.add_row("throughput", f"{s.throughput_rps:,.0f}", f"records/s (first input to last output: "
                                                           f"{s.duration_s:.2f} s)")
    lat = s.latency_ms
    if lat["p50"] is not None:
        table.add_row("end-to-end latency", f"p50 {lat['p50']:,.0f} ms",
                      f"p99 {lat['p99']:,.0f} ms, max {lat['max']:,.0f} ms (input → prediction record timestamps)")
        table.add_row("", "", f"records produced at {s.produce_rate:,.0f}/s" if s.produce_rate else
                      f"a burst produced in {s.produce_span_s:.2f} s: includes queueing (--rate for steady state)")
    table.add_row("config", "", s.config)
    console.print()
    console.print(table)
    for label, doc in outputs.prediction_samples.items():
        console.print(f"\n[bold]A prediction record[/] ({label}):")
        console.print(record_text(doc), markup=False, highlight=True, soft_wrap=True)
    for stage, doc in outputs.dead_letter_samples.items():
        console.print(f"\n[bold]A dead-letter record[/] (stage {stage}):")
        console.print(record_text(doc), markup=False, highlight=True, soft_wrap=True)
    console.print()


def record_text(doc: dict[str, Any]) -> str:
    """Pretty JSON that stays short: one line per field, and one per explanation."""
    lines = []
    for key, value in doc.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            items = ",\n".join("    " + orjson.dumps(v).decode() for v in value)
            lines.append(f"  {orjson.dumps(key).decode()}: [\n{items}\n  ]")
        else:
            lines.append(f"  {orjson.dumps(key).decode()}: {orjson.dumps(value).decode()}")
    return "{\n" + ",\n".join(lines) + "\n}"
