"""`tracker dev`: the Pub/Sub + Spanner path on a laptop, emulators included (tracker.dev)."""

from __future__ import annotations

import logging

import click

from tracker.cli._base import CONTEXT, cli


@cli.command(context_settings=CONTEXT)
@click.option(
    "--emulators",
    type=click.Choice(["auto", "google", "go"]),
    default="auto",
    show_default=True,
    help="google: the gcloud CLI's Pub/Sub and Spanner emulators; go: pstest and "
    "handy-spanner as a checkout's ./scripts/test builds them; auto: google when the gcloud "
    "CLI has both, else go.",
)
@click.option("--project", default="tracker-dev", show_default=True, help="Emulator project.")
@click.option("--http-port", type=int, default=8080, show_default=True, help="0: a free port.")
@click.option("--grpc-port", type=int, default=8081, show_default=True, help="0: a free port.")
@click.option("--pubsub-port", type=int, default=8085, show_default=True, help="0: a free port.")
@click.option("--spanner-port", type=int, default=9010, show_default=True, help="0: a free port.")
@click.option(
    "--log-level", default="info", show_default=True, help="debug, info, warning or error."
)
def dev(
    emulators: str,
    project: str,
    http_port: int,
    grpc_port: int,
    pubsub_port: int,
    spanner_port: int,
    log_level: str,
) -> None:
    """Start the Pub/Sub and Spanner emulators, create the topics, subscriptions and the
    database, serve the tracker on them and print the environment a worker and a
    consumer need. Ctrl-C stops everything it started (docs/gcp.md)."""
    from tracker import dev as dev_mode

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    dev_mode.main(
        click.echo,
        emulators=emulators,
        project=project,
        http_port=http_port,
        grpc_port=grpc_port,
        pubsub_port=pubsub_port,
        spanner_port=spanner_port,
        log_level=log_level,
    )
