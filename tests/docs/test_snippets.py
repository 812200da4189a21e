"""Every config and command the documentation shows works: YAML configs load as ``scoring-gateway check``
loads them, and shell lines parse with the real argument parser (and run, where they need no broker
or scoring API). A block marked ``<!-- against the emulator… -->`` is run for real against a fresh
``scoring-gateway emulate``; a block the test cannot check is marked ``<!-- illustrative… -->``, each
on the line before the opening fence (docs/development.md, "Writing the documentation")."""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import COMMANDS, build_parser
from gateway.config import ConfigError, PipelineConfig, parse_config
from gateway.config.models import Config

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^\s*<!--\s*illustrative\b.*-->\s*$")
EMULATOR_MARKER = re.compile(r"^\s*<!--\s*against the emulator\b.*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,})([\w-]*)\s*$")
SHELL = {"bash", "sh", "shell", "console"}
YAML = {"yaml", "yml"}
# Placeholder values for the ${VAR} references the examples use; a new name belongs here.
ENVIRONMENT = {
    "KAFKA_BOOTSTRAP_SERVERS": "pkc-00000.eu-west-1.aws.confluent.cloud:9092",
    "KAFKA_SASL_USERNAME": "ABCDEFGHIJKLMNOP",
    "KAFKA_SASL_PASSWORD": "a-secret",
    "QLIK_TENANT": "mytenant.eu.qlikcloud.com",
    "QLIK_DEPLOYMENT_ID": "3f8e2a52-6a1b-4c2e-9d8f-4b7a1c2e5d90",
    "QLIK_API_KEY": "a-qlik-key",
    "DATAROBOT_PREDICTION_URL": "https://example.orm.datarobot.com/predApi/v1.0/deployments/"
                                "0123456789abcdef01234567/predictions",
    "DATAROBOT_API_TOKEN": "a-datarobot-token",
    "DATAROBOT_KEY": "a-datarobot-key",
}
# A small valid config that fragments (top-level sections, or keys of one pipeline) are merged into.
BASE: dict[str, Any] = {
    "kafka": {"bootstrap_servers": "localhost:9092"},
    "pipelines": [{"name": "churn", "input_topic": "churn-features",
                   "backend": {"type": "qlik", "url": "http://127.0.0.1:8080/api/v1/ml/deployments/churn/"
                                                     "realtime-predictions/actions/run"},
                   "outputs": {"predictions": "churn-predictions", "dead_letter": "churn-dead-letter"}}],
}
# Sub-commands that need no broker and no scoring API: run for real, not only parsed.
RUNNABLE = {"schema", "check"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    text: str
    illustrative: bool
    against_emulator: bool = False

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> Iterator[Block]:
    """The fenced blocks of a page; a fence closes only on the same run of backticks, so a block may
    show another block (four backticks around three)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        _, fence, language = opening.groups()
        body = []
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            body.append(lines[end])
            end += 1
        before = lines[index - 1] if index > 0 else ""
        yield Block(str(path.relative_to(ROOT)), index + 1, language, textwrap.dedent("\n".join(body)),
                    MARKER.match(before) is not None, EMULATOR_MARKER.match(before) is not None)
        index = end + 1


ALL = [block for path in pages() for block in blocks(path)]


def _ids(found: list[Block]) -> list[str]:
    return [block.where for block in found]


YAML_BLOCKS = [b for b in ALL if b.language in YAML and not b.illustrative]
SHELL_BLOCKS = [b for b in ALL if b.language in SHELL and not b.illustrative and not b.against_emulator]
EMULATOR_BLOCKS = [b for b in ALL if b.language in SHELL and b.against_emulator]


def test_the_docs_have_checked_snippets_of_each_kind() -> None:
    assert len(YAML_BLOCKS) >= 4 and len(SHELL_BLOCKS) >= 8
    assert any(b.page == "README.md" for b in YAML_BLOCKS)
    assert len(EMULATOR_BLOCKS) >= 3


def test_every_marker_stands_before_a_fence() -> None:
    stray = []
    for path in pages():
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            following = lines[number] if number < len(lines) else ""
            if (MARKER.match(line) or EMULATOR_MARKER.match(line)) and not FENCE.match(following):
                stray.append(f"{path.relative_to(ROOT)}:{number}")
    assert stray == [], "an illustrative marker must be on the line right before a fence"


# ---- YAML -----------------------------------------------------------------------------------------

def merged(base: Mapping[str, Any], fragment: Mapping[str, Any]) -> dict[str, Any]:
    """``fragment`` over ``base``: sections merged key by key, a backend or a list replaced whole."""
    result = copy.deepcopy(dict(base))
    for key, value in fragment.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping) and key != "backend":
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def as_config(document: Any) -> dict[str, Any]:
    assert isinstance(document, Mapping), "a YAML example must be a mapping (or mark it illustrative)"
    keys = set(document)
    if "pipelines" in keys:
        return dict(document)
    if keys <= set(Config.model_fields):
        return merged(BASE, document)
    if keys <= set(PipelineConfig.model_fields):
        config = copy.deepcopy(BASE)
        config["pipelines"][0] = merged(config["pipelines"][0], document)
        return config
    raise AssertionError(f"neither a config nor the keys of a section or a pipeline: {sorted(keys)}; "
                         "fix it or mark it illustrative")


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=_ids(YAML_BLOCKS))
def test_yaml_example_loads_as_check_loads_it(block: Block) -> None:
    document = yaml.safe_load(block.text)
    try:
        parse_config(as_config(document), ENVIRONMENT, base_dir=ROOT, source=block.where)
    except ConfigError as exc:
        pytest.fail(f"{block.where}: `scoring-gateway check` refuses this example:\n" + "\n".join(exc.errors))


# ---- shell ----------------------------------------------------------------------------------------

def commands(text: str) -> Iterator[list[str]]:
    """Each command of a shell block as words, continuations joined, comments and prompts removed."""
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip().removeprefix("$ ")
        words = shlex.split(line, comments=True)
        if words:
            yield words


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M))


def run_gateway(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "gateway", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def check_gateway(words: list[str], tmp_path: Path, where: str) -> None:
    argv = words[1:] if words[0] == "scoring-gateway" else words[3:]  # python -m gateway …
    assert argv and (argv[0] in COMMANDS or argv[0] in ("-h", "--help")), f"{where}: unknown command {argv}"
    if "-h" in argv or "--help" in argv:
        result = run_gateway(argv, tmp_path)
        assert result.returncode == 0 and "usage: scoring-gateway" in result.stdout, (where, result.stderr)
        return
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: `{shlex.join(words)}` does not parse (exit {exc.code})")
    if argv[0] not in RUNNABLE or "--probe" in argv:
        return
    if argv[0] == "check":
        config = argv[argv.index("--config") + 1]
        if not (ROOT / config).exists():
            return  # the reader's own file: parsed above
        result = run_gateway(argv, ROOT)
    else:
        result = run_gateway(argv, tmp_path)  # schema: --output lands in the temporary folder
    assert result.returncode == 0, f"{where}: `{shlex.join(words)}` exited {result.returncode}:\n{result.stderr}"


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=_ids(SHELL_BLOCKS))
def test_shell_example_parses_and_runs_where_it_can(block: Block, tmp_path: Path) -> None:
    targets = make_targets()
    for words in commands(block.text):
        shown = shlex.join(words)
        if words[0] == "make":
            assert words[1] in targets, f"{block.where}: `{shown}`: no such make target"
        elif words[0] == "scoring-gateway" or words[:3] == ["python", "-m", "gateway"]:
            check_gateway(words, tmp_path, block.where)
        elif words[:2] == ["python", "docs/generate.py"]:
            result = subprocess.run([sys.executable, "docs/generate.py", "--check"], cwd=ROOT, capture_output=True,
                                    text=True, timeout=120)
            assert result.returncode == 0, result.stderr
        elif words[:2] == [".venv/bin/python", "-m"] and words[2] == "pytest":
            continue  # the test runner itself
        else:
            pytest.fail(f"{block.where}: `{shown}` is neither checked nor marked illustrative: mark the block "
                        "`<!-- illustrative: why -->`, or teach this test to check it")


# ---- against the emulator ---------------------------------------------------------------------------

DOCUMENTED_ADDRESS = re.compile(r"(?:localhost|127\.0\.0\.1):8080")


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[str]:
    """A fresh ``scoring-gateway emulate`` on a free loopback port (one per block: a block may change
    its settings); yields its address, stopped by its PID."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "gateway", "emulate", "--port", "0"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the first line, or "" if it exits; pytest's timeout bounds it
        found = re.search(r"listening on http://(127\.0\.0\.1:\d+)", line)
        assert found, f"the emulator did not start: {line!r}"
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the examples use curl")
@pytest.mark.parametrize("block", EMULATOR_BLOCKS, ids=_ids(EMULATOR_BLOCKS))
def test_example_works_against_the_emulator(block: Block, emulator: str, tmp_path: Path) -> None:
    for line in block.text.replace("\\\n", " ").splitlines():
        if not line.strip():
            continue
        command = DOCUMENTED_ADDRESS.sub(emulator, line)
        if command.lstrip().startswith("curl "):
            command = command.replace("curl ", "curl --fail --silent --show-error ", 1)
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{block.where}: `{line.strip()}` failed: {result.stderr}"
