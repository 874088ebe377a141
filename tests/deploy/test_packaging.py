"""The wheel built from this repository works on its own, in a fresh virtualenv.

No checkout, no TRACKER_* variable: `tracker schema apply` and `tracker schema show` find
the DDL in the package (importlib.resources), and `tracker serve` serves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT

UV = Path(sys.executable).with_name("uv")


def _clean_env(home: Path) -> dict[str, str]:
    """The environment of a user who has never seen the repository."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "UV_CACHE_DIR", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(HOME=str(home), PYTHONNOUSERSITE="1")
    if "HOME" in os.environ and "UV_CACHE_DIR" not in env and "XDG_CACHE_HOME" not in env:
        env["UV_CACHE_DIR"] = str(Path(os.environ["HOME"]) / ".cache" / "uv")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh venv with the wheel of this checkout and its dependencies installed."""
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    subprocess.run(
        # An sdist first, then the wheel from it: nothing left in the checkout is used.
        [str(UV), "build", "--out-dir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("tracker-*.whl")
    venv = work / "venv"
    env = _clean_env(work)
    subprocess.run([str(UV), "venv", "-q", "-p", sys.executable, str(venv)], check=True, env=env)
    install = [str(UV), "pip", "install", "-q", "-p", str(venv / "bin" / "python"), str(wheel)]
    # The dependencies are in uv's cache after the bootstrap; the registry is the fallback.
    if subprocess.run([*install, "--offline"], env=env, capture_output=True).returncode:
        subprocess.run(install, check=True, env=env, timeout=600)
    yield venv, {**env, "WHEEL": str(wheel)}
    shutil.rmtree(work, ignore_errors=True)


def test_the_wheel_holds_the_ddl_and_schemas_but_not_the_test_data(
    installed: tuple[Path, dict[str, str]],
) -> None:
    names = set(zipfile.ZipFile(installed[1]["WHEEL"]).namelist())
    for path in (ROOT / "schemas").rglob("*"):
        relative = path.relative_to(ROOT / "schemas").as_posix()
        packaged = f"tracker/_schemas/{relative}" in names
        if path.suffix in (".sql", ".proto") or relative.startswith("jsonschema/"):
            assert packaged, relative
        elif path.is_file():
            assert not packaged, relative  # test vectors and generators stay in the repo
    assert "tracker/py.typed" in names
    console = sorted((ROOT / "tracker" / "console" / "static").iterdir())
    assert console and all(f"tracker/console/static/{p.name}" in names for p in console)


def test_schema_apply_show_and_serve_from_the_wheel(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = installed
    tracker = str(venv / "bin" / "tracker")
    assert not any(k.startswith("TRACKER_") for k in env)
    applied = subprocess.run(
        [tracker, "schema", "apply", "--db", "t.db"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert applied.returncode == 0, applied.stderr
    # The newest migration in the checkout: the wheel carries every one of them.
    latest = max(int(f.name[:4]) for f in (ROOT / "schemas" / "sqlite").glob("[0-9]*.sql"))
    assert re.search(rf"schema version {latest}\b", applied.stdout), applied.stdout
    shown = subprocess.run(
        [tracker, "schema", "show", "--variant", "emulator"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0 and "CREATE TABLE Operations" in shown.stdout, shown.stderr
    serve = subprocess.Popen(
        [tracker, "serve", "--db", "t.db", "--http-port", "0", "--grpc-port", "-1"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stderr is not None
        url = ""
        for line in serve.stderr:
            match = re.search(r"HTTP on (http://\S+),", line)
            if match:
                url = match.group(1)
                break
        assert url, f"tracker serve exited with {serve.poll()}"
        assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "1",
            "ce-source": "wheel",
            "ce-type": "tracker.operation.v1.succeeded",
            "ce-subject": "operations/from-the-wheel",
            "content-type": "application/json",
        }
        assert httpx.post(f"{url}/v1/events", headers=headers, content=b"{}").status_code == 200
        assert httpx.get(f"{url}/v1/operations/from-the-wheel").json()["done"] is True
        # The console's assets come from the installed package, not from a checkout.
        for asset in ("", "app.js", "console.css"):
            served = httpx.get(f"{url}/console/{asset}")
            assert served.status_code == 200 and served.content, asset
    finally:
        serve.terminate()
        serve.wait(10)
        if serve.stderr is not None:
            serve.stderr.close()
