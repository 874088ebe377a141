"""The Spanner DDL in schemas/spanner/, and the one place where the test variant differs.

`canonical` is what runs on Cloud Spanner (and Google's emulator). `emulator` is for
servers that cannot parse all of it (handy-spanner): generated from the canonical DDL by
`emulator_variant`, which makes exactly these changes and no others:

- no `CREATE PROTO BUNDLE`; the `Operation` proto column becomes `BYTES(MAX)` holding
  the same serialized `google.longrunning.Operation`;
- `key` is a plain column the store writes (= Operation.name) instead of a generated one;
- `JSON` columns become `STRING(MAX)` holding the same JSON text;
- no `ROW DELETION POLICY`, nor an `ALTER TABLE ... ADD ROW DELETION POLICY` statement
  (retention is then not enforced by the server);
- no `ALTER TABLE ... ADD COLUMN` (handy-spanner answers OK and adds nothing), nor an index
  on such a column; the store then writes and pushes down nothing of those columns
  (`SpannerStore.layout.late_columns`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from google.cloud.spanner_v1.database import Database
from google.longrunning import operations_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from tracker import gcp
from tracker.errors import ConfigError, Unavailable
from tracker.schemas import migrations as schema_files
from tracker.stores.tenants import check_prefix

Variant = Literal["canonical", "emulator"]
VARIANTS: Final = ("canonical", "emulator")
SCHEMA_TABLE: Final = "TrackerSchema"
# The version whose OperationLabels rows `apply` writes for the rows already there.
LABELS_VERSION: Final = 6
# The version whose List indexes (OperationsBy*Desc) the queries name in hints.
LIST_INDEXES_VERSION: Final = 7
# Every table and index of the schema: what a tenant's prefix goes in front of.
# Interleaved tables before their parent (emptying them in this order works everywhere).
TABLES: Final = (
    "OperationEvents",
    "OperationLabels",
    "HistoryHeads",
    "Operations",
    "AppliedEvents",
    "Outbox",
    "OutboxDue",
    "FailedNotifications",
    "DeadLetters",
    SCHEMA_TABLE,
)
INDEXES: Final = (
    "OperationsByDone",
    "OperationsDue",
    "OutboxPending",
    "OutboxDueByNextAttempt",
    "FailedNotificationsByGaveUp",
    "DeadLettersByReceivedAt",
    "DeadLettersByReason",
    *("OperationsByCreateTime", "OperationsByUpdateTime", "OperationsByEndTime"),
    "OperationsByResult",
    "OperationLabelsByValue",
    "OperationsByCreateTimeDesc",
    "OperationsByDoneCreateTimeDesc",
)
_IDENTIFIER = re.compile(
    r"\b(" + "|".join(sorted((*TABLES, *INDEXES), key=len, reverse=True)) + r")\b"
)


@dataclass(frozen=True)
class Names:
    """The schema's table and index names under a prefix (one database, many tenants:
    the seed's `<project>_Operations`). The empty prefix is the plain schema."""

    prefix: str = ""

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    def __call__(self, table: str) -> str:
        return self.prefix + table

    def sql(self, text: str) -> str:
        """`text` (DDL or a query) with every table and index name prefixed."""
        return _IDENTIFIER.sub(lambda m: self.prefix + m.group(0), text) if self.prefix else text


PLAIN: Final = Names()


def migrations() -> list[tuple[int, list[str]]]:
    """(version, statements) for each schemas/spanner/NNNN_*.sql, in order."""
    return [(version, split_statements(text)) for version, text in schema_files("spanner")]


def split_statements(sql: str) -> list[str]:
    text = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*$", text, flags=re.M) if s.strip()]


_ADD_COLUMN = re.compile(r"ALTER TABLE \w+ ADD COLUMN (\w+)", re.I)


def emulator_variant(statements: list[str]) -> list[str]:
    out = []
    added = {m.group(1) for s in statements if (m := _ADD_COLUMN.match(s))}
    for statement in statements:
        if statement.upper().startswith("CREATE PROTO BUNDLE") or _ADD_COLUMN.match(statement):
            continue
        is_index = statement.upper().startswith("CREATE") and " INDEX " in statement.upper()
        if is_index and any(re.search(rf"\b{column}\b", statement) for column in added):
            continue
        if re.match(r"ALTER TABLE \w+ ADD ROW DELETION POLICY\b", statement, flags=re.I):
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


