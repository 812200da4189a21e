"""The emulator and the gateway as the tests, the benchmarks and the chaos campaign run them.

Each runs in its own process, started with ``python -m gateway ...`` on loopback, its output
appended to a log file, and stopped by the PID it was started with (SIGTERM, SIGKILL past a
deadline). Neither starts in its constructor: ``start()`` starts it and returns it, so
``EmulatorProcess().start()`` and ``GatewayProcess(config, log).start()`` read as what they do.

Calls that wait (control requests to the emulator, a gateway's drain) are plain blocking calls for
synchronous tests; callers on an event loop use the ``a``-prefixed twin, which runs the same call
on a worker thread or polls without blocking, so the loop keeps serving its other tasks.
``InProcessGateway`` is the one exception to "its own process": ``serve()`` on the test's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import aiohttp
import orjson
import yaml

from gateway.kafka.embedded import end_process, free_port
from testkit.measure import MetricSample, ProcessProbe, metric_sum, parse_metrics

# The gateway's start-up log line, as JSON ("admin_port": N) or as text (admin_port=N).
_ADMIN_PORT = re.compile(r'gateway_started.*?admin_port"?[:=] ?(\d+)')
# What a control request that found no server raises: refused, reset, timed out, or cut mid-answer.
_UNREACHABLE = (OSError, http.client.HTTPException)


def spawn(log_path: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``python -m gateway ARGS``, its output appended to ``log_path``; ``env`` adds to ours."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "gateway", *args], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=None if env is None else {**os.environ, **env})


def read_log(path: Path) -> str:
    """A log file's text so far; empty when it cannot be read (not written yet, say)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def tail(path: Path, lines: int = 10) -> str:
    """The last ``lines`` of a log file."""
    return "\n".join(read_log(path).splitlines()[-lines:])


# ---- the emulator ---------------------------------------------------------------------------

class EmulatorProcess:
    """``python -m gateway emulate`` on a loopback port (a free one unless ``port`` is given).

    It starts instant (latency 0, per-row 0: the emulator's default is a real service's latency);
    ``extra`` flags come after, so a caller can ask for its own. ``stop()`` then ``start()`` again is
    an API that went down and came back on the same port, with the same flags and fresh counters.

    With ``tls`` it serves HTTPS and the control calls skip verification (the emulator's
    certificate is the scenario's, not one the caller trusts). Without ``log_path`` its output goes
    to a temporary file, removed when it stops.
    """

    def __init__(self, *extra: str, port: int | None = None, seed: int = 7, tls: bool = False,
                 log_path: Path | None = None, control_timeout_s: float = 10.0) -> None:
        self.port = port or free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._own_log = log_path is None
        self._args = ("--host", "127.0.0.1", "--port", str(self.port), "--seed", str(seed),
                      "--latency-ms", "0", "--per-row-ms", "0", *extra)
        self._ssl = _unverified() if tls else None
        self._timeout_s = control_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self.deployments: dict[str, dict[str, Any]] = {}

    @property
    def pid(self) -> int:
        assert self._proc is not None, "the emulator is not running"
        return self._proc.pid

    def start(self, timeout_s: float = 30.0) -> Self:
        """Start it and wait until it answers; its deployments are then in ``deployments``."""
        if self._proc is not None:
            raise RuntimeError("the emulator is still running: stop it first")
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="emulator-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self._proc = spawn(self.log_path, "emulate", *self._args)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                code, self._proc = self._proc.returncode, None
                raise RuntimeError(f"the emulator exited with {code}: {tail(self.log_path, 20)}")
            try:
                found = self.get("/_emulator/deployments")
            except _UNREACHABLE as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the emulator did not answer within {timeout_s:.0f}s") from exc
                time.sleep(0.05)
                continue
            self.deployments = {d["name"]: d for d in found["deployments"]}
            return self

    async def astart(self, timeout_s: float = 30.0) -> Self:
        return await asyncio.to_thread(self.start, timeout_s)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=self._timeout_s, context=self._ssl) as r:
            return orjson.loads(r.read())

    def configure(self, **options: Any) -> Any:
        """POST /_emulator/config; a refusal names the options, never their values (one may be a token)."""
        request = urllib.request.Request(self.url + "/_emulator/config", data=orjson.dumps(options),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s, context=self._ssl) as r:
                return orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"emulator refused {sorted(options)}: {exc.code} {exc.read()[:300]!r}") from None

    def reset(self, **options: Any) -> Any:
        """Back to a healthy, instant backend, then ``options`` on top."""
        settings: dict[str, Any] = {"latency_ms": 0, "per_row_ms": 0, "shap_multiplier": 1,
                                    "xemp_multiplier": 1, "error_rate": {}, "hang_rate": 0,
                                    "drop_rate": 0, "rate_limit_per_minute": None,
                                    "max_concurrent_requests": None, "crash_value": None}
        settings.update(options)
        return self.configure(**settings)

    def stats(self) -> Any:
        return self.get("/_emulator/stats")

    def requests(self) -> list[str]:
        """The path and query of the last prediction requests, as the emulator received them."""
        return list(self.get("/_emulator/requests")["requests"])

    async def aget(self, path: str) -> Any:
        return await asyncio.to_thread(self.get, path)

    async def aconfigure(self, **options: Any) -> Any:
        return await asyncio.to_thread(lambda: self.configure(**options))

    async def areset(self, **options: Any) -> Any:
        return await asyncio.to_thread(lambda: self.reset(**options))

    async def astats(self) -> Any:
        return await asyncio.to_thread(self.stats)

    def qlik_url(self, name: str = "churn") -> str:
        return (f"{self.url}/api/v1/ml/deployments/{self.deployments[name]['qlik_id']}"
                "/realtime-predictions/actions/run")

    def datarobot_url(self, name: str = "churn") -> str:
        return f"{self.url}/predApi/v1.0/deployments/{self.deployments[name]['datarobot_id']}/predictions"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            end_process(proc, 10)
        if self._own_log and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
            self.log_path = None


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# ---- the gateway ----------------------------------------------------------------------------

