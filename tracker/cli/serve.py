"""`tracker serve`: every setting of tracker.config as a flag with its TRACKER_* twin."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any, Final

import click

from tracker.cli._base import CONTEXT, F, cli, fail
from tracker.config import SETTINGS, WEBHOOK_SECRETS_ENV, Config, Setting
from tracker.errors import TrackerError

# ---- serve ---------------------------------------------------------------------------

_CLICK_TYPES: Final[dict[type, click.ParamType[Any]]] = {
    str: click.STRING,
    int: click.INT,
    float: click.FLOAT,
}


def setting_option(setting: Setting) -> Callable[[F], F]:
    """A click option for one `tracker.config` setting, with its TRACKER_* twin."""
    common: dict[str, Any] = {
        "default": setting.default,
        "envvar": setting.envvar,
        "show_envvar": True,
        "show_default": True,
        "help": setting.help,
    }
    if setting.type is bool:
        negative = "--no-" + setting.flag.removeprefix("--")
        return click.option(f"{setting.flag}/{negative}", setting.name, **common)
    if setting.type is tuple:  # repeatable; the environment twin splits on whitespace
        return click.option(setting.flag, setting.name, multiple=True, **common)
    return click.option(setting.flag, setting.name, type=_CLICK_TYPES[setting.type], **common)


def setting_options(func: F) -> F:
    for setting in reversed(SETTINGS):
        func = setting_option(setting)(func)
    return func


@cli.command(context_settings=CONTEXT)
@setting_options
def serve(**values: Any) -> None:
    """Run the tracker: HTTP (events, Pub/Sub push, Operations API) and gRPC.

    Every setting can also come from its TRACKER_* environment variable; a flag wins.
    Stops cleanly on SIGINT or SIGTERM.
    """
    # Secrets come from the environment or a file only: a flag would show in `ps`.
    secrets = tuple(os.environ.get(WEBHOOK_SECRETS_ENV, "").split())
    config = Config(**values, webhook_secrets=secrets).validate()
    from tracker import server  # late: client commands need none of the server's imports

    try:
        server.serve(config)
    except KeyboardInterrupt:  # before the signal handlers are in place
        raise click.exceptions.Exit(130) from None
    except TrackerError as exc:  # the store cannot be opened, ...
        fail(exc.message)
    except OSError as exc:
        fail(_os_error(exc, config))
    except RuntimeError as exc:
        if "bind" in str(exc).lower() or "port" in str(exc).lower():  # grpc's way to say it
            reason = str(exc).split(";", 1)[0]
            fail(f"cannot listen on gRPC {config.grpc_host}:{config.grpc_port}: {reason}")
        raise


def _os_error(exc: OSError, config: Config) -> str:
    if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
        where = f"{config.http_host}:{config.http_port}"
        return f"cannot listen on HTTP {where}: {exc.strerror or exc}"
    return f"cannot start: {exc}"
