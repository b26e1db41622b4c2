"""``Certificate.decode``: module certificates arrive from the module and from the API."""

from __future__ import annotations

from e2e import Certificate, E2EError, Suite

from ..engine import FuzzOracleError, Target
from ._samples import certificates


def one_input(data: bytes) -> None:
    cert = Certificate.decode(data)
    if cert.encode() != data:
        raise FuzzOracleError("certificate accepted in a form that does not re-encode")


def seeds() -> list[bytes]:
    return [certificates()[suite][0] for suite in Suite]


TARGET = Target("certificate", one_input, (E2EError,), seeds, max_len=2048)
