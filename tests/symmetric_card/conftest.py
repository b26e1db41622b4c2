from __future__ import annotations

import pytest

from symmetric_card import CardSuite

from .world import World


@pytest.fixture(params=list(CardSuite), ids=lambda s: s.label)
def world(request: pytest.FixtureRequest) -> World:
    """Each test runs in both suites: AES-128-GCM/SHA-256 and SM4-GCM/SM3."""
    return World(request.param)
