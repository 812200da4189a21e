"""``scoring-gateway schema``: print the configuration's JSON Schema (draft 2020-12).

Point an editor at the file it writes and a config is checked and completed as it is typed, e.g. with
yaml-language-server's modeline ``# yaml-language-server: $schema=./scoring-gateway.schema.json``.
The schema says what every key takes, its default and what it means; ``check`` remains the judge of a
whole file (variables, secret files, rules that compare two values).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.config import json_schema

EXIT_OK = 0
EXIT_CANNOT_WRITE = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, metavar="FILE",
                        help="write the schema to FILE instead of standard output")


def render() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(args: argparse.Namespace) -> int:
    text = render()
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"{args.output}: cannot write the schema: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CANNOT_WRITE
    return EXIT_OK
