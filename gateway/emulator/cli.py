"""``scoring-gateway emulate``: run the scoring emulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

from gateway.emulator.server import start_emulator
from gateway.emulator.settings import EXPLANATION_ALGORITHMS, EmulatorOptions, OptionError, parse_error_rate_arg
from gateway.runtime.loop import run_loop

T = TypeVar("T")
DEFAULTS = EmulatorOptions()
_TEN_ROWS_MS = DEFAULTS.latency_ms + 10 * DEFAULTS.per_row_ms
LATENCY_MODEL = (
    "latency model: a request takes (--latency-ms + --per-row-ms x rows), times --shap-multiplier with SHAP "
    f"or --xemp-multiplier with XEMP explanations, plus --jitter-ms; by default {DEFAULTS.latency_ms:g} ms "
    f"+ {DEFAULTS.per_row_ms:g} ms/row, SHAP x{DEFAULTS.shap_multiplier:g}, XEMP x{DEFAULTS.xemp_multiplier:g} "
    f"(a 10-row request: {_TEN_ROWS_MS:g} ms plain, {_TEN_ROWS_MS * DEFAULTS.shap_multiplier:g} ms SHAP, "
    f"{_TEN_ROWS_MS * DEFAULTS.xemp_multiplier:g} ms XEMP). --latency-ms 0 --per-row-ms 0 gives an instant emulator.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = LATENCY_MODEL
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on; 0 = any free port (default 8080)")
    parser.add_argument("--token", help="require this bearer token (default: any bearer token, but one is required)")
    parser.add_argument("--datarobot-key", help="require this DataRobot-Key header on the DataRobot routes")
    parser.add_argument("--latency-ms", type=float, default=DEFAULTS.latency_ms,
                        help=f"base latency per request (default {DEFAULTS.latency_ms:g}; "
                             "0 with --per-row-ms 0: instant)")
    parser.add_argument("--per-row-ms", type=float, default=DEFAULTS.per_row_ms,
                        help=f"extra latency per row (default {DEFAULTS.per_row_ms:g})")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="uniform random extra latency up to this")
    parser.add_argument("--shap-multiplier", type=float, default=DEFAULTS.shap_multiplier,
                        help="latency multiplier for requests with SHAP explanations "
                             f"(default {DEFAULTS.shap_multiplier:g})")
    parser.add_argument("--xemp-multiplier", type=float, default=DEFAULTS.xemp_multiplier,
                        help="latency multiplier for requests with XEMP explanations "
                             f"(default {DEFAULTS.xemp_multiplier:g})")
    parser.add_argument("--explanation-algorithm", choices=EXPLANATION_ALGORITHMS, default="shap",
                        help="the DataRobot deployments' default explanation algorithm (default shap)")
    parser.add_argument("--error-rate", action="append", default=[], metavar="STATUS=P",
                        type=_checked(parse_error_rate_arg),
                        help="answer STATUS with probability P and the vendor's error body (repeatable)")
    parser.add_argument("--retry-after-s", type=float, default=1.0,
                        help="Retry-After sent with 429 and 503 (default 1)")
    parser.add_argument("--rate-limit-per-minute", type=int, default=None,
                        help="requests per 60 s per vendor before answering 429 (default: unlimited)")
    parser.add_argument("--max-concurrent-requests", type=int, default=None, metavar="K",
                        help="scoring requests in progress at once per vendor before answering 429 with "
                             "Retry-After, as a saturated service does (default: unlimited)")
    parser.add_argument("--crash-value", default=None, metavar="VALUE",
                        help="a feature value on which the model fails: a request with a row holding it "
                             "(compared as text, in any feature) is answered 500 (default: none)")
    parser.add_argument("--hang-rate", type=float, default=0.0, help="probability of never answering")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="probability of closing the connection")
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible faults and jitter")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument("--datasets", help="Qlik batch predictions: folder of apply datasets (<dataSetId>.parquet|csv)")
    parser.add_argument("--spaces", help="Qlik batch predictions: writeback files go to SPACES/<spaceId or personal>/")


def _checked(parse: Callable[[str], T]) -> Callable[[str], T]:
    def convert(text: str) -> T:
        try:
            return parse(text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def options_from_args(args: argparse.Namespace) -> EmulatorOptions:
    error_rate: dict[int, float] = {}
    for status, probability in args.error_rate:
        error_rate[status] = probability
    return EmulatorOptions(
        token=args.token, datarobot_key=args.datarobot_key, latency_ms=args.latency_ms,
        per_row_ms=args.per_row_ms, jitter_ms=args.jitter_ms, shap_multiplier=args.shap_multiplier,
        xemp_multiplier=args.xemp_multiplier, explanation_algorithm=args.explanation_algorithm,
        error_rate=error_rate, retry_after_s=args.retry_after_s,
        rate_limit_per_minute=args.rate_limit_per_minute,
        max_concurrent_requests=args.max_concurrent_requests, crash_value=args.crash_value, hang_rate=args.hang_rate,
        drop_rate=args.drop_rate, seed=args.seed, tls_cert=args.tls_cert, tls_key=args.tls_key,
        datasets=args.datasets, spaces=args.spaces)


def main(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except OptionError as exc:
        print(f"scoring-gateway emulate: {exc}", file=sys.stderr)
        return 2
    return run_loop(_serve(options, args.host, args.port))


async def _serve(options: EmulatorOptions, host: str, port: int) -> int:
    try:
        emulator = await start_emulator(options, host, port)
    except OSError as exc:
        print(f"scoring-gateway emulate: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        print(f"scoring emulator listening on {emulator.url}", flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await emulator.stop()
    return 0

