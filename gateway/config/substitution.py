"""``${VAR}``, ``${VAR:-default}``, ``${file:PATH}`` and ``$${`` inside a configuration's string values.

Substitution happens on values after the YAML is read, so a secret containing ``#``, ``:`` or quotes
cannot change the document's structure. A resolved string is a :class:`Substituted`, so that the key
it belongs to can convert it to its own type (``port: ${ADMIN_PORT:-9400}`` is the integer 9400):
see :func:`typed`. The :class:`Resolver` also remembers every secret it sees, so that no message
about the document echoes one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gateway.errors import SettingsError
from gateway.runtime.redaction import Redactor

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_NULL_WORDS = ("", "null", "~")


class Substituted(str):
    """A string produced by ``${...}`` substitution: it takes the type of the key it is the value of."""


class Unresolved(SettingsError):
    """A reference that cannot be resolved; the message says why and how to fix it."""


@dataclass(slots=True)
class Resolver:
    """Resolves the references of one document: ``environ`` for variables, ``base_dir`` for relative
    ``${file:...}`` paths; ``secrets`` collects secret values and file contents seen along the way."""

    environ: Mapping[str, str]
    base_dir: Path
    secrets: set[str] = field(default_factory=set)

    def resolve(self, value: object, *, secret: bool = False) -> object:
        """``value`` with its references resolved: a string, or each string of a list (whose items stay
        plain strings: only a whole value is converted to the key's type)."""
        if isinstance(value, list):
            return [str(item) if isinstance(item, Substituted) else item
                    for item in (self.resolve(item, secret=secret) for item in value)]
        if isinstance(value, str) and "${" in value:
            value = self.string(value)
        if secret and isinstance(value, str):
            self.secrets.add(str(value))
        return value

    def string(self, text: str) -> str:
        parts: list[str] = []
        substituted = False
        position = 0
        for match in _REFERENCE.finditer(text):
            parts.append(text[position:match.start()])
            position = match.end()
            if match.group(0) == "$${":
                parts.append("${")
                continue
            if match.group(1) is None:
                raise Unresolved("unterminated ${ (write $${ for a literal ${)")
            parts.append(self.reference(match.group(1)))
            substituted = True
        parts.append(text[position:])
        result = "".join(parts)
        return Substituted(result) if substituted else result

    def reference(self, body: str) -> str:
        if body.startswith("file:"):
            return self.secret_file(body.removeprefix("file:"))
        match = _VARIABLE.fullmatch(body)
        if not match:
            raise Unresolved("malformed reference ${...}: expected ${VAR}, ${VAR:-default} or ${file:PATH}")
        name, default = match.group(1), match.group(2)
        value = self.environ.get(name)
        if default is not None:
            return value or default
        if value is None:
            raise Unresolved(f"environment variable {name} is not set (set it, or write ${{{name}:-default}})")
        return value

    def secret_file(self, name: str) -> str:
        if not name.strip():
            raise Unresolved("${file:...} needs a path")
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise Unresolved(f"cannot read secret file {str(path)!r}: {reason}") from None
        self.secrets.add(value)
        return value

    def scrub(self, lines: list[str]) -> list[str]:
        """``lines`` with every secret seen masked (the known values only: see ``gateway.runtime.redaction``)."""
        redactor = Redactor(self.secrets)
        return [redactor.known(line) for line in lines]


def typed(value: object, *, nullable: bool, scalar: bool) -> object:
    """A substituted value as the key's type: null for an empty (or ``null``) result when the key may
    be null; read as a YAML scalar (``"9400"`` is 9400, ``"false"`` is false) when the key takes a
    number or a boolean; otherwise the plain string. Values written in the file are left alone."""
    if not isinstance(value, Substituted):
        return value
    text = str(value)
    if nullable and text.strip() in _NULL_WORDS:
        return None
    if not scalar:
        return text
    try:
        loaded = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        return text
    return loaded if loaded is None or isinstance(loaded, (bool, int, float, str)) else text
