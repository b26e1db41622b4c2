"""``decode_envelope``: every e2e message's ``from_body``, reached through its envelope.

Module and platform both decode envelopes that crossed the gateway. The documentation promises
deterministic CBOR only, so an accepted envelope must re-encode to exactly the same bytes.
"""

from __future__ import annotations

from e2e import E2EError, decode_envelope, encode_envelope

from ..engine import FuzzOracleError, Target
from ._samples import envelopes


def one_input(data: bytes) -> None:
    message = decode_envelope(data)
    if encode_envelope(message) != data:
        raise FuzzOracleError(f"{type(message).__name__} accepted in a form that does not "
                              "re-encode to the same bytes")


TARGET = Target("envelope", one_input, (E2EError,), envelopes, max_len=9000)
