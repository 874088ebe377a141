"""The Spanner DDL in schemas/spanner/, and the one place where the test variant differs.

`canonical` is what runs on Cloud Spanner (and Google's emulator). `emulator` is for
servers that cannot parse all of it (handy-spanner): generated from the canonical DDL by
`emulator_variant`, which makes exactly these changes and no others:

- no `CREATE PROTO BUNDLE`; the `Operation` proto column becomes `BYTES(MAX)` holding
  the same serialized `google.longrunning.Operation`;
- `key` is a plain column the store writes (= Operation.name) instead of a generated one;
- `JSON` columns become `STRING(MAX)` holding the same JSON text;
- no `ROW DELETION POLICY` (retention is then not enforced by the server).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any, Final, Literal

from google.cloud.spanner_v1.database import Database
from google.longrunning import operations_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from tracker import gcp
from tracker.errors import ConfigError, Unavailable
from tracker.schemas import migrations as schema_files

Variant = Literal["canonical", "emulator"]
VARIANTS: Final = ("canonical", "emulator")
SCHEMA_TABLE: Final = "TrackerSchema"


def migrations() -> list[tuple[int, list[str]]]:
    """(version, statements) for each schemas/spanner/NNNN_*.sql, in order."""
    return [(version, split_statements(text)) for version, text in schema_files("spanner")]


def split_statements(sql: str) -> list[str]:
    text = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*$", text, flags=re.M) if s.strip()]


def emulator_variant(statements: list[str]) -> list[str]:
    out = []
    for statement in statements:
        if statement.upper().startswith("CREATE PROTO BUNDLE"):
            continue
        statement = re.sub(
            r"\bOperation google\.longrunning\.Operation\b", "Operation BYTES(MAX)", statement
        )
        statement = re.sub(r"\bAS \(Operation\.name\) STORED", "", statement)
        statement = re.sub(r"\bJSON\b", "STRING(MAX)", statement)
        statement = re.sub(r",\s*ROW DELETION POLICY \(.*\)\s*$", "", statement, flags=re.S)
        out.append(statement)
    return out


def statements_for(version_statements: list[str], variant: Variant) -> list[str]:
    return version_statements if variant == "canonical" else emulator_variant(version_statements)


def proto_descriptors() -> bytes:
    """FileDescriptorSet of google.longrunning.Operation and its imports (PROTO BUNDLE)."""
    files: dict[str, FileDescriptor] = {}

    def add(fd: FileDescriptor) -> None:
        if fd.name in files:
            return
        for dep in fd.dependencies:
            add(dep)
        files[fd.name] = fd

    add(operations_pb2.DESCRIPTOR)
    fds = descriptor_pb2.FileDescriptorSet()
    for fd in files.values():
        proto = fds.file.add()
        fd.CopyToProto(proto)
    return fds.SerializeToString()


def open_database(path: str, client: Any = None) -> Database:
    """The Database at projects/P/instances/I/databases/D (not created here)."""
    from google.cloud import spanner

    parts = path.split("/")
    if len(parts) != 6 or parts[0::2] != ["projects", "instances", "databases"]:
        raise ConfigError(f"--spanner-database: {path!r} is not projects/P/instances/I/databases/D")
    client = client or gcp.client(path, lambda: spanner.Client(project=parts[1]))
    database: Database = client.instance(parts[3]).database(parts[5])
    return database


@contextlib.contextmanager
def _translated(database: Database) -> Iterator[None]:
    """Spanner's admin errors in the project's words (the CLI knows no vendor errors)."""
    from google.api_core import exceptions as gexc

    where = getattr(database, "name", "the database")
    try:
        yield
    except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.Aborted) as exc:
        raise Unavailable(f"{where}: {exc.message}") from exc
    except gexc.GoogleAPICallError as exc:
        raise ConfigError(f"{where}: {exc.message}") from exc


def create_database(database: Database, *, timeout: float = 300) -> bool:
    """Create an empty database; False if it already exists."""
    from google.api_core import exceptions as gexc

    with _translated(database):
        try:
            database.create().result(timeout)
        except gexc.AlreadyExists:
            return False
    return True


def applied_versions(database: Database) -> dict[int, str]:
    """Version -> variant of what is applied; empty if the schema table is missing."""
    from google.api_core import exceptions as gexc
    from google.cloud.spanner_v1.keyset import KeySet

    try:
        with database.snapshot() as snapshot:
            rows = list(snapshot.read(SCHEMA_TABLE, ("Version", "Variant"), KeySet(all_=True)))
    except (gexc.NotFound, gexc.InvalidArgument):
        return {}
    return {int(r[0]): str(r[1]) for r in rows}


def apply(database: Database, variant: Variant, *, timeout: float = 300) -> list[int]:
    """Apply the versions not yet applied, in order; returns those applied.

    The database must exist (`create_database`). Each version's statements go in one
    DDL operation, then a TrackerSchema row records it; a database holds one variant.
    """
    with _translated(database):
        return _apply(database, variant, timeout)


def _apply(database: Database, variant: Variant, timeout: float) -> list[int]:
    from google.cloud import spanner

    done = applied_versions(database)
    if done and set(done.values()) != {variant}:
        raise ConfigError(
            f"--variant {variant}: the database has the {sorted(set(done.values()))} variant"
        )
    pending = [(v, s) for v, s in migrations() if v not in done]
    applied = []
    for version, statements in pending:
        ddl = statements_for(statements, variant)
        kwargs: dict[str, Any] = {}
        if variant == "canonical":
            kwargs["proto_descriptors"] = proto_descriptors()
        database.update_ddl(ddl, **kwargs).result(timeout)

        def record(transaction: Any, version: int = version) -> None:
            transaction.insert(
                SCHEMA_TABLE,
                ("Version", "Variant", "AppliedAt"),
                [(version, variant, spanner.COMMIT_TIMESTAMP)],
            )

        database.run_in_transaction(record)
        applied.append(version)
    return applied
