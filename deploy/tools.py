"""Build the tools that check deploy/: OpenTofu, the Google provider, checkov.

Everything comes from package registries this project can reach, pinned, built once into
the user's cache, ``${XDG_CACHE_HOME:-~/.cache}/tracker/tools`` (or ``$TRACKER_TOOLS_DIR``),
shared by every clone on the machine, and found again by a key over the pin and the
toolchain (builds of other pins stay for the clones using them; unused for 30 days, they go):

* ``tofu``: OpenTofu from the Go module proxy (``github.com/opentofu/opentofu``), built
  with the machine's Go. Its go.mod has a ``replace`` directive, so ``go install`` cannot
  build it; the module is downloaded and built in place.
* the ``hashicorp/google`` provider: from the Go module proxy too
  (``github.com/hashicorp/terraform-provider-google``; its v2+ tags are not Go module
  versions, so the pin is the proxy's pseudo-version), installed into a filesystem mirror
  so that ``tofu init`` needs no registry. The commit is from two days after 8.0.0, the
  newest release in its CHANGELOG, and is labelled 8.0.0 in the mirror.
* ``checkov``: from PyPI into its own virtualenv (its pins would downgrade packages of the
  project's environment).

Usage (from the repository root)::

    python deploy/tools.py build          # all three; prints their paths
    python deploy/tools.py build tofu     # or one of: tofu, provider, checkov

tests/deploy/test_deploy.py calls ``tofu()``, ``provider_mirror()`` and ``checkov()``, which build
what is missing (waiting for a build another process runs); ./scripts/test builds them in
the background while the other checks and tests run, the deploy tests last.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from tracker.dev import tools_dir

REPO_ROOT: Final = Path(__file__).resolve().parent.parent


# The same folder the test harness builds its tools in (one definition, tracker.dev).
TOOLS: Final = tools_dir()
UNUSED_FOR_S: Final = 30 * 24 * 3600
TOOLS_BIN: Final = TOOLS / "bin"
PLUGIN_MIRROR: Final = TOOLS / "tofu-plugins"

OPENTOFU_MODULE: Final = "github.com/opentofu/opentofu"
OPENTOFU_VERSION: Final = "v1.12.6"

PROVIDER_MODULE: Final = "github.com/hashicorp/terraform-provider-google"
PROVIDER_PSEUDO_VERSION: Final = "v1.20.1-0.20260828184646-f3721fb45fa3"
PROVIDER_SOURCE: Final = "registry.opentofu.org/hashicorp/google"
PROVIDER_VERSION: Final = "8.0.0"

CHECKOV_VERSION: Final = "3.3.30"

BUILD_TIMEOUT_S: Final = 3600.0


class ToolError(RuntimeError):
    """A tool could not be built or found."""


def _go() -> str:
    for cand in (os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    raise ToolError("no Go toolchain found (set $GO or put go on PATH)")


def _run(
    cmd: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    what: str = "",
) -> str:
    """Run a command; with `what`, say every 30 s that it is still running (a build takes
    minutes and prints nothing)."""
    started = time.monotonic()
    with subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        while True:
            try:
                stdout, stderr = child.communicate(timeout=30)
                break
            except subprocess.TimeoutExpired:
                took = time.monotonic() - started
                if took > BUILD_TIMEOUT_S:
                    child.kill()
                    raise ToolError(f"{' '.join(cmd)} took over {BUILD_TIMEOUT_S:.0f}s") from None
                if what:
                    _log(f"still {what} ({took / 60:.1f} min)")
    proc = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
    if proc.returncode != 0:
        raise ToolError(f"{' '.join(cmd)} failed:\n{(proc.stderr or proc.stdout)[-4000:]}")
    return proc.stdout


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOFLAGS"] = f"{env.get('GOFLAGS', '')} -mod=readonly -buildvcs=false".strip()
    env["CGO_ENABLED"] = "0"
    return env


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One build at a time across processes."""
    TOOLS.mkdir(parents=True, exist_ok=True)
    with open(TOOLS / ".deploy-tools.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _go_module_dir(go: str, module: str, version: str) -> Path:
    """Download a module through the Go module proxy; its (read-only) source directory."""
    out = _run([go, "mod", "download", "-json", f"{module}@{version}"], env=_go_env())
    return Path(json.loads(out)["Dir"])


def _go_build(go: str, module_dir: Path, package: str, target: Path, ldflags: str) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        cmd = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), package]
        _run(cmd, cwd=module_dir, env=_go_env(), what=f"building {target.name}")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _log(message: str) -> None:
    print(f"deploy/tools: {message}", file=sys.stderr, flush=True)


def _found(target: Path) -> bool:
    """Whether a build exists; marks it used (mtime) so that pruning keeps it."""
    if not target.exists():
        return False
    with contextlib.suppress(OSError):
        os.utime(target)
    return True


