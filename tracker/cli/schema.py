"""`tracker schema`: apply or show the versioned DDL in schemas/ (never by hand)."""

from __future__ import annotations

import click

from tracker.cli._base import CONTEXT, F, cli
from tracker.cli.serve import setting_option
from tracker.config import SETTINGS, Config

# ---- schema ----------------------------------------------------------------------------


@cli.group(context_settings=CONTEXT)
def schema() -> None:
    """Apply or show the versioned DDL in schemas/ (never apply it by hand)."""


def _schema_options(func: F) -> F:
    func = click.option(
        "--variant",
        type=click.Choice(["canonical", "emulator"]),
        default="canonical",
        show_default=True,
        help="Spanner DDL variant: canonical for Cloud Spanner and Google's emulator,"
        " emulator for handy-spanner (see docs/gcp.md, The emulator variant).",
    )(func)
    for name in ("table_prefix", "spanner_database", "db", "store"):
        setting = next(s for s in SETTINGS if s.name == name)
        func = setting_option(setting)(func)
    return func


@schema.command("apply", context_settings=CONTEXT)
@_schema_options
@click.option(
    "--create-database/--no-create-database",
    default=False,
    help="Spanner: create the database first if it does not exist.",
)
def schema_apply(
    store: str,
    db: str,
    spanner_database: str,
    table_prefix: str,
    variant: str,
    create_database: bool,
) -> None:
    """Bring the store's schema up to the newest version in schemas/ (a tenant's tables
    under --table-prefix)."""
    config = Config(
        store=store, db=db, spanner_database=spanner_database, table_prefix=table_prefix
    ).validate()
    tenant = f" tables {config.table_prefix}*" if config.table_prefix else ""
    if config.store == "sqlite":
        from tracker.stores.sqlite import SqliteStore

        sqlite_store = SqliteStore(config.db, table_prefix=config.table_prefix)
        click.echo(f"sqlite {config.db}{tenant}: schema version {sqlite_store.schema_version()}")
        sqlite_store.close()
        return
    from tracker.stores import spanner_schema

    database = spanner_schema.open_database(config.spanner_database)
    if create_database and spanner_schema.create_database(database):
        click.echo(f"created {config.spanner_database}")
    applied = spanner_schema.apply(
        database,
        variant,  # type: ignore[arg-type]
        names=spanner_schema.Names(config.table_prefix),
    )
    done = ", ".join(map(str, applied)) or "nothing new"
    click.echo(f"spanner {config.spanner_database}{tenant} ({variant}): applied {done}")


@schema.command("show", context_settings=CONTEXT)
@click.option("--variant", type=click.Choice(["canonical", "emulator"]), default="canonical")
def schema_show(variant: str) -> None:
    """Print the Spanner DDL statements of every version, in the chosen variant."""
    from tracker.stores import spanner_schema

    for version, statements in spanner_schema.migrations():
        click.echo(f"-- version {version} ({variant})")
        for statement in spanner_schema.statements_for(statements, variant):  # type: ignore[arg-type]
            click.echo(statement + ";")
