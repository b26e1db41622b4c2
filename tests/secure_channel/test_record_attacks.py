"""Attacks on the records of an established channel: alter, truncate, replay, reorder, drop,
reflect, oversize, outlive. Each closes the session with a typed error; the module then
resumes (no full handshake) and the payment goes through on the new session."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from secure_channel import ChannelSuite, Session
from secure_channel.errors import (
    BadRecord,
    ChannelError,
    Malformed,
    RecordOutOfOrder,
    RecordReplay,
    RecordTooLarge,
    SessionExpired,
    Unexpected,
)
from secure_channel.records import MAX_PLAINTEXT

from .helpers import ALL_SUITES, NOW, Pki, honest

SUITES = [ChannelSuite.DHE_SM2_SM4GCM_SM3, ChannelSuite.DHE_P256_AES128GCM_SHA256,
          ChannelSuite.KT_P256_AES256GCM_SHA256]


def sessions(pki: Pki, suite: ChannelSuite) -> tuple[Session, Session, object]:
    init, resp = honest(pki, suite)
    assert init.session is not None
    assert resp.session is not None
    return init.session, resp.session, init.resumption


def resumes_and_pays(pki: Pki, suite: ChannelSuite, resumption: object) -> None:
    from secure_channel import Resumption

    assert isinstance(resumption, Resumption)
    init, resp = honest(pki, suite, resume=resumption)
    assert init.resumed
    assert resp.resumed


def attack(pki: Pki, suite: ChannelSuite, error: type[ChannelError],
           tamper: Callable[[list[bytes]], bytes]) -> None:
    """Three honest records from module to platform; the relay delivers the first, then
    ``tamper(records)`` instead of the second."""
    module, platform, resumption = sessions(pki, suite)
    records = [module.seal(f"payment {i}".encode(), NOW)[0] for i in range(3)]
    assert platform.open(records[0], NOW) == b"payment 0"
    with pytest.raises(error):
        platform.open(tamper(records), NOW)
    assert platform.closed
    with pytest.raises(Unexpected):
        platform.open(records[1], NOW)  # nothing more on a closed session, even honest
    resumes_and_pays(pki, suite, resumption)


def flip(unit: bytes, at: int) -> bytes:
    b = bytearray(unit)
    b[at] ^= 0x80
    return bytes(b)


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("at", [0, 2, 6, 7, 12, -1], ids=lambda a: f"byte{a}")
def test_relay_that_alters_a_record_is_refused(pki: Pki, suite: ChannelSuite, at: int) -> None:
    attack(pki, suite, ChannelError, lambda r: flip(r[1], at))


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_relay_that_truncates_a_record_is_refused(pki: Pki, suite: ChannelSuite) -> None:
    attack(pki, suite, BadRecord, lambda r: r[1][:-1])
    attack(pki, suite, Malformed, lambda r: r[1][:10])


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_relay_that_replays_a_record_is_refused(pki: Pki, suite: ChannelSuite) -> None:
    attack(pki, suite, RecordReplay, lambda r: r[0])


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_relay_that_drops_or_reorders_records_is_refused(pki: Pki,
                                                         suite: ChannelSuite) -> None:
    attack(pki, suite, RecordOutOfOrder, lambda r: r[2])


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_relay_that_reflects_a_record_to_its_sender_is_refused(pki: Pki,
                                                               suite: ChannelSuite) -> None:
    module, platform, resumption = sessions(pki, suite)
    [own] = module.seal(b"approve", NOW)  # sequence 1: the next one the module expects too
    [answer] = platform.seal(b"ok", NOW)
    assert module.open(answer, NOW) == b"ok"
    with pytest.raises(BadRecord):
        module.open(own, NOW)  # same epoch and sequence, the other direction's key
    resumes_and_pays(pki, suite, resumption)


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_record_from_another_session_is_refused(pki: Pki, suite: ChannelSuite) -> None:
    module, _platform, _ = sessions(pki, suite)
    _module2, platform2, resumption2 = sessions(pki, suite)
    [record] = module.seal(b"payment", NOW)
    with pytest.raises(BadRecord):
        platform2.open(record, NOW)
    resumes_and_pays(pki, suite, resumption2)


def test_oversized_records_are_refused_on_both_ends(pki: Pki) -> None:
    suite = ChannelSuite.DHE_P256_AES128GCM_SHA256
    module, platform, resumption = sessions(pki, suite)
    with pytest.raises(RecordTooLarge):
        module.seal(b"x" * (MAX_PLAINTEXT + 1), NOW)
    [fits] = module.seal(b"x" * MAX_PLAINTEXT, NOW)
    assert platform.open(fits, NOW) == b"x" * MAX_PLAINTEXT
    with pytest.raises(RecordTooLarge):
        platform.open(fits + b"\x00", NOW)
    resumes_and_pays(pki, suite, resumption)


def test_session_outliving_its_lifetime_is_refused(pki: Pki) -> None:
    suite = ChannelSuite.KT_P256_AES128GCM_SHA256
    module, platform, resumption = sessions(pki, suite)
    [record] = module.seal(b"late", NOW + 3599)
    with pytest.raises(SessionExpired):
        platform.open(record, NOW + 3600)
    with pytest.raises(SessionExpired):
        module.seal(b"later", NOW + 3600)
    resumes_and_pays(pki, suite, resumption)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_key_update_moves_each_direction_and_old_epoch_records_are_replays(
        pki: Pki, suite: ChannelSuite) -> None:
    module, platform, _ = sessions(pki, suite)
    [before] = module.seal(b"epoch 0", NOW)
    assert platform.open(before, NOW) == b"epoch 0"
    update = module.update_keys(NOW)
    [after] = module.seal(b"epoch 1", NOW)
    assert after[1:3] == b"\x00\x01"
    assert after[3:7] == b"\x00\x00\x00\x00"
    assert platform.open(update, NOW) is None
    assert platform.open(after, NOW) == b"epoch 1"
    [back] = platform.seal(b"still epoch 0 this way", NOW)
    assert back[1:3] == b"\x00\x00"
    assert module.open(back, NOW) == b"still epoch 0 this way"
    with pytest.raises(RecordReplay):
        platform.open(before, NOW)


def test_records_skipping_a_key_update_are_refused(pki: Pki) -> None:
    suite = ChannelSuite.DHE_P256_AES128GCM_SHA256
    module, platform, resumption = sessions(pki, suite)
    module.update_keys(NOW)  # dropped by the relay
    [after] = module.seal(b"epoch 1", NOW)
    with pytest.raises(RecordOutOfOrder):
        platform.open(after, NOW)
    resumes_and_pays(pki, suite, resumption)


def test_sender_updates_keys_itself_before_the_per_key_limit(pki: Pki) -> None:
    from secure_channel import records

    suite = ChannelSuite.DHE_P256_AES128GCM_SHA256
    module, platform, _ = sessions(pki, suite)
    module._send.sequence = records.RECORDS_PER_KEY - 1
    platform._receive.sequence = records.RECORDS_PER_KEY - 1
    update, record = module.seal(b"payment", NOW)
    assert update[0] == 0x18
    assert platform.open(update, NOW) is None
    assert platform.open(record, NOW) == b"payment"


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_relay_cannot_tell_a_padded_ping_from_a_payment_by_length(pki: Pki,
                                                                  suite: ChannelSuite) -> None:
    module, platform, _ = sessions(pki, suite)
    [ping] = module.seal(b"PING", NOW, pad_to=256)
    [payment] = module.seal(b"approve 12.50 EUR to shop-7\x00\x00", NOW, pad_to=256)
    assert len(ping) == len(payment) == 7 + 256 + 1 + 16
    assert platform.open(ping, NOW) == b"PING"
    assert platform.open(payment, NOW) == b"approve 12.50 EUR to shop-7\x00\x00"
    with pytest.raises(RecordTooLarge):
        module.seal(b"PING", NOW, pad_to=MAX_PLAINTEXT + 1)


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_no_traffic_or_resumption_secret_shows_in_a_printout(pki: Pki,
                                                             suite: ChannelSuite) -> None:
    """A session's direction state and a resumption ticket end up in log lines and tracebacks
    as ``repr``; none of their secrets, keys or IVs may appear there."""
    module, _, resumption = sessions(pki, suite)
    send = module._send
    secrets_ = [send.secret, send.key, send.iv, module._receive.secret,
                resumption.secret]  # type: ignore[attr-defined]
    printed = repr(send) + repr(module._receive) + repr(resumption)
    for secret in secrets_:
        for form in (secret.hex(), secret.hex().upper(), repr(secret)):
            assert form not in printed
