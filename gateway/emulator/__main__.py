"""``python -m gateway.emulator``: the same as ``scoring-gateway emulate``, importing nothing else."""

import argparse

from gateway.emulator import cli

parser = argparse.ArgumentParser(prog="python -m gateway.emulator", description=cli.__doc__)
cli.add_arguments(parser)
raise SystemExit(cli.main(parser.parse_args()))
