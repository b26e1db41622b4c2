"""``decode_from_gateway``: what the platform reads from the broker (a relay response or
relay progress, told apart by key 6)."""

from __future__ import annotations

from e2e import E2EError
from relay_contract import (
    LinkReport,
    OwnerStatus,
    RelayProgress,
    RelayResponse,
    RelayStatus,
    decode_from_gateway,
)

from ..engine import FuzzOracleError, Target
from ._samples import envelopes


def one_input(data: bytes) -> None:
    response = decode_from_gateway(data)
    if response.encode() != data:
        raise FuzzOracleError("relay response accepted in a form that does not re-encode")


def seeds() -> list[bytes]:
    timings = {"queue": 0.001, "connect": 0.0, "ble": 0.2, "gateway_own": 0.003}
    return [RelayResponse(b"\x11" * 16, RelayStatus.OK, envelopes()[1], "", timings).encode(),
            RelayResponse(b"\x11" * 16, RelayStatus.QUEUE_FULL, b"", "8 queued").encode(),
            RelayResponse(b"\x11" * 16, RelayStatus.MALFORMED_REQUEST).encode(),
            RelayProgress(b"\x11" * 16, OwnerStatus.AWAITING_OWNER).encode(),
            RelayResponse(b"\x11" * 16, RelayStatus.OK, envelopes()[1], "", timings,
                          LinkReport(bytes.fromhex("c0ffee000001"),
                                     bytes.fromhex("001a7dda7113"))).encode()]


TARGET = Target("relay_response", one_input, (E2EError,), seeds, max_len=9000)
