"""Webhook settings: secrets (file, environment, rotation), subscriptions, one-line errors."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.cli_kit import assert_one_error_line, invoke
from tests.webhook_kit import NEXT_SECRET, OTHER_SECRET, SECRET
from tracker import filtering
from tracker.config import Config
from tracker.errors import ConfigError
from tracker.notices import CANCEL, DONE, RESUME, Notice
from tracker.notify.ssrf import TargetPolicy
from tracker.notify.webhooks import read_secrets, read_subscriptions, sign
from tracker.server import config_sinks


def test_secrets_come_from_the_file_then_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text(f"# current first\n{SECRET}\n\n")
    assert read_secrets(str(path), [NEXT_SECRET]) == (SECRET, NEXT_SECRET)
    assert read_secrets("", [SECRET, NEXT_SECRET]) == (SECRET, NEXT_SECRET)


SHORT = "whsec_" + base64.b64encode(b"too short").decode()


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ([SECRET, NEXT_SECRET, OTHER_SECRET], "at most 2"),
        (["plain-password"], "whsec_<base64>"),
        (["whsec_not*base64!"], "not valid base64"),
        ([SHORT], "9 bytes; use 24..64"),
    ],
)
def test_bad_secrets_are_one_clear_line(values: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        read_secrets("", values)


def test_the_signature_header_holds_one_signature_per_secret() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    one = sign([SECRET], "msg_1", when, b"{}")
    two = sign([SECRET, NEXT_SECRET], "msg_1", when, b"{}")
    assert one.startswith("v1,") and " " not in one
    assert two.split(" ")[0] == one and two.split(" ")[1] != one


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "subscriptions.toml"
    path.write_text(text)
    return str(path)


def test_subscriptions_parse_with_their_filter_and_kinds(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[subscription]]
name = "billing"
url = "https://hooks.example.com/tracker"
filter = 'labels.team = "billing" AND done = true'
notices = ["done", "cancel"]

[[subscription]]
name = "everything"
url = "https://hooks.example.com/all"
""",
    )
    billing, everything = read_subscriptions(path, TargetPolicy())
    assert billing.name == "billing" and billing.kinds == frozenset({DONE, CANCEL})
    assert billing.filter == filtering.parse('labels.team = "billing" AND done = true')
    assert everything.filter is None and everything.kinds == frozenset({DONE, CANCEL, RESUME})
    assert billing.target == "subscription:billing"
    now = datetime.now(UTC)
    row = filtering.Row("operations/x", True, "export", "", {"team": "billing"}, now, now)
    assert billing.wants(Notice(kind=DONE), row) and not billing.wants(Notice(kind=RESUME), row)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("[[subscription]]\nurl = 'https://a.example/'\n", "name must be"),
        ("[[subscription]]\nname = 'a'\n", "url is required"),
        ("[[subscription]]\nname = 'a'\nurl = 'http://a.example/'\n", "only https"),
        (
            "[[subscription]]\nname = 'a'\nurl = 'https://a.example/'\nfilter = 'colour = 1'\n",
            "unknown field",
        ),
        (
            "[[subscription]]\nname = 'a'\nurl = 'https://a.example/'\nnotices = ['finished']\n",
            "notices must be a list of done, cancel, resume",
        ),
        (
            "[[subscription]]\nname = 'a'\nurl = 'https://a.example/'\n" * 2,
            "two subscriptions named 'a'",
        ),
        ("[[subscription]]\nname = 'a'\nurl = 'https://a.example/'\ncolour = 1\n", "colour"),
        ("[hooks]\n", "use [[subscription]]"),
        ("not toml =", "cannot read it"),
    ],
)
def test_a_bad_subscriptions_file_is_one_clear_line(tmp_path: Path, body: str, says: str) -> None:
    with pytest.raises(ConfigError, match="--webhook-subscriptions") as raised:
        read_subscriptions(write(tmp_path, body), TargetPolicy())
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_a_subscription_off_the_allow_list_is_refused_at_start_up(tmp_path: Path) -> None:
    path = write(tmp_path, "[[subscription]]\nname = 'a'\nurl = 'https://a.example/'\n")
    config = Config(
        webhook_secrets=(SECRET,), webhook_subscriptions=path, webhook_allow_host=("b.example",)
    )
    with pytest.raises(ConfigError, match="not on --webhook-allow-host"):
        config.validate()


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"webhook_allow_http": True}, "--webhook-allow-http: webhooks are off"),
        ({"webhook_subscriptions": "s.toml"}, "--webhook-subscriptions: webhooks are off"),
        ({"webhook_secrets": (SECRET,), "webhook_timeout_seconds": 0}, "must be positive"),
        ({"webhook_secrets": (SECRET,), "webhook_allow_host": ("a b",)}, "not a host name"),
        ({"webhook_secrets": ("nope",)}, "TRACKER_WEBHOOK_SECRETS: secret 1"),
        ({"webhook_secret_file": "/no/such/file"}, "--webhook-secret-file: cannot read"),
    ],
)
def test_bad_webhook_settings_stop_start_up(settings: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Config(**settings).validate()  # type: ignore[arg-type]


def test_the_secret_turns_webhooks_on_and_the_sink_is_configured(tmp_path: Path) -> None:
    assert config_sinks(Config()) == []
    (sink,) = config_sinks(Config(webhook_secrets=(SECRET, NEXT_SECRET), webhook_allow_http=True))
    assert sink.targets and sink.name == "webhook"
    assert "whsec" not in repr(Config(webhook_secrets=(SECRET,)))  # never logged


def test_serve_takes_the_secrets_from_the_environment_only() -> None:
    result = invoke(["serve"], env={"TRACKER_WEBHOOK_SECRETS": "whsec_short"})
    assert result.exit_code == 2
    assert "TRACKER_WEBHOOK_SECRETS" in assert_one_error_line(result.output)
    result = invoke(["serve", "--webhook-secrets", SECRET])
    assert result.exit_code == 2 and "No such option" in result.output
