"""The one rule that keeps secrets out of what the gateway writes: logs, error lines, probe results.

:class:`Redactor` masks, as ``***``:

* **known secrets**: the values the configuration marks secret and every ``${file:...}`` content,
  wherever they appear, longest first (so a secret that contains another is masked whole). Values
  shorter than :data:`MIN_SECRET_LENGTH` are left alone: masking every "ab" would garble the text,
  and no real credential is that short;
* **credential shapes** (:meth:`Redactor.text` only): the value after a name that says it holds a
  secret (``Authorization: …``, ``'DataRobot-Key': '…'``, ``sasl_password=…``), a ``Bearer``
  credential, and a ``Token``/``Basic`` one that looks like a credential (8+ characters with a digit,
  since "token" and "basic" are ordinary words too). These catch what no configuration names: the
  headers a codec builds, credentials a vendor echoes back.

Configuration error lines use :meth:`Redactor.known` alone: they name keys such as ``token:`` as
their subject, and the shape rule would mask the words that follow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "***"
MIN_SECRET_LENGTH = 4

_SECRET_NAME = r"[\w-]{0,40}?(?:authorization|datarobot[_-]key|api[_-]?key|password|passwd|secret|token)"
_SECRET_KEY = re.compile(_SECRET_NAME, re.IGNORECASE)
_NAME_THEN_VALUE = r"\b" + _SECRET_NAME + r"\b['\"]?\s*[:=]\s*['\"]?"
# `Authorization: Bearer x`, `'DataRobot-Key': 'x'`, `"token": "x"`, `sasl_password=x`: keep the name
# (and the auth scheme), mask the value. A value that is itself `name=...` is not taken for the secret
# ("Invalid API token: Authorization=Bearer x" masks x, not the word Authorization).
_NAMED_VALUE = re.compile(
    r"(" + _NAME_THEN_VALUE + r")((?:(?:bearer|token|basic)\s+)?)(?!" + _NAME_THEN_VALUE + r")([^\s'\",;&}\]]+)",
    re.IGNORECASE)
_BEARER = re.compile(r"\b(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_TOKEN_OR_BASIC = re.compile(
    r"\b((?:token|basic)\s+)(?=[A-Za-z._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)


def is_secret_name(key: object) -> bool:
    """Whether a field or header called ``key`` holds a secret (``token``, ``sasl_password``, …)."""
    return isinstance(key, str) and _SECRET_KEY.fullmatch(key) is not None


class Redactor:
    """Masks secrets in text and in (nested) field values."""

    def __init__(self, secrets: Iterable[str]) -> None:
        literal = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, literal))) if literal else None

    def known(self, text: str) -> str:
        """``text`` with the known secrets masked."""
        return self._literal.sub(MASK, text) if self._literal is not None else text

    def text(self, text: str) -> str:
        """``text`` with the known secrets and every credential shape masked."""
        text = _NAMED_VALUE.sub(_keep_name, self.known(text))
        text = _BEARER.sub(_keep_scheme, text)
        return _TOKEN_OR_BASIC.sub(_keep_scheme, text)

    def value(self, value: object) -> object:
        """Strings are scanned, mappings masked by key name too; numbers and the like pass as they are."""
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: MASK if is_secret_name(k) else self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.value(v) for v in value]
        return self.text(str(value))


def _keep_name(match: re.Match[str]) -> str:
    return match.group(1) + match.group(2) + MASK


def _keep_scheme(match: re.Match[str]) -> str:
    return match.group(1) + MASK