def missing_schema_message(database: Database, names: Names = PLAIN) -> str:
    """What to do when `database` has no tracker schema (for the tenant `names`): it, or
    its instance, may not exist at all (a newcomer's first `serve`); each case names the
    command that fixes it."""
    from google.api_core import exceptions as gexc

    path = database.name
    apply = f"tracker schema apply --store spanner --spanner-database {path}"
    if names.prefix:
        apply += f" --table-prefix {names.prefix}"
    try:
        instance_exists = database._instance.exists()
        database_exists = instance_exists and database.exists()
    except gexc.GoogleAPICallError as exc:
        return f"Spanner database {path} has no tracker schema ({exc.message}): run `{apply}`"
    if not instance_exists:
        instance = path.rsplit("/databases/", 1)[0]
        short = instance.rsplit("/", 1)[1]
        return (
            f"Spanner instance {instance} does not exist: create it (`gcloud spanner "
            f"instances create {short} --config=regional-us-central1 --nodes=1`; on a "
            f"laptop `tracker dev` starts an emulator with one), then run "
            f"`{apply} --create-database`"
        )
    if not database_exists:
        return (
            f"Spanner database {path} does not exist: create it with the tracker's schema "
            f"by `{apply} --create-database`"
        )
    tenant = f" for tables {names.prefix}*" if names.prefix else ""
    return f"Spanner database {path} has no tracker schema{tenant}: run `{apply}`"


def applied_versions(database: Database, names: Names = PLAIN) -> dict[int, str]:
    """Version -> variant of what is applied; empty if the schema table is missing."""
    from google.api_core import exceptions as gexc
    from google.cloud.spanner_v1.keyset import KeySet

    try:
        with database.snapshot() as snapshot:
            rows = list(
                snapshot.read(names(SCHEMA_TABLE), ("Version", "Variant"), KeySet(all_=True))
            )
    except (gexc.NotFound, gexc.InvalidArgument):
        return {}
    return {int(r[0]): str(r[1]) for r in rows}


def apply(
    database: Database, variant: Variant, *, names: Names = PLAIN, timeout: float = 300
) -> list[int]:
    """Apply the versions not yet applied, in order; returns those applied.

    The database must exist (`create_database`). Each version's statements go in one
    DDL operation, then a TrackerSchema row records it; a database holds one variant.
    With a prefix (`names`), every table and index is the tenant's own; the proto
    bundle is the database's, created by whichever tenant comes first.
    """
    with _translated(database):
        return _apply(database, variant, names, timeout)


def _has_proto_bundle(database: Database) -> bool:
    database.reload()
    return any(
        str(s).lstrip().upper().startswith("CREATE PROTO BUNDLE")
        for s in database.ddl_statements or ()
    )


def _apply(database: Database, variant: Variant, names: Names, timeout: float) -> list[int]:
    from google.cloud import spanner

    done = applied_versions(database, names)
    if done and set(done.values()) != {variant}:
        raise ConfigError(
            f"--variant {variant}: the database has the {sorted(set(done.values()))} variant"
        )
    pending = [(v, s) for v, s in migrations() if v not in done]
    applied = []
    for version, statements in pending:
        ddl = [names.sql(statement) for statement in statements_for(statements, variant)]
        bundles = [d for d in ddl if d.upper().startswith("CREATE PROTO BUNDLE")]
        if bundles and names.prefix and _has_proto_bundle(database):
            ddl = [d for d in ddl if d not in bundles]
        kwargs: dict[str, Any] = {}
        if variant == "canonical":
            kwargs["proto_descriptors"] = proto_descriptors()
        database.update_ddl(ddl, **kwargs).result(timeout)

        def record(transaction: Any, version: int = version) -> None:
            transaction.insert(
                names(SCHEMA_TABLE),
                ("Version", "Variant", "AppliedAt"),
                [(version, variant, spanner.COMMIT_TIMESTAMP)],
            )

        if version == LABELS_VERSION:
            from tracker.stores.labels import backfill_spanner

            backfill_spanner(database, names)
        database.run_in_transaction(record)
        applied.append(version)
    return applied
