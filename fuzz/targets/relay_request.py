"""``decode_from_platform``: what the daemon reads from the broker (a relay request or a
relay cancel, told apart by key 5)."""

from __future__ import annotations

from e2e import E2EError
from relay_contract import RelayCancel, RelayRequest, decode_from_platform

from ..engine import FuzzOracleError, Target
from ._samples import FAR_FUTURE, envelopes


def one_input(data: bytes) -> None:
    request = decode_from_platform(data)
    if request.encode() != data:
        raise FuzzOracleError("relay request accepted in a form that does not re-encode")


def seeds() -> list[bytes]:
    return [RelayRequest(b"\x11" * 16, b"\x33" * 16, env, float(FAR_FUTURE)).encode()
            for env in envelopes()[:2]] + \
        [RelayRequest(b"\x01" * 16, b"\x02" * 16, b"", 1.5).encode(),
         RelayCancel(b"\x11" * 16, b"\x33" * 16).encode()]


TARGET = Target("relay_request", one_input, (E2EError,), seeds, max_len=9000)
