"""What a DataRobot request carries besides its body: the ``Authorization`` header and the query
parameters the seed lists after the explanation ones (``explanationNumTopClasses``,
``explanationClassNames``, ``predictionWarningEnabled``, ``excludeAdjustedPredictions``)."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from gateway.backends.errors import BackendSettingsError


def extra_query(explaining: bool, top_classes: int | None, class_names: Sequence[str],
                 warnings: bool | None, exclude_adjusted: bool | None) -> list[tuple[str, str]]:
    """The parameters the seed names after the explanation ones, spelled as it spells them.

    The class selectors only matter to explanations, so they travel with ``maxExplanations``; the
    two flags are about predictions and travel always, as ``true``/``false``. Class names go one
    ``explanationClassNames`` per name, their UTF-8 bytes percent-encoded (``with_query(strict)``).
    """
    params: list[tuple[str, str]] = []
    if explaining:
        if top_classes is not None:
            params.append(("explanationNumTopClasses", str(top_classes)))
        params.extend(("explanationClassNames", name) for name in class_names)
    if warnings is not None:
        params.append(("predictionWarningEnabled", "true" if warnings else "false"))
    if exclude_adjusted is not None:
        params.append(("excludeAdjustedPredictions", "true" if exclude_adjusted else "false"))
    return params


def authorization(scheme: str, token: str, username: str | None) -> str:
    if scheme == "bearer":
        return f"Bearer {token}"
    if scheme == "token":
        return f"Token {token}"
    if scheme == "basic":
        if not username:
            raise BackendSettingsError("auth_scheme basic needs a username")
        return "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode("ascii")
    raise BackendSettingsError(f"auth_scheme must be bearer, token or basic, not {scheme!r}")
