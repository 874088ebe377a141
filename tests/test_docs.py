"""The README's configuration table and commands match the code."""

from __future__ import annotations

import re
from pathlib import Path

from tracker.config import SETTINGS, Config

ROOT = Path(__file__).resolve().parent.parent
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
