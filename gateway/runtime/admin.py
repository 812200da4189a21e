"""The admin HTTP server: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for the orchestrator.

Only ``GET`` on those three paths answers; every other path or method is a plain 404, so the port
reveals nothing else (no listing, no ``Server`` banner, no access log per scrape). Handlers only read
in-memory state. ``/healthz`` and ``/readyz`` take microseconds; rendering ``/metrics`` costs about
13 µs per exposed line in prometheus-client (~10 ms for four busy pipelines), so it runs in a worker
thread to keep that off the event loop that drives the pipelines.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from gateway.runtime.health import Health

_JSON = "application/json"


def _json(status: int, doc: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type=_JSON)


async def _hide_server_banner(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.popall(hdrs.SERVER, None)


class AdminServer:
    """Serves the registry and the health state on ``host:port``; port 0 binds a free port."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: Health) -> None:
        self._host = host
        self._requested_port = port
        self._registry = registry
        self._health = health
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port; only known once :meth:`start` has returned."""
        if self._port is None:
            raise RuntimeError("admin server not started")
        return self._port

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("admin server already started")
        runner = web.AppRunner(self._application(), access_log=None, handle_signals=False,
                               shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Closes the listener and waits for in-flight scrapes (at most a second); idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._port = None

    def _application(self) -> web.Application:
        app = web.Application()
        app.on_response_prepare.append(_hide_server_banner)
        app.router.add_get("/metrics", self.metrics, allow_head=False)
        app.router.add_get("/healthz", self.healthz, allow_head=False)
        app.router.add_get("/readyz", self.readyz, allow_head=False)
        # Catches unknown paths and other methods on known paths alike (otherwise a 405).
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text format, or OpenMetrics when the scraper asks for it."""
        encode, content_type = choose_encoder(request.headers.get(hdrs.ACCEPT, ""))
        body = await asyncio.to_thread(encode, self._registry)
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})

    async def healthz(self, _request: web.Request) -> web.Response:
        if self._health.alive():
            return _json(200, {"status": "ok"})
        return _json(503, {"status": "failed", "reason": self._health.failed_reason})

    async def readyz(self, _request: web.Request) -> web.Response:
        ready, pipelines = self._health.ready()
        return _json(200 if ready else 503, {"status": "ready" if ready else "not_ready",
                                             "pipelines": pipelines})

    async def not_found(self, _request: web.Request) -> web.Response:
        return web.Response(status=404, text="not found")
