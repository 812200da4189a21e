"""The demo's options and fixed settings: names, sizes and deadlines."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import CommandError

HOST = "127.0.0.1"
PIPELINE = "churn"
DEPLOYMENT = "churn"
INPUT_TOPIC = "churn-features"
PREDICTIONS_TOPIC = "churn-predictions"
DEAD_LETTER_TOPIC = "churn-dead-letter"
COMPARISONS_TOPIC = "churn-comparisons"  # with --challenger
CHALLENGER_DEPLOYMENT = "churn_challenger"
TOPICS = (INPUT_TOPIC, PREDICTIONS_TOPIC, DEAD_LETTER_TOPIC, COMPARISONS_TOPIC)
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


class DemoError(CommandError):
    """A cause that ends the demo; its text is the one line printed after ``demo: ``."""


class Interrupted(CommandError):
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
    challenger: bool = False  # also score every record on the emulator's churn_challenger, for comparison

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
                   Path(args.workdir) if args.workdir else None, args.latency_ms, args.seed, args.rate,
                   args.challenger)


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
    parser.add_argument("--challenger", action="store_true",
                        help="also score every record on the emulator's churn_challenger deployment and show how "
                             "often the two models agree (comparison records on churn-comparisons)")
