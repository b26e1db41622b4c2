from __future__ import annotations

import pytest

from .helpers import Pki


@pytest.fixture(scope="session")
def pki_template() -> Pki:
    return Pki.make()


@pytest.fixture
def pki(pki_template: Pki) -> Pki:
    """The deployment's keys (made once: SM2 key generation is slow in pure Python) with a
    fresh revocation list and session cache for each test."""
    return Pki(pki_template.cas, pki_template.channel, pki_template.modules)
