"""Reads the Dockerfile and .dockerignore the way `docker build` does, for the image tests."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper-case, e.g. "RUN"
    args: str     # the rest of the logical line, continuations joined


@dataclass(slots=True)
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.base}"
        return found[-1]

    def json_args(self, keyword: str) -> list[str]:
        """The exec (JSON array) form of the stage's last KEYWORD; the shell form is an error."""
        value = json.loads(self.last(keyword))
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), keyword
        return value


def logical_lines(text: str) -> list[str]:
    """Instructions with `\\` continuations joined; comment lines dropped, even inside a continuation."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current.strip())
    return lines


def parse_dockerfile(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    for line in logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


def final_stage(stages: list[Stage]) -> Stage:
    return stages[-1]


def healthcheck_command(stage: Stage) -> list[str]:
    """The exec-form command of the stage's HEALTHCHECK (its --options stripped)."""
    args = stage.last("HEALTHCHECK")
    _, _, command = args.partition("CMD ")
    value = json.loads(command)
    assert isinstance(value, list), "HEALTHCHECK CMD must be the exec form"
    return value


def flags(args: str) -> dict[str, str]:
    """The leading --name=value options of an instruction (COPY --from=build, RUN --mount=...)."""
    found: dict[str, str] = {}
    for word in args.split():
        if not word.startswith("--"):
            break
        name, _, value = word[2:].partition("=")
        found[name] = value
    return found


def copy_sources(args: str) -> list[str]:
    """Source paths of a COPY/ADD (exec or shell form), without its --flags and destination."""
    words = [w for w in args.split() if not w.startswith("--")]
    if words and words[0].startswith("["):
        words = json.loads(" ".join(words))
    return words[:-1]


class DockerIgnore:
    """.dockerignore semantics: Go-style globs with `**`, `!` exceptions, last match wins, and a
    path is excluded when a pattern matches it or any of its parent directories."""

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[re.Pattern[str], bool, str]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            self.patterns.append((re.compile(_glob_regex(pattern)), exclusion, pattern))

    def excluded(self, relative: str) -> bool:
        parents = relative.split("/")[:-1]
        result = False
        for regex, exclusion, _ in self.patterns:
            match = bool(regex.match(relative)) or any(
                regex.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if match:
                result = not exclusion
        return result

    def may_reinclude_below(self, directory: str) -> bool:
        return any(exclusion and text.startswith(directory + "/") for _, exclusion, text in self.patterns)

    def context(self, root: Path) -> set[str]:
        """Relative paths of the files `docker build ROOT` sends to the builder."""
        files: set[str] = set()
        for current, dirs, names in os.walk(root):
            base = os.path.relpath(current, root)
            prefix = "" if base == "." else base + "/"
            dirs[:] = [d for d in dirs
                       if not (self.excluded(prefix + d) and not self.may_reinclude_below(prefix + d))]
            files.update(prefix + n for n in names if not self.excluded(prefix + n))
        return files


def _glob_regex(pattern: str) -> str:
    """Translate a .dockerignore pattern the way moby's patternmatcher does."""
    out = "^"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1: i + 2] == "*":
                i += 1
                if pattern[i + 1: i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.find("]", i)
            out += pattern[i: end + 1]
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return out + "$"
