"""Step 2: the gateway config the demo writes, and the gateway running in-process with it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import yaml
from prometheus_client import CollectorRegistry

from gateway.commands.demo.options import (
    COMPARISONS_TOPIC,
    DATAROBOT_MAX_EXPLANATIONS,
    DEAD_LETTER_TOPIC,
    GATEWAY_START_S,
    HOST,
    INPUT_TOPIC,
    PIPELINE,
    PREDICTIONS_TOPIC,
    SESSION_TIMEOUT_MS,
    SHUTDOWN_TIMEOUT_S,
    DemoError,
    DemoOptions,
)
from gateway.commands.demo.sample_data import CHURN_FEATURES
from gateway.commands.demo.waits import describe

if TYPE_CHECKING:  # imported when the demo runs (see _load_config and start)
    from gateway.config import Config
    from gateway.runtime.admin import AdminServer


def demo_config(options: DemoOptions, bootstrap: str, backend_url: str, admin_port: int,
                challenger_url: str | None = None) -> dict[str, object]:
    """The config the demo runs, in the shape of PRODUCT.md §3; defaults are left out on purpose,
    so the file shows what a deployment has to decide."""
    backend: dict[str, object] = {
        "type": options.backend,
        "url": backend_url,
        # The emulator wants a token (any will do); the reference shows how a real secret is passed in.
        "token": "${SCORING_GATEWAY_DEMO_TOKEN:-demo-token}",
    }
    if options.backend == "qlik":
        backend["include_shap"] = options.explanations == "shap"
        backend["include_not_predicted_reason"] = True
    else:
        explain = options.explanations != "off"
        backend["max_explanations"] = DATAROBOT_MAX_EXPLANATIONS if explain else 0
        backend["explanation_algorithm"] = options.explanations if explain else None
    pipeline: dict[str, object] = {
        "name": PIPELINE,
        "input_topic": INPUT_TOPIC,
        "features": list(CHURN_FEATURES),
        "backend": backend,
        "outputs": {"predictions": PREDICTIONS_TOPIC, "dead_letter": DEAD_LETTER_TOPIC},
    }
    if challenger_url is not None:
        pipeline["challenger"] = {"backend": {"type": options.backend, "url": challenger_url,
                                              "token": "${SCORING_GATEWAY_DEMO_TOKEN:-demo-token}"}}
        pipeline["outputs"] = {"predictions": PREDICTIONS_TOPIC, "dead_letter": DEAD_LETTER_TOPIC,
                               "comparisons": COMPARISONS_TOPIC}
    return {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": "scoring-gateway-demo",
                  "client_id": "scoring-gateway-demo", "session_timeout_ms": SESSION_TIMEOUT_MS,
                  # tansu answers InitProducerId with an error: no idempotent producer on it.
                  "enable_idempotence": False},
        "admin": {"host": HOST, "port": admin_port},
        "shutdown_timeout_s": SHUTDOWN_TIMEOUT_S,
        "pipelines": [pipeline],
    }


def write_config(path: Path, doc: Mapping[str, object]) -> None:
    header = ("# Written by `scoring-gateway demo`. Run it again against the same broker and backend with\n"
              "#   scoring-gateway run --config " + str(path) + "\n")
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def _load_config(path: Path) -> Config:
    """The written file itself is what runs, so the file a user reads is the file that worked."""
    from gateway.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise DemoError(f"the generated config is invalid: {describe(exc)}") from None


class EmbeddedGateway:
    """``gateway.app.serve`` as a task of this event loop: started, stopped via its stop event, awaited."""

    def __init__(self, config: Config, registry: CollectorRegistry) -> None:
        self.config = config
        self.registry = registry
        self.admin_port = 0
        self.clean = True
        self._stop = asyncio.Event()
        self._task: asyncio.Task[int] | None = None

    async def start(self) -> None:
        from gateway.app import serve

        ready: asyncio.Future[AdminServer] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(serve(self.config, self._stop, registry=self.registry, ready=ready,
                                               handle_signals=False))
        either: set[asyncio.Future[AdminServer] | asyncio.Task[int]] = {ready, self._task}
        done, _ = await asyncio.wait(either, timeout=GATEWAY_START_S, return_when=asyncio.FIRST_COMPLETED)
        if ready in done:
            self.admin_port = ready.result().port
            return
        failure = self.failure()
        await self.stop()
        raise DemoError(f"cannot start the gateway: {failure or f'not started within {GATEWAY_START_S:.0f}s'}")

    def failure(self) -> str | None:
        """Why the gateway ended early, or None while it runs."""
        task = self._task
        if task is None or not task.done():
            return None
        if task.cancelled():
            return "it was cancelled"
        exc = task.exception()
        return describe(exc) if exc is not None else "it stopped by itself"

    async def readiness(self, session: aiohttp.ClientSession) -> tuple[bool, list[str]]:
        """``/readyz`` as the orchestrator sees it: ready, and the reasons when not."""
        url = f"http://{HOST}:{self.admin_port}/readyz"
        try:
            async with session.get(url) as response:
                body = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            return False, [f"/readyz did not answer: {describe(exc)}"]
        reasons = [r for p in body.get("pipelines", {}).values() for r in p.get("reasons", [])]
        return response.status == 200, reasons

    async def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                failure = self.failure()
                if failure:
                    raise DemoError(f"the gateway failed: {failure}")
                ready, reasons = await self.readiness(session)
                if ready:
                    return
                if time.monotonic() > deadline:
                    raise DemoError(f"the gateway was not ready within {timeout_s:.0f}s: "
                                    + ("; ".join(reasons) or "no reason given"))
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """Drain via the stop event; cancel only if the drain overruns its own timeout."""
        task = self._task
        if task is None:
            return
        self._stop.set()
        limit = float(self.config.shutdown_timeout_s) + 10.0
        done, _ = await asyncio.wait({task}, timeout=limit)
        if not done:
            self.clean = False
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif not task.cancelled() and task.exception() is not None:
            self.clean = False
