"""The published vectors are what the code makes: regenerated here and compared byte for byte,
with the C backends and again with the pure-Python fallback (the backends must agree)."""

from __future__ import annotations

from pathlib import Path

import pytest

from secure_channel import primitives

from .vectors import render

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "secure-channel.json"


def test_published_vectors_are_what_the_code_makes() -> None:
    assert render() == PUBLISHED.read_text(), (
        "regenerate: python -m tests.secure_channel.vectors > docs/vectors/secure-channel.json")


def test_pure_python_fallback_makes_the_same_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(primitives, "_gmalglib", lambda: None)
    assert render() == PUBLISHED.read_text()
