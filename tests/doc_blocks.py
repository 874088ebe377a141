"""The command blocks the docs show, by the marker line above each.

Every ```sh block in the repository's Markdown is preceded by a marker:

    <!-- doc-test: cloud -->   it needs a Google Cloud project (nothing here can run it)
    <!-- doc-test: ci -->      it is the test command itself (`.ci/run` runs it)
    <!-- doc-test: ID -->      a test reads it with `doc_block(DOC, ID)` and runs it

tests/unit/test_docs.py checks that every block has one and that every ID is read by a
test, so a command added to the docs without a test fails there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import ROOT

# The Markdown whose commands are checked: the README, docs/, and the READMEs next to code.
DOCS = (
    "README.md",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
    "schemas/README.md",
    "examples/README.md",
    "deploy/README.md",
    "tests/README.md",
)
NOT_RUN = {"cloud", "ci"}
_FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.M | re.S)
_MARKER = re.compile(r"<!-- doc-test: ([a-z0-9-]+) -->\n\Z")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    marker: str | None
    text: str


def blocks(doc: str) -> list[Block]:
    """Every fenced block of `doc` (a path relative to the repository), in order."""
    text = (ROOT / doc).read_text()
    out = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()]
        marker = _MARKER.search(before)
        out.append(
            Block(
                doc=doc,
                line=before.count("\n") + 1,
                lang=match.group(1),
                marker=marker.group(1) if marker else None,
                text=match.group(2),
            )
        )
    return out


def command_blocks(doc: str) -> list[Block]:
    return [b for b in blocks(doc) if b.lang == "sh"]


def doc_block(doc: str, marker: str) -> str:
    """The one block of `doc` marked `<!-- doc-test: MARKER -->`."""
    found = [b.text for b in blocks(doc) if b.marker == marker]
    assert len(found) == 1, f"{doc}: {len(found)} blocks marked {marker!r}"
    return found[0]


def venv_path() -> str:
    """PATH with this interpreter's bin first: `tracker` and `python` are the project's."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def run_sh(
    script: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a doc block in bash, stopping at the first failing command."""
    full = {
        k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "PUBSUB_", "SPANNER_"))
    }
    full.update(PATH=venv_path(), PYTHONUNBUFFERED="1")
    full.update(env or {})
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def on_ports(text: str, http: int, grpc: int | None = None) -> str:
    """A block's text with the documented ports (8080 HTTP, 8081 gRPC) swapped for a test's."""
    text = re.sub(r"\b8080\b", str(http), text)
    return re.sub(r"\b8081\b", str(grpc), text) if grpc is not None else text
