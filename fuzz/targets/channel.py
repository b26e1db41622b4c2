"""The secure channel's parsers: what the gateway hands the module and the platform.

The first byte chooses: 0 the platform's reading of a module's channel envelope
(``decode_carried``), 1 the module's, 2 a handshake unit (``decode_handshake``), 3 a record's
application message (``decode_app``), 4 a unit fed to a platform responder that is waiting for
the module's hello (the whole handshake machine behind it), 5 a unit opened by an established
session (the record layer). Only ``ChannelError`` may escape; accepted envelopes and
application messages re-encode to themselves. Keys are real (P-256, made once per process) and
the seeds are the units of a real handshake and a real order record.
"""

from __future__ import annotations

import time
from functools import cache

from e2e import CertificateAuthority, Suite, generate_private_key
from secure_channel import (
    USAGE_CHANNEL,
    ChannelError,
    ChannelInitiator,
    ChannelResponder,
    ChannelSuite,
    ModuleCredentials,
    PlatformCredentials,
    ResponderPolicy,
    Session,
)
from secure_channel.application import PAD_TO, Order, decode_app
from secure_channel.carriage import ChannelOpen, ChannelUnits, decode_carried
from secure_channel.wire import decode_handshake

from ..engine import FuzzOracleError, Target

SUITE = ChannelSuite.DHE_P256_AES128GCM_SHA256
NOW = time.time()


@cache
def _world() -> tuple[PlatformCredentials, ModuleCredentials]:
    ca = CertificateAuthority.generate(Suite.P256_SHA256)
    ckey, mkey = generate_private_key(Suite.P256_SHA256), generate_private_key(Suite.P256_SHA256)
    ccert = ca.issue(ckey.public_key, b"p" * 16, not_before=int(NOW) - 60,
                     not_after=int(NOW) + 86400, usage=USAGE_CHANNEL)
    mcert = ca.issue(mkey.public_key, b"m" * 16, not_before=int(NOW) - 60,
                     not_after=int(NOW) + 86400)
    return (PlatformCredentials({Suite.P256_SHA256: (ckey, ccert)},
                                {Suite.P256_SHA256: ca.public_key}),
            ModuleCredentials(mkey, mcert, {Suite.P256_SHA256: ca.public_key}))


def _responder() -> ChannelResponder:
    platform, _ = _world()
    return ChannelResponder(platform, ResponderPolicy([SUITE], lambda cert: False))


@cache
def _handshake() -> tuple[list[bytes], Session, Session]:
    """The units of one real handshake, and both ends' sessions after it."""
    _, module = _world()
    init, resp = ChannelInitiator(module, suites=[SUITE]), _responder()
    units = [init.start(NOW)]
    back = resp.receive(units[-1], NOW)
    units += back
    forward = init.receive(back[0], NOW)
    units += forward
    back = resp.receive(forward[0], NOW)
    units += back
    units += init.receive(back[0], NOW)
    resp.receive(units[-1], NOW)
    assert init.session is not None
    assert resp.session is not None
    return units, init.session, resp.session


def one_input(data: bytes) -> None:
    if not data:
        return
    choice, body = data[0] % 6, data[1:]
    if choice in (0, 1):
        carried = decode_carried(body, to_module=choice == 1)
        if carried.encode() != body:
            raise FuzzOracleError("channel envelope accepted in a form that does not re-encode")
    elif choice == 2:
        decode_handshake(body)
    elif choice == 3:
        message = decode_app(body)
        if message.encode() != body:
            raise FuzzOracleError("application message accepted in a form that does not "
                                  "re-encode")
    elif choice == 4:
        _responder().receive(body, NOW)
    else:
        _, module_session, _ = _handshake()
        # a fresh copy of the module's receiving state each time: one input, one record
        session = Session(hash=module_session._receive.hash, aead=module_session._aead,
                          send_secret=module_session._send.secret,
                          receive_secret=module_session._receive.secret,
                          expires_at=NOW + 3600, session_id=b"s" * 16, peer_id=b"p" * 16)
        session.open(body, NOW)


def seeds() -> list[bytes]:
    units, _, platform_session = _handshake()
    order = Order(b"\xa3\x01\x01\x02\x01\x03\xa0", 2).encode()
    record = platform_session.seal(order, NOW, pad_to=PAD_TO)[0]
    out = [bytes([1]) + ChannelOpen((int(SUITE),)).encode(),
           bytes([0]) + ChannelUnits((units[0],), False).encode(),
           bytes([1]) + ChannelUnits((units[1],), True).encode(),
           bytes([3]) + order, bytes([4]) + units[0], bytes([5]) + record]
    out += [bytes([2]) + unit for unit in units]
    return out


TARGET = Target("channel", one_input, (ChannelError,), seeds, max_len=4200)
