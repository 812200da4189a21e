"""The emulator's HTTP server: both vendors' routes and the ``/_emulator`` control routes on one
port, optionally over TLS.

Every prediction request passes the same gate, in this order: authentication, the rate limit,
the cap on requests in progress (``max_concurrent_requests``: a request admitted holds its slot
until it is answered, hung or dropped), fault injection (drop, hang, injected status), then the
vendor's own validation and scoring (a row holding ``crash_value`` crashes the model: 500), then
the latency model pads the answer to ``latency_ms + per_row_ms × rows`` (times the explanation
multiplier). The :class:`Emulator` owns everything it starts: ``stop()`` releases hanging
requests, cancels what is still running and closes the listening socket.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from gateway.emulator.batch_predictions import BatchPredictionApi
from gateway.emulator.bodies import MAX_BODY_BYTES
from gateway.emulator.datarobot import DataRobotApi
from gateway.emulator.faults import FaultDice, InProgress, SlidingWindow, drop, hold
from gateway.emulator.models import DeploymentCatalog
from gateway.emulator.qlik import QlikApi
from gateway.emulator.settings import EmulatorOptions, OptionError
from gateway.emulator.stats import ServedStats
from gateway.emulator.vendor import VendorApi

log = logging.getLogger(__name__)


class ProtocolLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log, with malformed HTTP (oversized headers, bad request lines) written as
    one warning line: that is a client's bad input, not a fault worth a traceback."""

    def exception(self, msg: object, *args: object, exc_info: object = True, **kwargs: object) -> None:
        if isinstance(exc_info, HttpProcessingError):
            self.warning("%s: HTTP %s %s", str(msg) % args, exc_info.code, exc_info.message)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)  # type: ignore[arg-type]

