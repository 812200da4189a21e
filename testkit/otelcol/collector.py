"""A running OpenTelemetry Collector on loopback: OTLP/HTTP in, every span received written to a file.

``spans()`` reads that file (OTLP JSON, one export request per line) back as flat span dicts, each
with its resource's attributes under ``resource``.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from testkit.otelcol.runtime import binary

START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        value = item.get("value", {})
        out[item["key"]] = next(iter(value.values()), None) if value else None
    return out


class Collector:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.output = folder / "traces.jsonl"
        self.log = folder / "collector.log"
        config = {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{self.port}"}}}},
            "exporters": {"file": {"path": str(self.output), "flush_interval": "100ms"}},
            "service": {"telemetry": {"metrics": {"level": "none"}},
                        "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}}},
        }
        path = folder / "collector.yaml"
        path.write_text(yaml.safe_dump(config))
        self._log = open(self.log, "ab")  # noqa: SIM115 - the collector writes to it until it exits
        self.proc = subprocess.Popen([str(binary()), "--config", str(path)], stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_until_listening()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the collector exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the collector did not listen on 127.0.0.1:{self.port} within {START_TIMEOUT_S:.0f}s")

    def spans(self) -> list[dict[str, Any]]:
        if not self.output.exists():
            return []
        found = []
        for line in self.output.read_bytes().splitlines():
            try:
                request = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line still being written
            for resource_spans in request.get("resourceSpans", []):
                resource = _attributes(resource_spans.get("resource", {}).get("attributes"))
                for scope in resource_spans.get("scopeSpans", []):
                    for span in scope.get("spans", []):
                        found.append({**span, "attributes": _attributes(span.get("attributes")),
                                      "resource": resource})
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
