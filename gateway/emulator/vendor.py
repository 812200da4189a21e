"""What each vendor's route set provides to the server, and the few helpers both share."""

from __future__ import annotations

import http
import math
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from gateway.emulator.settings import EmulatorOptions


@dataclass(slots=True)
class Answer:
    """A prediction route's response, with what the latency model and the stats need."""

    response: web.Response
    rows: int = 0
    explanations: str | None = None  # "shap" | "xemp" | None
    fault: str | None = None  # a fault kind for the stats ("crash"), when the answer is one
    disagreements: int | None = None  # a challenger deployment's rows its champion predicts otherwise


class Refusal(Exception):
    """A vendor error answer, raised from wherever the request turned out to be unusable."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class VendorApi(Protocol):
    route: str  # "qlik" | "datarobot": the route set that stats and the rate limit count by

    def unauthorized(self, request: web.Request, options: EmulatorOptions) -> web.Response | None: ...

    def rate_limited(self, wait_s: float) -> web.Response: ...

    def injected(self, status: int, options: EmulatorOptions) -> web.Response: ...

    def error(self, status: int, message: str) -> web.Response: ...

    async def predict(self, request: web.Request, options: EmulatorOptions) -> Answer: ...

    def finish(self, response: web.Response, elapsed_s: float) -> None: ...


def reason_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def whole_seconds(seconds: float) -> int:
    """A wait as ``Retry-After`` gives it: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds - 1e-9))


def wants_csv(accept: str) -> bool:
    """True when the client prefers ``text/csv`` to JSON (highest q wins, then the first listed)."""
    if "csv" not in accept:
        return False
    best_q, best_csv = -1.0, False
    for item in accept.split(","):
        media, *params = (part.strip().lower() for part in item.split(";"))
        if media == "text/csv":
            is_csv = True
        elif media in ("application/json", "text/json", "*/*", "application/*"):
            is_csv = False
        else:
            continue
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q > best_q:
            best_q, best_csv = q, is_csv
    return best_csv

