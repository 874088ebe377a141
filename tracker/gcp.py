"""Creating Google Cloud clients, with their start-up errors in the project's words."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from google.auth import exceptions as auth_exceptions

from tracker.errors import ConfigError

T = TypeVar("T")

HINT = (
    "set up Application Default Credentials (gcloud auth application-default login, or a"
    " service account on the platform), or set SPANNER_EMULATOR_HOST / PUBSUB_EMULATOR_HOST"
    " to use emulators"
)


def client(what: str, make: Callable[[], T]) -> T:
    """`make()` a client for `what`; missing credentials become one ConfigError line."""
    try:
        return make()
    except auth_exceptions.DefaultCredentialsError as exc:
        reason = str(exc).split(". ")[0].rstrip(".")
        raise ConfigError(f"{what}: no usable Google credentials ({reason}); {HINT}") from None
