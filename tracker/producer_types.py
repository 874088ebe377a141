"""Producers' own message types: FileDescriptorSets the tracker loads at start-up.

A producer whose `created`/`progress` metadata or `succeeded` response is a message of
its own (`acme.export.v1.ExportMetadata`) registers the type by handing the tracker the
compiled descriptors: `protoc --include_imports --descriptor_set_out=acme.binpb ...`,
given by `--proto-descriptors FILE|DIR` (repeatable) or dropped into the `types/` folder
of the schemas (`schemas/types/*.binpb`). The files join this process's default
descriptor pool, so that:

- JSON event data whose `metadata` / `response` carries `"@type":
  "type.googleapis.com/acme.export.v1.ExportMetadata"` is parsed and checked as that
  message (a field it does not have is a 400), and stored as its binary form;
- a protobuf event's `Any` of a registered type is checked to read as that type;
- the HTTP/JSON API and the stream serve it as that message's JSON, and gRPC serves the
  `Any` as it is, which `google.api_core.operation.from_gapic(..., result_type,
  metadata_type)` unpacks into the producer's own classes.

A JSON `@type` nobody registered is a 400 that says how to register it (binary data of an
unknown type is kept as it came, served as `{"@type", "value"}`). A file that does not
parse, or that redefines a file the tracker already has differently, stops start-up with
one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Final

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import DecodeError

from tracker.errors import ConfigError

SUFFIXES: Final = (".binpb", ".pb", ".desc", ".protoset")
FLAG: Final = "--proto-descriptors"


def descriptor_files(path: str | Path) -> list[Path]:
    """`path` itself, or the descriptor-set files of the folder `path` (by name)."""
    where = Path(path)
    if where.is_dir():
        return sorted(p for p in where.iterdir() if p.suffix in SUFFIXES and p.is_file())
    if not where.is_file():
        raise ConfigError(f"{FLAG}: {str(where)!r} is neither a file nor a folder")
    return [where]


def read_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    try:
        return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    except (OSError, DecodeError) as exc:
        raise ConfigError(
            f"{FLAG}: {str(path)!r} is not a FileDescriptorSet"
            f" (protoc --include_imports --descriptor_set_out=FILE): {exc}"
        ) from None


def _same(
    existing: descriptor_pb2.FileDescriptorProto, new: descriptor_pb2.FileDescriptorProto
) -> bool:
    a, b = descriptor_pb2.FileDescriptorProto(), descriptor_pb2.FileDescriptorProto()
    a.CopyFrom(existing)
    b.CopyFrom(new)
    for f in (a, b):
        f.ClearField("source_code_info")
    return a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def register(
    files: Iterable[descriptor_pb2.FileDescriptorProto],
    pool: descriptor_pool.DescriptorPool | None = None,
    where: str = FLAG,
) -> list[str]:
    """Add `files` to `pool` (the default one), dependencies first; a file the pool has
    already is skipped when it is the same. Returns the message types added."""
    pool = pool or descriptor_pool.Default()
    pending = {f.name: f for f in files}
    added: list[str] = []
    while pending:
        progress = False
        for name, proto in list(pending.items()):
            try:
                have = pool.FindFileByName(name)
            except KeyError:
                have = None
            if have is not None:
                existing = descriptor_pb2.FileDescriptorProto()
                have.CopyToProto(existing)
                if not _same(existing, proto):
                    raise ConfigError(
                        f"{where}: {name} differs from the {name} the tracker already has;"
                        " rename the producer's file or build it from the same source"
                    )
                del pending[name]
                progress = True
                continue
            if any(dep in pending for dep in proto.dependency):
                continue
            missing = [d for d in proto.dependency if not _has_file(pool, d)]
            if missing:
                raise ConfigError(
                    f"{where}: {name} imports {', '.join(missing)}, which is neither in the"
                    " set nor known; build the set with protoc --include_imports"
                )
            try:
                pool.AddSerializedFile(proto.SerializeToString())
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: cannot load {name}: {exc}") from None
            added += _messages(proto)
            del pending[name]
            progress = True
        if not progress:
            missing = sorted({d for p in pending.values() for d in p.dependency} - set(pending))
            raise ConfigError(
                f"{where}: {', '.join(sorted(pending))} import files that are neither in the"
                f" set nor known ({', '.join(missing) or 'a cycle'}); build it with"
                " protoc --include_imports"
            )
    return added


def _has_file(pool: descriptor_pool.DescriptorPool, name: str) -> bool:
    try:
        pool.FindFileByName(name)
    except KeyError:
        return False
    return True


def _messages(proto: descriptor_pb2.FileDescriptorProto) -> list[str]:
    prefix = f"{proto.package}." if proto.package else ""
    out = []
    stack = [(prefix, m) for m in proto.message_type]
    while stack:
        scope, message = stack.pop()
        full = scope + message.name
        out.append(full)
        stack += [(full + ".", nested) for nested in message.nested_type]
    return sorted(out)


def load(paths: Iterable[str | Path]) -> list[str]:
    """Register every descriptor set of `paths` (files or folders); the types added."""
    added: list[str] = []
    for path in paths:
        for file in descriptor_files(path):
            added += register(read_set(file).file, where=f"{FLAG} {file}")
    return added


def schema_types_folder() -> Path | None:
    """The `types/` folder of the schemas, when there is one on disk."""
    from tracker.schemas import schemas_root

    folder = schemas_root() / "types"
    return Path(str(folder)) if folder.is_dir() else None


__all__ = ["descriptor_files", "load", "register", "schema_types_folder"]
