"""The public face: every name in tracker.__all__ imports from `tracker`, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tracker
import tracker.client


@pytest.mark.parametrize("name", tracker.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(tracker, name)
    if name != "__version__":
        assert getattr(value, "__name__", name) == name, (name, value)


def test_all_and_the_lazy_table_agree() -> None:
    assert set(tracker.__all__) - {"__version__"} == set(tracker._EXPORTS)
    assert len(tracker.__all__) == len(set(tracker.__all__))


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        tracker.Nope  # noqa: B018


def test_import_tracker_loads_none_of_the_heavy_modules() -> None:
    code = (
        "import sys, tracker; "
        "print(sorted(m for m in sys.modules if m.startswith(('grpc', 'google', 'httpx',"
        " 'starlette', 'tracker.'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("name", tracker.client.__all__)
def test_every_client_name_resolves(name: str) -> None:
    # tracker.client imports its modules on first use (the CLI loads only what it runs).
    value = getattr(tracker.client, name)
    if not name.isupper() and name != "Mode":
        assert getattr(value, "__name__", name) == name, (name, value)


def test_the_client_lazy_table_and_all_agree() -> None:
    defined_here = {"subscribe_done", "wait_done"}
    assert set(tracker.client.__all__) == set(tracker.client._EXPORTS) | defined_here
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        tracker.client.Nope  # noqa: B018
