"""Generate Python code for schemas/proto into tracker/v1 (the one way to do it).

Usage: python scripts/gen_protos.py [--check]

--check regenerates into a temporary folder and fails if tracker/v1 differs, so CI
catches a .proto edited without regenerating.
"""

from __future__ import annotations

import filecmp
import importlib.resources
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "schemas" / "proto"
OUT_PACKAGE = Path("tracker") / "v1"


def _include_dirs(scratch: Path) -> list[str]:
    dirs = [str(PROTO_ROOT), str(importlib.resources.files("grpc_tools") / "_proto")]
    # google/rpc/status.proto and google/api/*.proto ship with googleapis-common-protos.
    import google.rpc

    common = Path(google.rpc.__path__[0]).parent.parent
    dirs.append(str(common))
    # It ships google/longrunning/operations.proto as operations_proto.proto (the file's
    # own name inside is operations.proto): put it where imports look for it.
    longrunning = scratch / "google" / "longrunning"
    longrunning.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(
        common / "google" / "longrunning" / "operations_proto.proto",
        longrunning / "operations.proto",
    )
    dirs.append(str(scratch))
    return dirs


def generate(out_root: Path) -> list[Path]:
    protos = sorted(PROTO_ROOT.glob("tracker/v1/*.proto"))
    scratch = out_root / "_include"
    args = ["protoc", *(f"-I{d}" for d in _include_dirs(scratch))]
    args += [f"--python_out={out_root}", f"--pyi_out={out_root}"]
    args += [str(p.relative_to(PROTO_ROOT)) for p in protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_root / OUT_PACKAGE).glob("*_pb2.py*"))


def main() -> int:
    check = "--check" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        target = ROOT / OUT_PACKAGE
        stale = []
        for path in generated:
            dest = target / path.name
            if check:
                if not dest.exists() or not filecmp.cmp(path, dest, shallow=False):
                    stale.append(dest.relative_to(ROOT))
            else:
                shutil.copyfile(path, dest)
        if check:
            expected = {p.name for p in generated}
            extra = [p for p in target.glob("*_pb2.py*") if p.name not in expected]
            stale += [p.relative_to(ROOT) for p in extra]
            if stale:
                print("generated code is stale, run: python scripts/gen_protos.py")
                for s in stale:
                    print(f"  {s}")
                return 1
            print(f"generated code is up to date ({len(generated)} files)")
        else:
            print(f"wrote {len(generated)} files to {OUT_PACKAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
