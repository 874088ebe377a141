"""The public face: every name in tracker.__all__ imports from `tracker`, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tracker


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
