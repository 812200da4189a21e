"""The ``scoring-gateway`` command line: one sub-command per module, each adding its own options."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# sub-command -> (module, one-line help). Each module has add_arguments(parser) and main(args) -> int:
# a command package's is its ``cli`` module (its ``run`` module is one run, wired); a one-module
# command is its own.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("gateway.app", "run every pipeline in the config until SIGTERM/SIGINT"),
    "check": ("gateway.commands.check", "validate a config and print it resolved, secrets redacted"),
    "schema": ("gateway.commands.schema", "print the config's JSON Schema, for editors and validators"),
    "emulate": ("gateway.emulator.cli", "run the built-in Qlik/DataRobot scoring emulator"),
    "demo": ("gateway.commands.demo.cli", "run broker, emulator and gateway embedded, with live progress"),
    "replay": ("gateway.commands.replay.cli", "re-publish a pipeline's dead letters to its input topic"),
    "batch": ("gateway.commands.batch.cli", "score a CSV/Parquet file or a topic range into prediction files"),
    "qlik-batch": ("gateway.commands.qlik_batch.cli", "run a Qlik deployment's own batch prediction job"),
    "compare": ("gateway.commands.compare.cli", "summarise a pipeline's champion/challenger comparisons"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scoring-gateway",
        description="Streaming scoring gateway: Kafka → Qlik Predict / DataRobot → Kafka.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(_main=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
