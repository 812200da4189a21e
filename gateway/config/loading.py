"""Reading a configuration: YAML text (or an already-loaded mapping) in, a :class:`Config` out."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from .errors import ConfigError, describe, lines
from .models import Config
from .substitution import Resolver


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which YAML would otherwise silently resolve to the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, object]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def read_yaml(text: str, source: str) -> object:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        # Only the position and the problem: the default rendering quotes the offending line,
        # which may hold a secret.
        mark = exc.problem_mark
        where = f"{source}: line {mark.line + 1}, column {mark.column + 1}" if mark else source
        context = f" ({exc.context})" if exc.context else ""
        raise ConfigError([f"{where}: invalid YAML: {exc.problem}{context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {type(exc).__name__}"]) from None


def parse_config(text_or_mapping: str | Mapping[str, object], environ: Mapping[str, str], *,
                 base_dir: Path | None = None, source: str = "<config>") -> Config:
    """Validate a YAML document (or already-loaded mapping) into a :class:`Config`.

    ``environ`` supplies ``${VAR}`` values; ``base_dir`` anchors relative ``${file:...}`` paths
    (default: the working directory); ``source`` names the document in YAML syntax errors.
    Raises :class:`ConfigError` listing every problem found.
    """
    raw = read_yaml(text_or_mapping, source) if isinstance(text_or_mapping, str) else text_or_mapping
    if raw is None:
        raise ConfigError([f"{source}: the configuration is empty"])
    if not isinstance(raw, Mapping):
        raise ConfigError([f"(top level): expected a mapping at the top of the document, got {describe(raw)}"])
    resolver = Resolver(environ, base_dir or Path.cwd())
    try:
        return Config.model_validate(raw, context=resolver)
    except ValidationError as exc:
        raise ConfigError(resolver.scrub(lines(exc))) from None


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; a missing or unreadable file is a :class:`ConfigError` too."""
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"{file_path}: cannot read the config file: {reason}"]) from None
    return parse_config(text, os.environ if environ is None else environ,
                        base_dir=file_path.resolve().parent, source=str(file_path))