QLIK_RUN = "/api/v1/ml/deployments/{deployment}/realtime-predictions/actions/run"
QLIK_ALIAS_RUN = "/api/v1/ml/deployments/{deployment}/aliases/{alias}/realtime-predictions/actions/run"
DATAROBOT_PREDICT = "/predApi/v1.0/deployments/{deployment}/predictions"
QLIK_PREFIX = "/api/"
DATAROBOT_PREFIX = "/predApi/"
SHUTDOWN_GRACE_S = 2.0  # in-flight answers get this long to finish when the emulator stops
RECEIVED_KEPT = 256  # the last prediction requests' paths, as sent, for GET /_emulator/requests

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Emulator:
    """A running emulator. Create with :func:`start_emulator`; ``url`` is where it listens."""

    def __init__(self, options: EmulatorOptions, catalog: DeploymentCatalog | None = None) -> None:
        self._options = options
        self.catalog = catalog or DeploymentCatalog()
        self.stats = ServedStats()
        self._dice = FaultDice(options.seed)
        self._window = SlidingWindow()
        self._in_progress = InProgress()
        self._closing = asyncio.Event()
        self._qlik = QlikApi(self.catalog)
        self._datarobot = DataRobotApi(self.catalog)
        self._batch = BatchPredictionApi(self.catalog, lambda: self._options)
        self._runner: web.AppRunner | None = None
        self.url = ""
        # The path and query of the last RECEIVED_KEPT prediction requests exactly as they arrived
        # (percent-encoding and parameter order kept), so a test can check what a client sent.
        self.received: deque[str] = deque(maxlen=RECEIVED_KEPT)

    @property
    def options(self) -> EmulatorOptions:
        return self._options

    def in_progress(self, route: str) -> int:
        """Scoring requests of a route set ("qlik" | "datarobot") in progress, as
        ``max_concurrent_requests`` counts them."""
        return self._in_progress.count(route)

    def configure(self, **changes: object) -> EmulatorOptions:
        """Change options live, as ``POST /_emulator/config`` does; raises OptionError on bad input."""
        self._options = self._options.updated(changes)
        if "seed" in changes:
            self._dice.reseed(self._options.seed)
        return self._options

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        ssl_context = self._ssl_context()
        self._closing.clear()
        runner = web.AppRunner(self._app(), handle_signals=False, access_log=None, handler_cancellation=True,
                               auto_decompress=False, shutdown_timeout=SHUTDOWN_GRACE_S,
                               logger=ProtocolLog(logging.getLogger("aiohttp.server"), {}))
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self.url = str(URL.build(scheme="https" if ssl_context else "http", host=host, port=bound_port))

    async def stop(self) -> None:
        """Stop listening; hanging requests are dropped, others get ``SHUTDOWN_GRACE_S`` to finish."""
        self._closing.set()
        runner, self._runner = self._runner, None
        await self._batch.close()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _ssl_context(self) -> ssl.SSLContext | None:
        options = self._options
        if options.tls_cert is None or options.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(options.tls_cert, options.tls_key)
        return context

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES + 1, middlewares=[self._vendor_errors])
        qlik = partial(self._serve, self._qlik)
        datarobot = partial(self._serve, self._datarobot)
        app.router.add_post(QLIK_RUN, qlik)
        app.router.add_post(QLIK_ALIAS_RUN, qlik)
        app.router.add_post(DATAROBOT_PREDICT, datarobot)
        self._batch.add_routes(app)
        app.router.add_get("/_emulator/config", self._get_config)
        app.router.add_post("/_emulator/config", self._post_config)
        app.router.add_get("/_emulator/stats", self._get_stats)
        app.router.add_get("/_emulator/deployments", self._get_deployments)
        app.router.add_get("/_emulator/requests", self._get_requests)
        return app

    # ---- prediction routes ----------------------------------------------------------------

    async def _serve(self, api: VendorApi, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        options = self._options
        self.received.append(request.raw_path)
        denied = api.unauthorized(request, options)
        if denied is not None:
            return self._answered(api, denied, started, 0, None)
        if options.rate_limit_per_minute is not None:
            wait_s = self._window.admit(api.route, options.rate_limit_per_minute, started)
            if wait_s is not None:
                self.stats.fault("rate_limited")
                return self._answered(api, api.rate_limited(wait_s), started, 0, None)
        if not self._in_progress.admit(api.route, options.max_concurrent_requests):
            self.stats.fault("concurrency_limited")
            return self._answered(api, api.injected(429, options), started, 0, None)
        try:
            return await self._admitted(api, request, options, started)
        finally:
            self._in_progress.release(api.route)

    async def _admitted(self, api: VendorApi, request: web.Request, options: EmulatorOptions,
                        started: float) -> web.StreamResponse:
        fault = self._dice.roll(options)
        if fault is not None:
            if fault.kind != "error":
                self.stats.unanswered(api.route, fault.kind)
                return drop(request) if fault.kind == "drop" else await hold(request, self._closing)
            self.stats.fault("error")
            await self._pace(started, options, 0, None)
            return self._answered(api, api.injected(fault.status, options), started, 0, None)
        answer = await api.predict(request, options)
        if answer.fault is not None:
            self.stats.fault(answer.fault)
        scored = answer.rows if answer.response.status == 200 else 0
        if scored and answer.disagreements is not None:
            self.stats.compared(scored, answer.disagreements)
        await self._pace(started, options, scored, answer.explanations)
        return self._answered(api, answer.response, started, scored, answer.explanations)

    async def _pace(self, started: float, options: EmulatorOptions, rows: int, explanations: str | None) -> None:
        """Sleep what is left of this request's modelled latency after the work already done."""
        if not (options.latency_ms or options.per_row_ms or options.jitter_ms):
            return
        loop = asyncio.get_running_loop()
        remaining = started + self._dice.latency_s(options, rows, explanations) - loop.time()
        if remaining > 0:
            await asyncio.sleep(remaining)

    def _answered(self, api: VendorApi, response: web.Response, started: float, rows: int,
                  explanations: str | None) -> web.Response:
        api.finish(response, asyncio.get_running_loop().time() - started)
        self.stats.answered(api.route, response.status, rows, explanations)
        return response

    @web.middleware
    async def _vendor_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Unknown routes and methods, and anything unforeseen, answered in the vendor's format."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return self._error_for(request.path, exc.status, exc.reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.path)
            return self._error_for(request.path, 500, "Internal Server Error")

    def _error_for(self, path: str, status: int, text: str) -> web.Response:
        if path.startswith(DATAROBOT_PREFIX):
            return self._datarobot.error(status, "Not found" if status == 404 else text)
        if path.startswith(QLIK_PREFIX):
            return self._qlik.error(status, f"{text}: {path}")
        return _json({"error": text}, status)

    # ---- control routes -------------------------------------------------------------------

    async def _get_config(self, request: web.Request) -> web.Response:
        return _json(self._options.public())

    async def _post_config(self, request: web.Request) -> web.Response:
        try:
            patch = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _json({"error": f"the body is not valid JSON: {exc}"}, 400)
        if type(patch) is not dict:
            return _json({"error": "the body must be a JSON object of option names to values"}, 400)
        try:
            self.configure(**patch)
        except OptionError as exc:
            return _json({"error": str(exc)}, 400)
        return _json(self._options.public())

    async def _get_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats.snapshot())

    async def _get_deployments(self, request: web.Request) -> web.Response:
        return _json(self.catalog.describe())

    async def _get_requests(self, request: web.Request) -> web.Response:
        return _json({"requests": list(self.received)})


def _json(doc: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")


async def start_emulator(options: EmulatorOptions | None = None, host: str = "127.0.0.1", port: int = 0) -> Emulator:
    """Start an emulator on ``host:port`` (0 = a free port) and return it, already listening."""
    emulator = Emulator(options or EmulatorOptions())
    await emulator.start(host, port)
    return emulator
