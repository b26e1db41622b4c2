"""Property tests: whatever bytes arrive, the channel's decoders and state machines raise
only the channel's typed errors (never a bare exception from cbor2, cryptography or gmssl),
and a well-formed message survives encoding and decoding unchanged."""

from __future__ import annotations

import contextlib
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_channel import ChannelError, ChannelInitiator, ChannelResponder, ChannelSuite
from secure_channel.errors import DecryptFailed, Malformed
from secure_channel.primitives import ecies_decrypt, sm2_decrypt
from secure_channel.wire import (
    ContentType,
    Finished,
    Hello,
    KeyExchange,
    ServerHello,
    decode_error,
    decode_handshake,
)

from .helpers import NOW, Pki, honest

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.binary(max_size=80)
    | st.text(max_size=10) | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.integers(-2, 12) | st.text(max_size=2), inner, max_size=10),
    max_leaves=20)


def handshake_maps() -> st.SearchStrategy[bytes]:
    """Maps shaped like handshake messages (a valid type key, random other fields)."""
    return st.builds(
        lambda kind, rest: bytes([ContentType.HANDSHAKE]) + cbor2.dumps(
            {**rest, 1: kind}, canonical=True),
        st.integers(0, 6), st.dictionaries(st.integers(2, 10), cbor_values, max_size=9))


@FAST
@given(st.binary(max_size=600) | handshake_maps())
def test_decode_handshake_raises_only_malformed(data: bytes) -> None:
    with contextlib.suppress(Malformed):
        decode_handshake(data)


@FAST
@given(st.binary(max_size=40))
def test_decode_error_raises_only_malformed(data: bytes) -> None:
    with contextlib.suppress(Malformed):
        decode_error(data)


@FAST
@given(st.binary(max_size=300))
def test_key_transport_decryption_raises_only_decrypt_failed(data: bytes) -> None:
    for decrypt in (lambda d: sm2_decrypt(b"\x01" * 32, d),
                    lambda d: ecies_decrypt(b"\x01" * 32, b"\x04" + b"\x00" * 64, d)):
        with contextlib.suppress(DecryptFailed):
            decrypt(data)


@FAST
@given(data=st.binary(max_size=600) | handshake_maps())
def test_platform_fed_hostile_bytes_raises_only_channel_errors(pki: Pki, data: bytes) -> None:
    resp = ChannelResponder(pki.platform(), pki.policy())
    try:
        resp.receive(data, NOW)
    except ChannelError as exc:
        assert type(exc) is not ChannelError


@FAST
@given(data=st.binary(max_size=600) | handshake_maps())
def test_module_fed_hostile_bytes_raises_only_channel_errors(pki: Pki, data: bytes) -> None:
    init = ChannelInitiator(pki.module(ChannelSuite.KT_P256_AES128GCM_SHA256),
                            suites=[ChannelSuite.KT_P256_AES128GCM_SHA256])
    init.start(NOW)
    try:
        init.receive(data, NOW)
    except ChannelError as exc:
        assert type(exc) is not ChannelError


@FAST
@given(data=st.binary(max_size=120))
def test_session_fed_hostile_records_raises_only_channel_errors(pki: Pki, data: bytes) -> None:
    _init, resp = _sessions(pki)
    assert resp.session is not None
    with contextlib.suppress(ChannelError):
        resp.session.open(data, NOW)


@FAST
@given(body=st.binary(max_size=1100), kind=st.sampled_from([0x17, 0x18]))
def test_record_with_the_expected_header_and_forged_body_is_refused(pki: Pki, body: bytes,
                                                                    kind: int) -> None:
    """A forger who knows the next epoch and sequence number still needs the key."""
    _init, resp = _sessions(pki)
    session = resp.session
    epoch, sequence = session._receive.epoch, session._receive.sequence
    header = bytes([kind]) + epoch.to_bytes(2, "big") + sequence.to_bytes(4, "big")
    try:
        session.open(header + body, NOW)
    except ChannelError as exc:
        assert type(exc) is not ChannelError
    else:
        raise AssertionError("a forged record was accepted")


_CACHE: dict[str, Any] = {}


def _sessions(pki: Pki) -> Any:
    if "pair" not in _CACHE:
        _CACHE["pair"] = honest(pki, ChannelSuite.DHE_P256_AES128GCM_SHA256)
    init, resp = _CACHE["pair"]
    resp.session.closed = False  # the same session for every example: reopen after a failure
    return init, resp


ids = st.lists(st.integers(0, 2**16 - 1), min_size=1, max_size=16)


@FAST
@given(ids, ids, st.binary(min_size=32, max_size=32),
       st.none() | st.binary(min_size=16, max_size=16))
def test_hello_round_trips(versions: list[int], suites: list[int], random: bytes,
                           session_id: bytes | None) -> None:
    hello = Hello(versions, suites, random, session_id)
    assert decode_handshake(hello.encode()) == hello


@FAST
@given(st.booleans(), st.integers(0, 2**32 - 1), st.binary(min_size=32, max_size=32),
       st.binary(max_size=500), st.binary(min_size=65, max_size=65), st.binary(max_size=80))
def test_server_hello_round_trips(resume: bool, lifetime: int, random: bytes, cert: bytes,
                                  eph: bytes, sig: bytes) -> None:
    sh = (ServerHello(True, 1, 0x11, random, b"s" * 16, lifetime) if resume else
          ServerHello(False, 1, 0x12, random, b"s" * 16, lifetime, cert, eph, sig))
    assert decode_handshake(sh.encode()) == sh
    ke = KeyExchange(cert, eph, sig)
    assert decode_handshake(ke.encode()) == ke
    fin = Finished(random)
    assert decode_handshake(fin.encode()) == fin
