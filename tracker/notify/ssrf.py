"""Where the tracker may send a webhook: the checks against server-side request forgery.

A webhook URL comes from whoever may publish a `created` event, so the tracker must not
become their way into its own network (a cloud metadata server, an admin port on
loopback, a database on a private address). The rules, in order:

1. `https` only, unless `allow_http`; no credentials in the URL.
2. With an allow-list, the host must be on it: an exact name, or `*.suffix` for any name
   under `suffix` (not `suffix` itself).
3. The name is resolved, then EVERY address it resolves to is checked: loopback,
   private, link-local (169.254.169.254, the metadata server, among them), shared
   (100.64/10), multicast, reserved, unspecified and documentation ranges are refused,
   also when hidden in an IPv6 form (IPv4-mapped, NAT64, 6to4, Teredo), unless
   `allow_private`.
4. The connection goes to the checked address itself, never through a second lookup
   (which a DNS-rebinding attacker would answer differently); the Host header and TLS
   (SNI and certificate check) still use the name.

A refusal is `Forbidden`, which the outbox treats as permanent: retrying cannot help.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Final

import httpx

from tracker.errors import clip
from tracker.notify.outbox import Permanent

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL: Final = ipaddress.ip_network("64:ff9b:1::/48")


class Forbidden(Permanent):
    """The target breaks the webhook policy; never retried."""


@dataclass(frozen=True)
class TargetPolicy:
    """What webhook targets are allowed (the `--webhook-allow-*` flags)."""

    allow_http: bool = False
    allow_private: bool = False
    allow_hosts: tuple[str, ...] = ()  # exact names or "*.suffix"; empty: any host

    def host_allowed(self, host: str) -> bool:
        if not self.allow_hosts:
            return True
        host = _norm(host)
        for entry in self.allow_hosts:
            pattern = _norm(entry)
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False


def _norm(host: str) -> str:
    return host.strip().lower().rstrip(".").strip("[]")


def _embedded(address: IPAddress) -> list[IPAddress]:
    """The address and every IPv4 address an IPv6 form carries (each is checked)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return [address.ipv4_mapped]  # only another spelling of the IPv4 address
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
        if address in _NAT64 or address in _NAT64_LOCAL:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        # IPv4-compatible (::a.b.c.d, deprecated) also reaches IPv4 on some stacks.
        if int(address) >> 32 == 0 and int(address) > 1:
            found.append(ipaddress.IPv4Address(int(address)))
    return found


def forbidden_address(address: IPAddress) -> str:
    """Why `address` may not be a webhook target without `allow_private` ("" if it may).
    An IPv4 address inside an IPv6 form is named first: it is where the packets go."""
    for each in reversed(_embedded(address)):
        for what, hit in (
            ("loopback", each.is_loopback),
            ("unspecified", each.is_unspecified),
            ("link-local", each.is_link_local),
            ("multicast", each.is_multicast),
            ("private", each.is_private),
            ("reserved", each.is_reserved),
            ("not globally routable", not each.is_global),
        ):
            if hit:
                return what if each == address else f"{what} ({each} inside {address})"
    return ""


@dataclass(frozen=True)
class Target:
    """A checked target: connect to `address`, speak to `host`."""

    url: httpx.URL  # the URL to request: the checked address in place of the name
    host: str  # the name, for the Host header and TLS
    host_header: str
    address: str


def check_url(url: str, policy: TargetPolicy) -> httpx.URL:
    """Rules 1 and 2 (no I/O); the parsed URL."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise Forbidden(f"webhook url is not a URL: {clip(exc)}") from None
    if parsed.scheme not in ("https", "http"):
        raise Forbidden(f"webhook url scheme {clip(parsed.scheme, 20)!r}: only https")
    if parsed.scheme == "http" and not policy.allow_http:
        raise Forbidden("webhook url is http://; only https:// (unless --webhook-allow-http)")
    if parsed.userinfo:
        raise Forbidden("webhook url must not hold credentials (user:password@)")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise Forbidden("webhook url has no host")
    if not policy.host_allowed(host):
        raise Forbidden(f"webhook host {clip(host, 100)!r} is not on --webhook-allow-host")
    return parsed


async def resolve(url: str, policy: TargetPolicy) -> Target:
    """All four rules: the target to connect to, or `Forbidden`."""
    parsed = check_url(url, policy)
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            # Not permanent: a name that does not resolve now may resolve later.
            raise OSError(f"cannot resolve webhook host {clip(host, 100)!r}: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses:
            raise OSError(f"webhook host {clip(host, 100)!r} resolves to no address")
    if not policy.allow_private:
        for address in addresses:
            why = forbidden_address(address)
            if why:
                raise Forbidden(
                    f"webhook host {clip(host, 100)!r} resolves to {address}, {why}"
                    " (refused unless --webhook-allow-private)"
                )
    chosen = str(addresses[0])
    netloc = parsed.netloc.decode("ascii")
    return Target(url=parsed.copy_with(host=chosen), host=host, host_header=netloc, address=chosen)


__all__ = ["Forbidden", "Target", "TargetPolicy", "check_url", "forbidden_address", "resolve"]