def _prune(pattern: str, keep: Path) -> None:
    """Remove other builds matching `pattern` under TOOLS that no clone used for 30 days."""
    now = time.time()
    for old in TOOLS.glob(pattern):
        if old == keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            if now - old.stat().st_mtime > UNUSED_FOR_S:
                shutil.rmtree(old) if old.is_dir() else old.unlink()


def tofu() -> Path:
    """The pinned OpenTofu binary, built if missing."""
    go = _go()
    go_version = _run([go, "env", "GOVERSION"]).strip()
    ldflags = "-s -w -X github.com/opentofu/opentofu/version.dev=no"
    target = TOOLS_BIN / f"tofu-{_key(OPENTOFU_MODULE, OPENTOFU_VERSION, go_version, ldflags)}"
    if _found(target):
        return target
    with _lock():
        if target.is_file():
            return target
        started = time.monotonic()
        _log(f"building OpenTofu {OPENTOFU_VERSION} with {go_version} (takes minutes, once)")
        source = _go_module_dir(go, OPENTOFU_MODULE, OPENTOFU_VERSION)
        _go_build(go, source, "./cmd/tofu", target, ldflags)
        _prune("bin/tofu-*", target)
        _log(f"built {target} in {time.monotonic() - started:.0f}s")
    return target


def provider_mirror() -> Path:
    """A filesystem mirror holding the pinned hashicorp/google provider, built if missing."""
    go = _go()
    go_version = _run([go, "env", "GOVERSION"]).strip()
    platform = "_".join(_run([go, "env", "GOOS", "GOARCH"]).split())
    key = _key(PROVIDER_MODULE, PROVIDER_PSEUDO_VERSION, go_version)
    mirror = PLUGIN_MIRROR / key  # one mirror per pin: clones at other pins keep theirs
    folder = mirror / PROVIDER_SOURCE / PROVIDER_VERSION / platform
    binary = folder / f"terraform-provider-google_v{PROVIDER_VERSION}"
    stamp = folder / ".key"
    if binary.is_file() and stamp.is_file() and stamp.read_text() == key and _found(mirror):
        return mirror
    with _lock():
        if binary.is_file() and stamp.is_file() and stamp.read_text() == key:
            return mirror
        started = time.monotonic()
        _log(f"building hashicorp/google ({PROVIDER_PSEUDO_VERSION}) with {go_version} (once)")
        source = _go_module_dir(go, PROVIDER_MODULE, PROVIDER_PSEUDO_VERSION)
        _go_build(go, source, ".", binary, "-s -w")
        stamp.write_text(key)
        _prune("tofu-plugins/*", mirror)
        _log(f"built {binary} in {time.monotonic() - started:.0f}s")
    return mirror


def checkov() -> Path:
    """The pinned checkov, in its own virtualenv under .tools, installed if missing."""
    venv = TOOLS / f"checkov-{CHECKOV_VERSION}"
    binary = venv / "bin" / "checkov"
    stamp = venv / ".installed"
    if binary.is_file() and stamp.is_file() and _found(venv):
        return binary
    uv = REPO_ROOT / ".venv" / "bin" / "uv"
    if not uv.is_file():
        raise ToolError(f"{uv} not found: run ./scripts/bootstrap first")
    with _lock():
        if binary.is_file() and stamp.is_file():
            return binary
        _log(f"installing checkov {CHECKOV_VERSION} into {venv}")
        shutil.rmtree(venv, ignore_errors=True)
        # The base interpreter, not this clone's venv: the cache outlives any one clone.
        _run([str(uv), "venv", "-q", "-p", os.path.realpath(sys.executable), str(venv)])
        _run([str(uv), "pip", "install", "-q", "-p", str(venv / "bin" / "python"),
              f"checkov=={CHECKOV_VERSION}"])  # fmt: skip
        stamp.write_text(CHECKOV_VERSION)
        _prune("checkov-*", venv)
    return binary


def cli_config(mirror: Path) -> Path:
    """A tofu CLI configuration that installs providers from `mirror` only (no registry)."""
    text = (
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f"    path    = {json.dumps(str(mirror))}\n"
        f"    include = [{json.dumps(PROVIDER_SOURCE)}]\n"
        "  }\n"
        "}\n"
    )
    fd, path = tempfile.mkstemp(prefix="tofu-", suffix=".tfrc")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return Path(path)


TOOLS_BY_NAME: Final = {"tofu": tofu, "provider": provider_mirror, "checkov": checkov}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build what is missing, print the paths")
    build.add_argument("tools", nargs="*", metavar="TOOL", help="tofu, provider, checkov (all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tools) - set(TOOLS_BY_NAME))
    if unknown:
        parser.error(f"unknown tool {', '.join(unknown)}; choose from {', '.join(TOOLS_BY_NAME)}")
    try:
        for name in args.tools or TOOLS_BY_NAME:
            print(f"{name}: {TOOLS_BY_NAME[name]()}")
    except ToolError as exc:
        print(f"deploy/tools: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
