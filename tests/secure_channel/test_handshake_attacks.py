"""Attacks on the handshake by the relay in between (the gateway, the broker, anyone on the
link), each reproduced against the real core with real keys of both suites. Each must end in a
typed error with a code, never in a session the other side does not share, and the honest
handshake must work right after it with the same platform state."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from e2e.certificates import CertificateAuthority
from e2e.suites import Suite as SignatureSuite
from e2e.suites import generate_private_key
from secure_channel import (
    USAGE_CHANNEL,
    ChannelError,
    ChannelErrorCode,
    ChannelInitiator,
    ChannelResponder,
    ChannelSuite,
    ModuleCredentials,
    PlatformCredentials,
)
from secure_channel.errors import (
    BadSignature,
    CertificateInvalid,
    CertificateRevoked,
    Malformed,
    SessionExpired,
    Unexpected,
    UnsupportedSuite,
    UnsupportedVersion,
)

from .helpers import ALL_SUITES, NOW, Pki, honest, run

REPRESENTATIVE = [ChannelSuite.KT_SM2_SM4GCM_SM3, ChannelSuite.DHE_SM2_SM4GCM_SM3,
                  ChannelSuite.KT_P256_AES128GCM_SHA256, ChannelSuite.DHE_P256_AES128GCM_SHA256]
"""Both key exchanges in both signature suites (the AES-256 suites differ only in key size
and run in the honest tests)."""

FULL_UNITS = 5


def rewrite(unit: bytes, change: Any) -> bytes:
    """The handshake unit with its CBOR map changed by ``change(map)`` and re-encoded
    canonically: what a relay that understands the protocol would send."""
    body = cbor2.loads(unit[1:])
    change(body)
    return unit[:1] + cbor2.dumps(body, canonical=True)


def assert_typed(exc: ChannelError) -> None:
    assert type(exc) is not ChannelError
    assert exc.code is not ChannelErrorCode.INTERNAL


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_honest_handshake_and_resumption_in_every_suite(pki: Pki, suite: ChannelSuite) -> None:
    init, resp = honest(pki, suite)
    assert init.session is not None
    assert resp.session is not None
    assert resp.session.peer_id == pki.modules[suite.params.signature][1].module_id
    assert init.session.peer_id == b"platform-1"
    again, resp2 = honest(pki, suite, resume=init.resumption)
    assert again.resumed
    assert resp2.resumed
    assert resp2.session is not None
    assert resp2.session.peer_id == resp.session.peer_id


@pytest.mark.parametrize("suite", REPRESENTATIVE, ids=lambda s: s.name)
@pytest.mark.parametrize("index", range(FULL_UNITS))
def test_relay_that_alters_a_handshake_byte_is_refused(pki: Pki, suite: ChannelSuite,
                                                       index: int) -> None:
    length = 0

    for where in (1 / 64, 1 / 3, 1 / 2, 1.0):
        def relay(i: int, unit: bytes, at: float = where) -> list[bytes]:
            nonlocal length
            if i != index:
                return [unit]
            length = len(unit)
            b = bytearray(unit)
            b[min(int(len(b) * at), len(b) - 1)] ^= 0x01
            return [bytes(b)]

        init, resp = pki.pair(suite)
        with pytest.raises(ChannelError) as caught:
            run(init, resp, relay)
        assert_typed(caught.value)
        assert resp.session is None
    assert length > 30
    honest(pki, suite)


@pytest.mark.parametrize("suite", REPRESENTATIVE, ids=lambda s: s.name)
@pytest.mark.parametrize("index", range(FULL_UNITS))
def test_relay_that_truncates_a_handshake_unit_is_refused(pki: Pki, suite: ChannelSuite,
                                                          index: int) -> None:
    init, resp = pki.pair(suite)
    with pytest.raises(Malformed):
        run(init, resp, lambda i, u: [u[: len(u) // 2]] if i == index else [u])
    assert resp.session is None
    honest(pki, suite)


@pytest.mark.parametrize("suite", REPRESENTATIVE, ids=lambda s: s.name)
@pytest.mark.parametrize("index", range(FULL_UNITS))
def test_relay_that_replays_a_handshake_unit_is_refused(pki: Pki, suite: ChannelSuite,
                                                        index: int) -> None:
    init, resp = pki.pair(suite)
    with pytest.raises(Unexpected):
        run(init, resp, lambda i, u: [u, u] if i == index else [u])
    honest(pki, suite)


@pytest.mark.parametrize("suite", REPRESENTATIVE, ids=lambda s: s.name)
@pytest.mark.parametrize("index", range(FULL_UNITS))
def test_relay_that_drops_a_handshake_unit_leaves_no_session_and_times_out(
        pki: Pki, suite: ChannelSuite, index: int) -> None:
    held: list[bytes] = []
    init, resp = pki.pair(suite)
    run(init, resp, lambda i, u: held.append(u) or [] if i == index else [u])
    assert resp.session is None
    assert (init.session is None) == (index < FULL_UNITS - 1)  # its last unit ends the module's
    # The relay delivers the held unit 31 s later: the handshake has timed out.
    late = NOW + 31
    with pytest.raises(SessionExpired):
        if index % 2:  # a unit for the module
            init.receive(held[0], late)
        elif index == 0:  # the platform answers a late hello; the module has given up
            [answer] = resp.receive(held[0], late)
            init.receive(answer, late)
        else:
            resp.receive(held[0], late)
    assert resp.session is None
    honest(pki, suite)


@pytest.mark.parametrize("suite", REPRESENTATIVE, ids=lambda s: s.name)
def test_relay_that_reorders_handshake_units_is_refused(pki: Pki, suite: ChannelSuite) -> None:
    # Full handshake: the module's key exchange from a recorded run sent before any hello.
    recorded: list[bytes] = []
    init, resp = pki.pair(suite)
    run(init, resp, lambda i, u: recorded.append(u) or [u])
    fresh = ChannelResponder(pki.platform(), pki.policy())
    with pytest.raises(Unexpected):
        fresh.receive(recorded[2], NOW)
    # Resumption: the platform's finished delivered before its resume hello.
    module = ChannelInitiator(pki.module(suite), suites=[suite], resume=init.resumption)
    platform = ChannelResponder(pki.platform(), pki.policy())
    hello_resume, finished = platform.receive(module.start(NOW), NOW)
    with pytest.raises(Unexpected):
        module.receive(finished, NOW)
    # The failed resumption consumed its session id: the module's next try runs in full.
    init2, _ = honest(pki, suite, resume=init.resumption)
    assert not init2.resumed
    assert hello_resume


@pytest.mark.parametrize("suite", REPRESENTATIVE, ids=lambda s: s.name)
def test_forged_channel_certificate_is_refused(pki: Pki, suite: ChannelSuite) -> None:
    sig = suite.params.signature
    rogue_ca = CertificateAuthority.generate(sig)
    rogue_key = generate_private_key(sig)
    forged = rogue_ca.issue(rogue_key.public_key, b"platform-1", not_before=NOW - 10,
                            not_after=NOW + 1000, usage=USAGE_CHANNEL)
    rogue = PlatformCredentials({sig: (rogue_key, forged)},
                                {s: ca.public_key for s, ca in pki.cas.items()})
    init = ChannelInitiator(pki.module(suite), suites=[suite])
    with pytest.raises(CertificateInvalid):
        run(init, ChannelResponder(rogue, pki.policy()))
    # The module's own (usage 1) certificate offered as a channel certificate, with its key.
    mkey, mcert = pki.modules[sig]
    posing = PlatformCredentials({sig: (mkey, mcert)},
                                 {s: ca.public_key for s, ca in pki.cas.items()})
    with pytest.raises(CertificateInvalid, match="usage"):
        run(ChannelInitiator(pki.module(suite), suites=[suite]),
            ChannelResponder(posing, pki.policy()))
    # The genuine certificate with its subject changed by the relay.
    init = ChannelInitiator(pki.module(suite), suites=[suite])

    def relay(i: int, unit: bytes) -> list[bytes]:
        if i != 1:
            return [unit]

        def change(m: dict[int, Any]) -> None:
            outer = cbor2.loads(m[5])
            tbs = cbor2.loads(outer[1])
            tbs[3] = b"platform-2"
            outer[1] = cbor2.dumps(tbs, canonical=True)
            m[5] = cbor2.dumps(outer, canonical=True)
        return [rewrite(unit, change)]

    with pytest.raises(CertificateInvalid):
        run(init, ChannelResponder(pki.platform(), pki.policy()), relay)
    honest(pki, suite)


@pytest.mark.parametrize("suite", REPRESENTATIVE, ids=lambda s: s.name)
def test_module_certificate_from_another_ca_is_refused(pki: Pki, suite: ChannelSuite) -> None:
    sig = suite.params.signature
    other_ca = CertificateAuthority.generate(sig)
    key = generate_private_key(sig)
    cert = other_ca.issue(key.public_key, b"module-x", not_before=NOW - 10, not_after=NOW + 99)
    creds = ModuleCredentials(key, cert, {s: ca.public_key for s, ca in pki.cas.items()})
    resp = ChannelResponder(pki.platform(), pki.policy())
    with pytest.raises(CertificateInvalid):
        run(ChannelInitiator(creds, suites=[suite]), resp)
    assert resp.session is None
    honest(pki, suite)


@pytest.mark.parametrize("suite", REPRESENTATIVE, ids=lambda s: s.name)
def test_revoked_module_certificate_is_refused_in_full_and_in_resumption(
        pki: Pki, suite: ChannelSuite) -> None:
    init, _ = honest(pki, suite)
    pki.revoked.add(pki.modules[suite.params.signature][1].serial)
    module = ChannelInitiator(pki.module(suite), suites=[suite], resume=init.resumption)
    resp = ChannelResponder(pki.platform(), pki.policy())
    with pytest.raises(CertificateRevoked) as caught:
        run(module, resp)
    assert caught.value.code is ChannelErrorCode.CERTIFICATE_REVOKED
    assert not resp.resumed
    assert resp.session is None
    pki.revoked.clear()
    honest(pki, suite)


def test_suite_downgrade_by_stripping_the_offer_is_refused(pki: Pki) -> None:
    strong, weak = ChannelSuite.DHE_P256_AES256GCM_SHA256, ChannelSuite.KT_P256_AES128GCM_SHA256
    init = ChannelInitiator(pki.module(strong), suites=[strong, weak])
    resp = ChannelResponder(pki.platform(), pki.policy([strong, weak]))

    def strip(i: int, unit: bytes) -> list[bytes]:
        if i == 0:
            return [rewrite(unit, lambda m: m.__setitem__(3, [int(weak)]))]
        return [unit]

    with pytest.raises(BadSignature):
        run(init, resp, strip)
    assert resp.session is None
    assert resp.suite is weak  # the relay did move the platform's choice, and it did not help
    init, resp = pki.pair(strong, offer=[strong, weak], platform_suites=[strong, weak])
    run(init, resp)
    assert init.suite is strong
    assert resp.suite is strong


@pytest.mark.parametrize("suite", [ChannelSuite.KT_SM2_SM4GCM_SM3,
                                   ChannelSuite.KT_P256_AES128GCM_SHA256],
                         ids=lambda s: s.name)
def test_suite_downgrade_by_rewriting_the_choice_is_refused(pki: Pki,
                                                            suite: ChannelSuite) -> None:
    weaker = {ChannelSuite.KT_SM2_SM4GCM_SM3: ChannelSuite.DHE_SM2_SM4GCM_SM3,
              ChannelSuite.KT_P256_AES128GCM_SHA256: ChannelSuite.DHE_P256_AES128GCM_SHA256}
    # The module offers both; the platform picks the ephemeral one; the relay claims key
    # transport was chosen (removing the ephemeral key and signature that would show it).
    dhe = weaker[suite]
    init = ChannelInitiator(pki.module(suite), suites=[dhe, suite])
    resp = ChannelResponder(pki.platform(), pki.policy([dhe, suite]))

    def change(m: dict[int, Any]) -> None:
        m[3] = int(suite)
        m.pop(8)
        m.pop(9)

    with pytest.raises(ChannelError) as caught:
        run(init, resp, lambda i, u: [rewrite(u, change)] if i == 1 else [u])
    assert_typed(caught.value)
    assert resp.session is None
    assert init.session is None
    honest(pki, suite)


def test_version_downgrade_is_refused(pki: Pki) -> None:
    suite = ChannelSuite.DHE_P256_AES128GCM_SHA256
    # A version the platform does not speak.
    init, resp = pki.pair(suite)
    with pytest.raises(UnsupportedVersion):
        run(init, resp, lambda i, u: [rewrite(u, lambda m: m.__setitem__(2, [0]))]
            if i == 0 else [u])
    # An offer rewritten (a version added): the transcripts differ, the module's signature fails.
    init, resp = pki.pair(suite)
    with pytest.raises(BadSignature):
        run(init, resp, lambda i, u: [rewrite(u, lambda m: m.__setitem__(2, [0, 1]))]
            if i == 0 else [u])
    # A platform hello naming a version the module did not offer.
    init, resp = pki.pair(suite)
    with pytest.raises(UnsupportedVersion):
        run(init, resp, lambda i, u: [rewrite(u, lambda m: m.__setitem__(2, 2))]
            if i == 1 else [u])
    honest(pki, suite)


def test_no_common_suite_is_refused_with_its_code(pki: Pki) -> None:
    init = ChannelInitiator(pki.module(ChannelSuite.KT_SM2_SM4GCM_SM3),
                            suites=[ChannelSuite.KT_SM2_SM4GCM_SM3])
    resp = ChannelResponder(pki.platform(), pki.policy([ChannelSuite.DHE_P256_AES128GCM_SHA256]))
    with pytest.raises(UnsupportedSuite) as caught:
        resp.receive(init.start(NOW), NOW)
    assert caught.value.code is ChannelErrorCode.UNSUPPORTED_SUITE
    from secure_channel.errors import PeerError
    from secure_channel.wire import encode_error

    with pytest.raises(PeerError) as told:
        init.receive(encode_error(caught.value.code), NOW)
    assert told.value.peer_code == ChannelErrorCode.UNSUPPORTED_SUITE


@pytest.mark.parametrize("suite", REPRESENTATIVE, ids=lambda s: s.name)
def test_replayed_whole_session_is_refused(pki: Pki, suite: ChannelSuite) -> None:
    # Full handshake: every unit the module sent, replayed to the platform.
    module_units: list[bytes] = []
    init, resp = pki.pair(suite)
    run(init, resp, lambda i, u: (module_units.append(u) if i % 2 == 0 else None) or [u])
    replay = ChannelResponder(pki.platform(), pki.policy())
    replay.receive(module_units[0], NOW)
    with pytest.raises(BadSignature):
        replay.receive(module_units[1], NOW)
    assert replay.session is None
    # Resumption: the module's hello and finished of a resumption, replayed.
    resumed_units: list[bytes] = []
    again, _ = pki.pair(suite, resume=init.resumption)
    run(again, ChannelResponder(pki.platform(), pki.policy()),
        lambda i, u: (resumed_units.append(u) if i % 2 == 0 else None) or [u])
    assert again.resumed
    replay = ChannelResponder(pki.platform(), pki.policy())
    [full_hello] = replay.receive(resumed_units[0], NOW)  # the id was used: a full handshake
    assert full_hello[0] == 0x16
    assert not replay.resumed
    with pytest.raises(Unexpected):
        replay.receive(resumed_units[1], NOW)
    # A record of the first session replayed into the resumed one.
    assert init.session is not None
    assert again.session is not None
    honest(pki, suite, resume=again.resumption)


def test_handshake_units_after_failure_are_refused(pki: Pki) -> None:
    suite = ChannelSuite.KT_P256_AES128GCM_SHA256
    init, resp = pki.pair(suite)
    hello = init.start(NOW)
    with pytest.raises(Malformed):
        resp.receive(b"\x16\xa0", NOW)
    assert resp.failed
    with pytest.raises(Unexpected):
        resp.receive(hello, NOW)


def test_module_refuses_a_platform_without_a_root_for_its_suite(pki: Pki) -> None:
    suite = ChannelSuite.KT_SM2_SM4GCM_SM3
    key, cert = pki.modules[SignatureSuite.SM2_SM3]
    creds = ModuleCredentials(key, cert, {SignatureSuite.P256_SHA256:
                                          pki.cas[SignatureSuite.P256_SHA256].public_key})
    with pytest.raises(UnsupportedSuite):
        run(ChannelInitiator(creds, suites=[suite]), ChannelResponder(pki.platform(),
                                                                      pki.policy()))


def test_resumption_after_the_module_certificate_expired_runs_a_full_handshake(
        pki: Pki) -> None:
    suite = ChannelSuite.DHE_P256_AES128GCM_SHA256
    init, _ = honest(pki, suite)
    assert init.resumption is not None
    cert = pki.modules[suite.params.signature][1]
    later = cert.not_after + 1
    module = ChannelInitiator(pki.module(suite), suites=[suite], resume=init.resumption)
    resp = ChannelResponder(pki.platform(), pki.policy(ALL_SUITES))
    with pytest.raises(CertificateInvalid, match="expired"):
        run(module, resp, now=later)
    assert resp.failed  # the platform refused the module's certificate in the full handshake
    assert not resp.resumed
