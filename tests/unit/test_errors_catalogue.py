"""docs/errors.md is the generated catalogue of every error code; it must match the code."""

from __future__ import annotations

from pathlib import Path

from creditstack.app.errors_catalogue import render
from creditstack.core.errors import all_error_classes

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_catalogue_is_current() -> None:
    assert DOC.read_text() == render(), "regenerate: python -m creditstack.app.errors_catalogue > docs/errors.md"


def test_every_error_has_a_docstring_and_a_unique_code() -> None:
    render()  # imports every module
    owners: dict[str, str] = {}
    for cls in all_error_classes():
        assert cls.__doc__, f"{cls.__name__} needs a docstring"
        if cls.code in owners and owners[cls.code] != cls.__qualname__:
            # A subclass may not silently reuse its parent's code with a different meaning.
            assert cls.__dict__.get("code") is None, f"{cls.code} defined twice"
        owners.setdefault(cls.code, cls.__qualname__)
