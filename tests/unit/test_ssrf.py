"""The SSRF rules for webhook targets: schemes, the allow-list, every forbidden address.

Addresses are literals or `localhost` (resolved from the machine's own hosts file), so
nothing here leaves the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from tracker.notify.ssrf import Forbidden, TargetPolicy, check_url, forbidden_address, resolve

OPEN = TargetPolicy()

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("169.254.169.254", "link-local"),  # the cloud metadata server
    ("fe80::1", "link-local"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("100.64.0.1", "not globally routable"),  # carrier-grade NAT
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "private"),  # 240/4, reserved: Python counts it private
    ("192.0.2.1", "private"),  # documentation
    ("::ffff:127.0.0.1", "loopback (127.0.0.1 inside ::ffff:7f00:1)"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ("::127.0.0.1", ""),  # IPv4-compatible, checked as what it carries
]


@pytest.mark.parametrize(("text", "why"), REFUSED)
def test_forbidden_addresses(text: str, why: str) -> None:
    found = forbidden_address(ipaddress.ip_address(text))
    assert found, text
    assert why in found


@pytest.mark.parametrize("text", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(text: str) -> None:
    assert forbidden_address(ipaddress.ip_address(text)) == ""


@pytest.mark.parametrize(
    ("url", "policy", "why"),
    [
        ("http://example.com/", OPEN, "only https"),
        ("ftp://example.com/", OPEN, "only https"),
        ("file:///etc/passwd", OPEN, "only https"),
        ("https://u:p@example.com/", OPEN, "credentials"),
        ("https://example.com/", TargetPolicy(allow_hosts=("hooks.example.com",)), "allow-host"),
        ("https://example.com/", TargetPolicy(allow_hosts=("*.example.com",)), "allow-host"),
        ("https://evil.com/x", TargetPolicy(allow_hosts=("*.example.com",)), "allow-host"),
        ("https://example.com.evil.com/", TargetPolicy(allow_hosts=("example.com",)), "allow-host"),
        ("https://notexample.com/", TargetPolicy(allow_hosts=("*.example.com",)), "allow-host"),
        ("not a url at all", OPEN, "only https"),
    ],
)
def test_urls_refused_before_any_lookup(url: str, policy: TargetPolicy, why: str) -> None:
    with pytest.raises(Forbidden, match=why):
        check_url(url, policy)


def test_the_allow_list_takes_exact_names_and_suffixes() -> None:
    policy = TargetPolicy(allow_hosts=("hooks.example.com", "*.corp.example"))
    assert policy.host_allowed("HOOKS.example.com.")
    assert policy.host_allowed("a.corp.example") and policy.host_allowed("a.b.corp.example")
    assert not policy.host_allowed("corp.example")
    assert not policy.host_allowed("xcorp.example")
    assert TargetPolicy().host_allowed("anything.example")


def run(url: str, policy: TargetPolicy) -> object:
    return asyncio.run(resolve(url, policy))


def test_a_name_is_resolved_then_checked() -> None:
    with pytest.raises(Forbidden, match=r"'localhost' resolves to .*loopback"):
        run("https://localhost:8443/x", OPEN)


def test_the_request_goes_to_the_checked_address_with_the_name_as_host() -> None:
    target = asyncio.run(resolve("https://localhost:8443/x?y=1", TargetPolicy(allow_private=True)))
    assert target.address in ("127.0.0.1", "::1")
    assert target.url.host == target.address  # no second lookup: the address itself
    assert target.url.port == 8443 and target.url.raw_path == b"/x?y=1"
    assert target.host == "localhost" and target.host_header == "localhost:8443"


def test_literals_need_no_lookup_and_public_ones_pass() -> None:
    target = asyncio.run(resolve("https://8.8.8.8/hook", OPEN))
    assert target.address == "8.8.8.8" and target.host_header == "8.8.8.8"
    v6 = asyncio.run(resolve("https://[2001:4860:4860::8888]:9/h", OPEN))
    assert v6.address == "2001:4860:4860::8888" and v6.host_header == "[2001:4860:4860::8888]:9"
    with pytest.raises(Forbidden, match="link-local"):
        run("https://169.254.169.254/latest/meta-data/", OPEN)
    with pytest.raises(Forbidden, match="loopback"):
        run("https://[::ffff:7f00:1]/", OPEN)
