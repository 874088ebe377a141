"""The README's configuration table and commands match the code; links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import click

from tests import doc_blocks
from tests.helpers import ROOT
from tracker.cli import cli
from tracker.config import SETTINGS, Config

README = (ROOT / "README.md").read_text()


def test_readme_config_table_lists_every_setting_with_its_env_and_default() -> None:
    rows = re.findall(r"^\| `(--[a-z-]+)` \| `(TRACKER_[A-Z_]+)` \|([^|]*)\|", README, re.M)
    assert [(flag, env) for flag, env, _ in rows] == [(s.flag, s.envvar) for s in SETTINGS]
    for (_, _, default), setting in zip(rows, SETTINGS, strict=True):
        shown = default.strip().strip("`")
        if setting.type is bool:
            assert shown == ("on" if setting.default else "off")
        elif setting.type is tuple:
            assert shown == " ".join(setting.default), setting.flag
        else:
            assert shown == str(setting.default).removesuffix(".0"), setting.flag


def test_readme_starts_with_the_two_commands_and_they_exist() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["./scripts/run", "./scripts/test"]
    for command in commands:
        path = ROOT / command
        assert path.is_file() and path.stat().st_mode & 0o111, command
    assert "./scripts/test" in (ROOT / ".ci/run").read_text()


def test_defaults_serve_a_laptop() -> None:
    config = Config()
    assert (config.http_host, config.http_port) == ("127.0.0.1", 8080)
    assert config.grpc_host == "127.0.0.1"
    assert config.db == "tracker.db"


# ---- relative links --------------------------------------------------------------------

_SKIP = {".venv", ".tools", "node_modules", ".git", "tracker.egg-info", ".pytest_cache"}
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")


def _markdown_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.md") if not _SKIP & set(p.relative_to(ROOT).parts[:-1]))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lowercase, punctuation dropped, spaces to hyphens, -N for
    repeats."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", path.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_relative_links_resolve() -> None:
    files = _markdown_files()
    assert ROOT / "docs" / "auth.md" in files and ROOT / "README.md" in files
    broken = []
    for path in files:
        for target in _LINK.findall(_FENCE.sub("", path.read_text())):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT)}: {target}"
            if not resolved.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{where} (no such heading)")
    assert not broken, broken


def test_auth_doc_is_linked_from_the_readme_and_the_deploy_guides() -> None:
    what_you_get = README.split("## What you get", 1)[1].split("\n## ", 1)[0]
    assert "(docs/auth.md)" in what_you_get
    for doc in ("gcp.md", "deploy.md"):
        assert "](auth.md" in (ROOT / "docs" / doc).read_text(), doc


def _commands() -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []

    def walk(command: click.Command, path: str) -> None:
        found.append((path, command))
        if isinstance(command, click.Group):
            context = click.Context(command)
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                assert sub is not None, f"{path} {name} does not load"
                walk(sub, f"{path} {name}")

    walk(cli, "tracker")
    return found


def test_every_flag_of_every_command_is_documented() -> None:
    """docs/cli.md (or the README's configuration table, for `tracker serve`) names every
    long option of every command; a `--no-x` twin counts when `--x` is named."""
    docs = (ROOT / "docs" / "cli.md").read_text() + README
    commands = _commands()
    assert {"tracker serve", "tracker publish", "tracker schema apply"} <= {p for p, _ in commands}
    missing = [
        f"{path} {flag}"
        for path, command in commands
        for param in command.params
        if isinstance(param, click.Option)
        for flag in param.opts
        if flag.startswith("--") and flag != "--help"
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", docs)
    ]
    assert not missing, missing


def test_every_command_block_is_run_by_a_test_or_marked_as_needing_a_cloud() -> None:
    """Each ```sh block carries a doc-test marker; each marker a test runs is read by one."""
    unmarked = [
        f"{b.doc}:{b.line}"
        for doc in doc_blocks.DOCS
        for b in doc_blocks.command_blocks(doc)
        if b.marker is None
    ]
    assert not unmarked, f"command blocks without a <!-- doc-test: ... --> marker: {unmarked}"
    tests_source = "\n".join(
        p.read_text() for p in (ROOT / "tests").rglob("*.py") if p.name != "doc_blocks.py"
    )
    unread = []
    for doc in doc_blocks.DOCS:
        run = [
            b.marker for b in doc_blocks.blocks(doc) if b.marker not in {None, *doc_blocks.NOT_RUN}
        ]
        assert len(run) == len(set(run)), f"{doc}: a marker used twice: {run}"
        unread += [
            f"{doc}: {marker}"
            for marker in run
            if f'doc_block("{doc}", "{marker}")' not in tests_source
        ]
    assert not unread, f"marked blocks no test reads with doc_block(DOC, MARKER): {unread}"


def test_every_doc_the_code_points_to_exists() -> None:
    """Help texts and errors name docs/*.md files: each must be in the repository."""
    named = {
        m
        for p in (ROOT / "tracker").rglob("*.py")
        for m in re.findall(r"(?<![\w/-])docs/[a-z-]+\.md", p.read_text())
    }
    assert "docs/cli.md" in named
    assert sorted(n for n in named if not (ROOT / n).is_file()) == []
