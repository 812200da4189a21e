"""``scoring-gateway demo``: the command line (``add_arguments``, ``main``): parse the options, start the
broker, run the demo, report how it ended."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import IO

import orjson
from rich.console import Console

from gateway.commands.demo.options import (
    BROKER_LOG_FILE,
    BROKER_START_S,
    HOST,
    LOG_FILE,
    DemoError,
    DemoOptions,
    Interrupted,
    add_arguments,
)
from gateway.commands.demo.run import Demo
from gateway.commands.demo.summary import Summary
from gateway.commands.demo.waits import describe
from gateway.kafka.embedded import BrokerError, EmbeddedBroker, broker_binary
from gateway.runtime.loop import run_loop
from gateway.runtime.memory import tune_for_batches

log = logging.getLogger(__name__)

__all__ = ["add_arguments", "main", "report_end"]


def main(args: argparse.Namespace) -> int:
    try:
        options = DemoOptions.from_args(args)
    except ValueError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    try:
        broker_binary()  # before anything is created: without the demo extra, say how to get it
    except BrokerError as exc:
        print(f"demo: cannot start the broker: {exc}", file=sys.stderr)
        return 1
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
            tune_for_batches()
            summary = run_loop(Demo(options, broker, workdir, console).run())
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
    from gateway.runtime.logs import configure_logging

    configure_logging("json", "INFO", secrets=[], stream=stream)


def _stop_logging() -> None:
    from gateway.runtime.logs import GatewayLogHandler

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

