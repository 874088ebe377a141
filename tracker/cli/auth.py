"""The CLI's side of authentication: how client commands connect, what a refusal tells
the user to do, and `tracker auth` for the static tokens of `--auth-tokens-file`.

Every client command takes `--url`, `--token` and `--id-token-audience`; the
credentials themselves are made by `tracker.client.credentials.resolve`, exactly as the SDK
makes them, so a flag wins over TRACKER_TOKEN / TRACKER_ID_TOKEN_AUDIENCE and the two
kinds never mix.
"""

from __future__ import annotations

import functools
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

from tracker.client.credentials import ENV_ID_TOKEN_AUDIENCE, ENV_TOKEN, check_token
from tracker.constants import DEFAULT_URL
from tracker.errors import ConfigError, PermissionDenied, TrackerError, Unauthenticated, echo

if TYPE_CHECKING:
    from tracker.client import TrackerClient

F = TypeVar("F", bound=Callable[..., Any])

# 128 bits in token_urlsafe's alphabet; anything shorter is probably chosen by a person.
MIN_TOKEN_CHARS: Final = 22
NEW_TOKEN_BYTES: Final = 32
_NAME: Final = re.compile(r"[A-Za-z0-9._-]+")  # what StaticTokens.from_file accepts

SET_CREDENTIALS: Final = (
    f"set --token or {ENV_TOKEN} (or --id-token-audience or {ENV_ID_TOKEN_AUDIENCE}"
    " for a Google ID token)"
)


@dataclass(frozen=True)
class Connection:
    """Where a client command goes and what it proves on the way."""

    url: str
    token: str | None
    id_token_audience: str | None

    def client(self) -> TrackerClient:
        from tracker.client import TrackerClient  # late: `tracker auth` needs none of it

        return TrackerClient(self.url, token=self.token, id_token_audience=self.id_token_audience)


_OPTIONS: Final = (
    click.option(
        "--url",
        envvar="TRACKER_URL",
        default=DEFAULT_URL,
        show_default=True,
        show_envvar=True,
        help="Base URL of the tracker's HTTP server.",
    ),
    # No click envvar for these two: tracker.client.credentials reads the environment, so that a
    # flag of one kind wins over a variable of the other, as in the SDK.
    click.option(
        "--token",
        metavar="TOKEN",
        help=f"Bearer token to send (default: ${ENV_TOKEN}).",
    ),
    click.option(
        "--id-token-audience",
        metavar="AUDIENCE",
        help="Send a Google ID token for AUDIENCE from Application Default Credentials"
        f" (default: ${ENV_ID_TOKEN_AUDIENCE}).",
    ),
)


def client_options(func: F) -> F:
    """--url, --token and --id-token-audience, handed to the command as `connect`."""

    @functools.wraps(func)
    def command(
        *args: Any, url: str, token: str | None, id_token_audience: str | None, **kwargs: Any
    ) -> Any:
        return func(*args, connect=Connection(url, token, id_token_audience), **kwargs)

    wrapped: Any = command
    for option in reversed(_OPTIONS):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[no-any-return]


def refusal(exc: TrackerError) -> str:
    """The one error line for a 401/403 answer: what the tracker said, then what to do."""
    if isinstance(exc, Unauthenticated):
        if exc.error_reason == "CREDENTIALS_MISSING":
            return f"{exc.message}: {SET_CREDENTIALS}"
        return (
            f"{exc.message}: check the credentials (--token / {ENV_TOKEN}: a token whose"
            " digest is in the tracker's --auth-tokens-file; --id-token-audience /"
            f" {ENV_ID_TOKEN_AUDIENCE}: an audience the tracker's --auth-audience accepts)"
        )
    if isinstance(exc, PermissionDenied):
        permission = exc.metadata.get("permission", "the permission")
        return (
            f"{exc.message}: the tracker must grant {permission} to these credentials"
            " (tracker serve --grant PERMISSION=MEMBER or --auth-policy)"
        )
    return exc.message


# ---- tracker auth ----------------------------------------------------------------------


@click.group()
def auth() -> None:
    """Static bearer tokens for `tracker serve --auth-tokens-file`."""


@auth.command("hash-token")
@click.option(
    "--new",
    is_flag=True,
    help="Make a new random token (256 bits) instead of reading one; it is printed first.",
)
@click.option(
    "--name",
    help='Print the tokens-file line NAME = "sha256:..." instead of the digest alone.',
)
def hash_token(new: bool, name: str | None) -> None:
    """Print the sha256:... digest of a token, for the tracker's --auth-tokens-file.

    Reads the token from stdin (a prompt on a terminal), or makes one with --new and
    prints it on the first line, the digest on the second. Only the digest goes in the
    file; the token goes to the clients (--token, TRACKER_TOKEN).
    """
    from tracker.auth import token_digest  # late: the other commands need none of it

    if name is not None and not _NAME.fullmatch(name):
        raise ConfigError(f"--name: {echo(name)} is not a token name (letters, digits, . _ -)")
    if new:
        token = secrets.token_urlsafe(NEW_TOKEN_BYTES)
    else:
        stdin = sys.stdin
        text = click.prompt("Token", hide_input=True) if stdin.isatty() else stdin.read()
        if not text.strip():
            raise ConfigError("no token on stdin: pipe one in, or make one with --new")
        token = check_token(text)
        if len(token) < MIN_TOKEN_CHARS:
            click.echo(
                f"tracker: warning: a {len(token)}-character token may be guessed;"
                " `tracker auth hash-token --new` makes a random 256-bit one",
                err=True,
            )
    digest = token_digest(token)
    if new:
        click.echo(token)
    click.echo(f'{name} = "{digest}"' if name else digest)
    if new:
        click.echo(
            "tracker: the first line is the token (keep it secret, give it to the client);"
            " the second goes in --auth-tokens-file",
            err=True,
        )