class GatewayProcess:
    """``python -m gateway run --config FILE``: the gateway as users run it, in its own process.

    ``env`` adds to the inherited environment (where secrets referenced as ``${VAR}`` come from).
    ``session`` is the HTTP session :meth:`scrape` uses; only callers that scrape pass one.
    """

    def __init__(self, config_path: Path, log_path: Path, *, env: Mapping[str, str] | None = None,
                 label: str | None = None, session: aiohttp.ClientSession | None = None) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.label = label or config_path.stem
        self.session = session
        self._env = {**(env or {}), "PYTHONUNBUFFERED": "1"}
        self._admin_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.probe: ProcessProbe | None = None
        self.exit_status: int | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any], workdir: Path, label: str, *,
                    env: Mapping[str, str] | None = None, session: aiohttp.ClientSession | None = None) -> Self:
        """``config`` written to ``workdir/LABEL.yaml`` with its admin server on port 0: the gateway
        binds a free port itself and logs it (a port picked here and bound later could be taken
        meanwhile, by another connection's ephemeral source port say)."""
        return cls(config_file(config, workdir, label), workdir / f"{label}.log", env=env, label=label,
                   session=session)

    def start(self) -> Self:
        self._proc = spawn(self.log_path, "run", "--config", str(self.config_path), env=self._env)
        self.probe = ProcessProbe(self._proc.pid)
        return self

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self._proc is not None, "the gateway was not started"
        return self._proc

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        """Whether the process is up; an exit seen here is kept in ``exit_status``."""
        if self._proc is None:
            return False
        code = self._proc.poll()
        if code is not None:
            self.exit_status = code
        return code is None

    def log_tail(self, lines: int = 10) -> str:
        return tail(self.log_path, lines)

    @property
    def admin_port(self) -> int | None:
        """The admin server's port, from the log's start-up line; None until that is written."""
        if self._admin_port is None:
            found = _ADMIN_PORT.search(read_log(self.log_path))
            if found is not None:
                self._admin_port = int(found.group(1))
        return self._admin_port

    @property
    def admin_url(self) -> str | None:
        port = self.admin_port
        return None if port is None else f"http://127.0.0.1:{port}"

    def signal(self, sig: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, sig)

    def wait(self, timeout_s: float) -> int:
        """The exit status; ``subprocess.TimeoutExpired`` if it is still running after ``timeout_s``."""
        self.exit_status = self.proc.wait(timeout_s)
        return self.exit_status

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, no goodbye."""
        if self._proc is not None:
            self.signal(signal.SIGKILL)
            self.wait(10)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (the gateway drains and exits 0), SIGKILL past ``timeout_s``. Returns the exit status."""
        if self._proc is not None:
            self.exit_status = end_process(self._proc, timeout_s)
        return self.exit_status

    async def astop(self, timeout_s: float = 30.0) -> int | None:
        """:meth:`stop` without blocking the event loop while the gateway drains."""
        proc = self._proc
        if proc is None:
            return self.exit_status
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - a child process, no event to wait on
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
        self.exit_status = proc.wait()
        return self.exit_status

    async def scrape(self) -> str | None:
        """The admin port's /metrics as text; None while the admin server is not up yet."""
        url = self.admin_url
        if url is None:
            return None
        if self.session is None:
            raise RuntimeError("scraping needs the aiohttp session given as GatewayProcess(session=...)")
        try:
            async with self.session.get(url + "/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r:
                return await r.text() if r.status == 200 else None
        except (aiohttp.ClientError, OSError):  # OSError includes the client's TimeoutError
            return None

    async def metrics(self) -> list[MetricSample]:
        """The admin port's /metrics, parsed; [] while the admin server is not up yet."""
        text = await self.scrape()
        return [] if text is None else parse_metrics(text)

    async def published(self) -> int | None:
        """Records published so far (predicted + dead-lettered), or None before /metrics answers."""
        samples = await self.metrics()
        if not samples:
            return None
        return int(metric_sum(samples, "scoring_gateway_records_published_total"))


def config_file(config: dict[str, Any], workdir: Path, label: str) -> Path:
    """``workdir/LABEL.yaml`` holding ``config`` with its admin server on a port the gateway picks."""
    path = workdir / f"{label}.yaml"
    path.write_text(yaml.safe_dump(dict(config, admin={"host": "127.0.0.1", "port": 0}), sort_keys=False))
    return path


class InProcessGateway:
    """``serve()`` on the test's own event loop: ``async with InProcessGateway(doc) as gw``."""

    def __init__(self, doc: dict[str, Any]) -> None:
        from gateway.config import parse_config

        self.config = parse_config(doc, dict(os.environ))
        self.stop = asyncio.Event()
        self.admin: Any = None
        self._task: asyncio.Task[int] | None = None

    async def __aenter__(self) -> InProcessGateway:
        from gateway.app import serve

        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(serve(self.config, self.stop, ready=ready, handle_signals=False))
        done, _ = await asyncio.wait({ready, self._task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            self._task.result()
        self.admin = ready.result()
        return self

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin.port}"

    async def __aexit__(self, *exc: Any) -> None:
        self.stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 60)
