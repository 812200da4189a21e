"""The README is a short way in: the two commands first, at most 250 lines, and from its links a new
user reaches, in one click, how to point the gateway at a broker with SASL/SSL, how exactly-once
works and what it costs, what each metric means, and what to do when start-up fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
LINK = re.compile(r"\[[^\]]+\]\(([^)\s]+)\)")


def heading_ids(page: Path) -> set[str]:
    """The ids MkDocs gives the page's headings (Python-Markdown's toc slugs)."""
    ids = set()
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if match:
            text = re.sub(r"[^\w\s-]", "", match.group(1).replace("`", "").lower())
            ids.add(re.sub(r"[\s-]+", "-", text.strip()))
    return ids


def test_the_two_commands_come_first() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.S)
    assert first_block is not None
    assert [line.split()[:2] for line in first_block.group(1).splitlines()] == [["make", "demo"], ["make", "test"]]


def test_the_readme_is_short() -> None:
    assert len(README.splitlines()) <= 250


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, flags=re.M)


@pytest.mark.parametrize("target", sorted(set(LINK.findall(README))))
def test_every_link_resolves(target: str) -> None:
    if re.match(r"^[a-z]+://", target):
        return
    path, _, anchor = target.partition("#")
    page = ROOT / path if path else ROOT / "README.md"
    assert page.exists(), f"README links to {path}, which does not exist"
    if anchor:
        assert anchor in heading_ids(page), f"README links to {target}: {path} has no heading #{anchor}"


@pytest.mark.parametrize("question, target", [
    ("point the gateway at a broker with SASL/SSL", "docs/getting-started.md#your-own-broker-saslssl"),
    ("how exactly-once works and what it costs", "docs/concepts/delivery.md"),
    ("what each metric means", "docs/reference/metrics.md"),
    ("what to do when start-up fails", "docs/operations/troubleshooting.md"),
])
def test_the_first_questions_are_one_click_away(question: str, target: str) -> None:
    assert f"]({target})" in README or f"]({target}#" in README, question


def test_the_one_click_pages_answer_them() -> None:
    delivery = (ROOT / "docs/concepts/delivery.md").read_text(encoding="utf-8")
    assert {"exactly-once", "what-it-costs"} <= heading_ids(ROOT / "docs/concepts/delivery.md")
    assert "read_committed" in delivery
    troubleshooting = (ROOT / "docs/operations/troubleshooting.md").read_text(encoding="utf-8")
    assert "invalid config" in troubleshooting and "authentication failed" in troubleshooting
    started = (ROOT / "docs/getting-started.md").read_text(encoding="utf-8")
    assert "SASL_SSL" in started and "Confluent Cloud" in started
