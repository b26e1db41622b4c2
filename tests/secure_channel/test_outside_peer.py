"""A second, outside implementation of the channel (``outside_peer``, written from
docs/secure-channel.md and the vectors alone) against the published vectors and the core.

Only this file imports the core, and only names ``secure_channel/__init__.py`` exports; the
project's ``e2e`` certificate API makes the test certificates. No radio, no mock: both sides are
sans-IO and the units pass from one to the other unchanged (or with one byte altered).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

import e2e
from secure_channel import (
    ChannelError,
    ChannelErrorCode,
    ChannelInitiator,
    ChannelResponder,
    ChannelSuite,
    ModuleCredentials,
    PlatformCredentials,
    ResponderPolicy,
    SessionCache,
)

from .outside_peer import crypto
from .outside_peer import schedule as sched
from .outside_peer.peer import Initiator, Responder, error_unit
from .outside_peer.records import Direction
from .outside_peer.schedule import OutsideError

VECTORS = json.loads((Path(__file__).parents[2] / "docs" / "vectors" /
                      "secure-channel.json").read_text())["vectors"]
NOW = 1_800_000_000
ALL_SUITES = list(ChannelSuite)


# ---- (a) the published vectors ---------------------------------------------------------
@pytest.mark.parametrize("vector", VECTORS, ids=[v["suite"] for v in VECTORS])
def test_outside_peer_reproduces_the_published_vectors(vector: dict) -> None:  # type: ignore[type-arg]
    h = bytes.fromhex
    suite = sched.SUITES[vector["suite_id"]]
    units = [h(u) for u in vector["units"]]
    ca = h(vector["keys"]["ca_public"])
    channel = sched.check_certificate(h(vector["certificates"]["channel"]), ca,
                                      suite.cert_suite, 3, vector["now"])
    module = sched.check_certificate(h(vector["certificates"]["module"]), ca,
                                     suite.cert_suite, 1, vector["now"])
    bodies = [sched.decode_handshake(u) for u in units]
    assert [b[1] for b in bodies] == [1, 2, 4, 5, 5]
    assert bodies[1][5] == channel.raw and bodies[2][2] == module.raw
    # the private scalars give the published public keys
    assert crypto.SigningKey(suite.family, int(vector["keys"]["channel_private"], 16)
                             ).public() == channel.public
    assert crypto.SigningKey(suite.family, int(vector["keys"]["module_private"], 16)
                             ).public() == module.public
    if suite.ephemeral:
        crypto.verify(suite.family, channel.public, sched.signed_bytes(
            suite, sched.PLATFORM_LABEL, units[0], units[1], 9), bodies[1][9])  # type: ignore[arg-type]
        ikm = crypto.ecdh(suite.family, int(vector["platform_ephemeral_private"], 16),
                          bodies[2][3])  # type: ignore[arg-type]
    else:
        assert 8 not in bodies[1] and 9 not in bodies[1]
        scalar = int(vector["keys"]["channel_private"], 16)
        ikm = (crypto.sm2_decrypt(scalar, bodies[2][3]) if suite.family == "sm2"  # type: ignore[arg-type]
               else crypto.ecies_open(crypto.p256_private(scalar), bodies[2][3]))  # type: ignore[arg-type]
    crypto.verify(suite.family, module.public, sched.signed_bytes(
        suite, sched.MODULE_LABEL, units[0] + units[1], units[2], 4), bodies[2][4])  # type: ignore[arg-type]
    assert ikm == h(vector["ikm"])
    secrets = vector["secrets"]
    hs = sched.handshake_secret(suite, bodies[0][4], bodies[1][4], ikm)  # type: ignore[arg-type]
    cd = sched.certificates_digest(suite, channel.raw, module.raw)
    assert (hs.hex(), cd.hex()) == (secrets["handshake_secret"], secrets["certificates_digest"])
    sched.check_finished(suite, hs, cd, b"".join(units[:3]), "platform", units[3])
    sched.check_finished(suite, hs, cd, b"".join(units[:4]), "module", units[4])
    full = sched.traffic_secrets(suite, hs, b"".join(units))
    _check_traffic(suite, full, secrets)
    records = vector["records"]
    for traffic, name in ((full.m2p, "module_to_platform"), (full.p2m, "platform_to_module")):
        record = records[name]
        assert Direction(suite, traffic).open(h(record["unit"])) == h(record["plaintext"])
        # sealing the same plaintext unpadded at sequence 0 gives the same bytes
        assert Direction(suite, traffic).seal(h(record["plaintext"])) == h(record["unit"])

    resumed = vector["resumption"]
    r_units = [h(u) for u in resumed["units"]]
    r_bodies = [sched.decode_handshake(u) for u in r_units]
    assert [b[1] for b in r_bodies] == [1, 3, 5, 5] and r_bodies[0][5] == bodies[1][6]
    r_hs = sched.handshake_secret(suite, r_bodies[0][4], r_bodies[1][4],  # type: ignore[arg-type]
                                  full.resumption)
    assert r_hs.hex() == resumed["secrets"]["handshake_secret"]
    assert resumed["secrets"]["certificates_digest"] == cd.hex()
    sched.check_finished(suite, r_hs, cd, b"".join(r_units[:2]), "platform", r_units[2])
    sched.check_finished(suite, r_hs, cd, b"".join(r_units[:3]), "module", r_units[3])
    _check_traffic(suite, sched.traffic_secrets(suite, r_hs, b"".join(r_units)),
                   resumed["secrets"])


def _check_traffic(suite: sched.Suite, got: sched.Secrets, want: dict[str, str]) -> None:
    assert (got.m2p.hex(), got.p2m.hex(), got.resumption.hex()) == (
        want["m2p_traffic"], want["p2m_traffic"], want["resumption"])
    for traffic, side in ((got.m2p, "m2p"), (got.p2m, "p2m")):
        key, iv = sched.key_iv(suite, traffic)
        assert (key.hex(), iv.hex()) == (want[f"{side}_key"], want[f"{side}_iv"])


# ---- a deployment shared by the interop tests -------------------------------------------
@dataclass
class Family:
    """One signature family's CA, channel key and module key, in both implementations."""

    e2e_suite: e2e.Suite
    ca_public: bytes
    channel_key: e2e.PrivateKey
    channel_cert: e2e.Certificate
    module_key: e2e.PrivateKey
    module_cert: e2e.Certificate

    def outside(self, which: str) -> crypto.SigningKey:
        key = self.channel_key if which == "channel" else self.module_key
        family = "sm2" if self.e2e_suite == e2e.Suite.SM2_SM3 else "p256"
        return crypto.SigningKey(family, int.from_bytes(key.private_bytes(), "big"))


def _family(suite: e2e.Suite) -> Family:
    ca_key = e2e.generate_private_key(suite)
    name = "sm2" if suite == e2e.Suite.SM2_SM3 else "p256"
    ca_public = crypto.SigningKey(name, int.from_bytes(ca_key.private_bytes(), "big")).public()
    ca = e2e.CertificateAuthority(ca_key)
    channel_key, module_key = e2e.generate_private_key(suite), e2e.generate_private_key(suite)

    def public(key: e2e.PrivateKey) -> e2e.PublicKey:
        point = crypto.SigningKey(name, int.from_bytes(key.private_bytes(), "big")).public()
        return e2e.PublicKey(suite, point)

    window = {"not_before": NOW - 3600, "not_after": NOW + 86_400}
    return Family(suite, ca_public, channel_key,
                  ca.issue(public(channel_key), b"platform-1", usage=3, **window),
                  module_key, ca.issue(public(module_key), b"module-0001", usage=1, **window))


@pytest.fixture(scope="module")
def families() -> dict[str, Family]:
    return {"sm2": _family(e2e.Suite.SM2_SM3), "p256": _family(e2e.Suite.P256_SHA256)}


def _fam(families: dict[str, Family], suite: ChannelSuite) -> Family:
    return families["sm2" if suite.value < 0x20 else "p256"]


def _core_responder(fam: Family, suite: ChannelSuite, cache: SessionCache) -> ChannelResponder:
    creds = PlatformCredentials(
        channel_keys={fam.e2e_suite: (fam.channel_key, fam.channel_cert)},
        module_cas={fam.e2e_suite: e2e.PublicKey(fam.e2e_suite, fam.ca_public)})
    return ChannelResponder(creds, ResponderPolicy(suites=[suite], is_revoked=lambda c: False,
                                                   cache=cache))


def _core_initiator(fam: Family, suite: ChannelSuite, resume: object = None) -> ChannelInitiator:
    creds = ModuleCredentials(key=fam.module_key, certificate=fam.module_cert,
                              channel_roots={fam.e2e_suite: e2e.PublicKey(fam.e2e_suite,
                                                                          fam.ca_public)})
    return ChannelInitiator(creds, suites=[suite], resume=resume)  # type: ignore[arg-type]


def _outside_initiator(fam: Family, suite: ChannelSuite, ticket: object = None) -> Initiator:
    cs = fam.e2e_suite.value
    return Initiator(suites=[suite.value], key=fam.outside("module"),
                     certificate=fam.module_cert.encode(), ca_roots={cs: fam.ca_public},
                     rng=os.urandom, now=NOW, ticket=ticket)  # type: ignore[arg-type]


def _outside_responder(fam: Family, suite: ChannelSuite, cache: dict) -> Responder:  # type: ignore[type-arg]
    family = "sm2" if fam.e2e_suite == e2e.Suite.SM2_SM3 else "p256"
    return Responder(preference=[suite.value],
                     channel={family: (fam.outside("channel"), fam.channel_cert.encode())},
                     module_ca={fam.e2e_suite.value: fam.ca_public}, rng=os.urandom, now=NOW,
                     cache=cache)


Feed = Callable[[bytes], list[bytes]]


def _run(first: bytes, to_responder: Feed, to_initiator: Feed,
         tamper: Callable[[str, bytes], bytes] = lambda who, unit: unit) -> None:
    """Pass units back and forth until neither side has anything to say."""
    outbound = [first]
    while outbound:
        answers = [a for unit in outbound for a in to_responder(tamper("i", unit))]
        outbound = [a for unit in answers for a in to_initiator(tamper("r", unit))]


# ---- (b) interop: both roles, all six suites ---------------------------------------------
@pytest.mark.parametrize("suite", ALL_SUITES, ids=[s.name for s in ALL_SUITES])
def test_outside_module_against_core_platform(families: dict[str, Family],
                                              suite: ChannelSuite) -> None:
    fam, cache = _fam(families, suite), SessionCache()
    core = _core_responder(fam, suite, cache)
    mine = _outside_initiator(fam, suite)
    _run(mine.hello(), lambda u: core.receive(u, NOW), mine.receive)
    assert mine.session is not None and mine.ticket is not None
    _records_both_ways(core_session=core.session, my_session=mine.session)

    # resumption: a new connection, the ticket, no certificate
    core2 = _core_responder(fam, suite, cache)
    again = _outside_initiator(fam, suite, mine.ticket)
    hello = again.hello()
    sent: list[bytes] = []

    def to_core(unit: bytes) -> list[bytes]:
        out = core2.receive(unit, NOW)
        sent.extend(out)
        return out

    _run(hello, to_core, again.receive)
    assert sched.decode_handshake(sent[0])[1] == 3, "the core resumed"
    assert again.session is not None
    _records_both_ways(core_session=core2.session, my_session=again.session)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=[s.name for s in ALL_SUITES])
def test_outside_platform_against_core_module(families: dict[str, Family],
                                              suite: ChannelSuite) -> None:
    fam, cache = _fam(families, suite), {}  # type: ignore[var-annotated]
    mine = _outside_responder(fam, suite, cache)
    core = _core_initiator(fam, suite)
    _run(core.start(NOW), mine.receive, lambda u: core.receive(u, NOW))
    assert mine.session is not None and not mine.resumed
    _records_both_ways(core_session=core.session, my_session=mine.session, core_is_module=True)

    mine2 = _outside_responder(fam, suite, cache)
    core2 = _core_initiator(fam, suite, core.resumption)
    _run(core2.start(NOW), mine2.receive, lambda u: core2.receive(u, NOW))
    assert mine2.resumed and mine2.session is not None
    _records_both_ways(core_session=core2.session, my_session=mine2.session, core_is_module=True)


def _records_both_ways(*, core_session: object, my_session: object,
                       core_is_module: bool = False) -> None:
    """A record each way, padded and not, a key update each way, a record after each."""
    core, mine = core_session, my_session
    assert core is not None and mine is not None
    for _ in range(2):
        for unit in core.seal(b"order\x00\x00", NOW, pad_to=64):  # type: ignore[attr-defined]
            got = mine.open(unit)  # type: ignore[attr-defined]
        assert got == b"order\x00\x00" and len(unit) == 7 + 64 + 1 + 16
        assert core.open(mine.seal(b"approval"), NOW) == b"approval"  # type: ignore[attr-defined]
        assert mine.open(core.update_keys(NOW)) is None  # type: ignore[attr-defined]
        assert core.open(mine.key_update(), NOW) is None  # type: ignore[attr-defined]
    assert mine.rx.epoch == 2 and mine.tx.epoch == 2  # type: ignore[attr-defined]


# ---- records: replay, gap and reflection refused by the core -----------------------------
def test_core_refuses_replayed_skipped_and_reflected_outside_records(
        families: dict[str, Family]) -> None:
    suite = ChannelSuite.DHE_P256_AES128GCM_SHA256
    fam, cache = _fam(families, suite), SessionCache()
    core = _core_responder(fam, suite, cache)
    mine = _outside_initiator(fam, suite)
    _run(mine.hello(), lambda u: core.receive(u, NOW), mine.receive)
    assert mine.session is not None and core.session is not None
    first = mine.session.seal(b"one")
    assert core.session.open(first, NOW) == b"one"
    with pytest.raises(ChannelError) as replay:
        core.session.open(first, NOW)
    assert replay.value.code == ChannelErrorCode.RECORD_REPLAY
    # a fresh session: a gap, then a record reflected back to its sender
    core2 = _core_responder(fam, suite, cache)
    mine2 = _outside_initiator(fam, suite)
    _run(mine2.hello(), lambda u: core2.receive(u, NOW), mine2.receive)
    assert mine2.session is not None and core2.session is not None
    mine2.session.seal(b"dropped by the relay")
    with pytest.raises(ChannelError) as gap:
        core2.session.open(mine2.session.seal(b"two"), NOW)
    assert gap.value.code == ChannelErrorCode.RECORD_OUT_OF_ORDER
    core3 = _core_responder(fam, suite, cache)
    mine3 = _outside_initiator(fam, suite)
    _run(mine3.hello(), lambda u: core3.receive(u, NOW), mine3.receive)
    assert core3.session is not None and mine3.session is not None
    with pytest.raises(ChannelError) as reflected:
        core3.session.open(core3.session.seal(b"to the module", NOW)[0], NOW)
    assert reflected.value.code == ChannelErrorCode.BAD_RECORD
    with pytest.raises(ChannelError):  # any failure closed the core's session
        core3.session.open(mine3.session.seal(b"honest"), NOW)
    core4 = _core_responder(fam, suite, cache)
    mine4 = _outside_initiator(fam, suite, mine3.ticket)
    _run(mine4.hello(), lambda u: core4.receive(u, NOW), mine4.receive)
    assert core4.session is not None and mine4.session is not None
    assert core4.session.open(mine4.session.seal(b"honest"), NOW) == b"honest"


# ---- (c) a byte altered in each handshake unit the outside peer makes --------------------
def _flip(unit: bytes, pos: int) -> bytes:
    """Flip the low bit of one byte (the last one if a DER signature made the unit shorter)."""
    pos = min(pos, len(unit) - 1)
    return unit[:pos] + bytes([unit[pos] ^ 0x01]) + unit[pos + 1:]


def _tamper_nth(side: str, index: int, pos: int) -> Callable[[str, bytes], bytes]:
    """Alter byte ``pos`` of the ``index``-th unit ``side`` ("i" or "r") sends."""
    sent = [0]

    def tamper(who: str, unit: bytes) -> bytes:
        if who != side:
            return unit
        sent[0] += 1
        return _flip(unit, pos) if sent[0] - 1 == index else unit

    return tamper


def _positions(length: int, every: bool) -> list[int]:
    return list(range(length)) if every else sorted({0, 1, length // 2, length - 1})


TAMPER_SUITES = ALL_SUITES


@pytest.mark.parametrize("suite", TAMPER_SUITES, ids=[s.name for s in TAMPER_SUITES])
def test_relay_alters_a_byte_of_each_outside_module_unit(families: dict[str, Family],
                                                         suite: ChannelSuite) -> None:
    """Every byte (DHE P-256) or four per unit (others) of the hello, key exchange and
    finished made by the outside module: the core never ends with a session, refuses with a
    ChannelError (or, where the outside peer saw the change first, the core gets its error
    unit and stops with peer_error); an honest handshake on the same cache works after."""
    fam, cache = _fam(families, suite), SessionCache()
    every = suite == ChannelSuite.DHE_P256_AES128GCM_SHA256
    honest_lengths = _honest_module_lengths(fam, suite)
    for index, length in enumerate(honest_lengths):
        for pos in _positions(length, every):
            core = _core_responder(fam, suite, cache)
            mine = _outside_initiator(fam, suite)
            try:
                _run(mine.hello(), partial(core.receive, now=NOW), mine.receive,
                     _tamper_nth("i", index, pos))
            except ChannelError as exc:
                assert exc.code != ChannelErrorCode.INTERNAL, (index, pos)
            except OutsideError as exc:
                with pytest.raises(ChannelError) as told:
                    core.receive(error_unit(exc.code), NOW)
                assert told.value.code == ChannelErrorCode.PEER_ERROR
            else:
                pytest.fail(f"unit {index} byte {pos} altered and the handshake finished")
            assert core.session is None
    core = _core_responder(fam, suite, cache)
    mine = _outside_initiator(fam, suite)
    _run(mine.hello(), lambda u: core.receive(u, NOW), mine.receive)
    assert core.session is not None


def _honest_module_lengths(fam: Family, suite: ChannelSuite) -> list[int]:
    core = _core_responder(fam, suite, SessionCache())
    mine = _outside_initiator(fam, suite)
    lengths: list[int] = []

    def note(who: str, unit: bytes) -> bytes:
        if who == "i":
            lengths.append(len(unit))
        return unit

    _run(mine.hello(), lambda u: core.receive(u, NOW), mine.receive, note)
    return lengths


@pytest.mark.parametrize("suite", TAMPER_SUITES, ids=[s.name for s in TAMPER_SUITES])
@pytest.mark.parametrize("resumed", [False, True], ids=["full", "resumed"])
def test_relay_alters_a_byte_of_each_outside_platform_unit(
        families: dict[str, Family], suite: ChannelSuite, resumed: bool) -> None:
    """The server hello (or server resume) and the platform's finished made by the outside
    platform, four bytes each: the core module refuses with a ChannelError."""
    fam, cache = _fam(families, suite), {}  # type: ignore[var-annotated]
    first = _outside_responder(fam, suite, cache)
    core = _core_initiator(fam, suite)
    _run(core.start(NOW), first.receive, lambda u: core.receive(u, NOW))
    ticket = core.resumption
    lengths: list[int] = []
    probe = _outside_responder(fam, suite, dict(cache))
    probe_core = _core_initiator(fam, suite, ticket if resumed else None)
    _run(probe_core.start(NOW), probe.receive, lambda u: probe_core.receive(u, NOW),
         lambda who, u: (lengths.append(len(u)) if who == "r" else None) or u)
    assert probe.resumed == resumed
    for index, length in enumerate(lengths):
        for pos in _positions(length, False):
            mine = _outside_responder(fam, suite, dict(cache))
            module = _core_initiator(fam, suite, ticket if resumed else None)
            with pytest.raises((ChannelError, OutsideError)) as refused:
                _run(module.start(NOW), mine.receive, partial(module.receive, now=NOW),
                     _tamper_nth("r", index, pos))
            if isinstance(refused.value, ChannelError):
                assert refused.value.code != ChannelErrorCode.INTERNAL, (index, pos)
            assert module.session is None or mine.session is None


# ---- (a, continued) the vectors regenerated byte for byte by the outside peer ----------
def _recorder(made: list[bytes]) -> Callable[[str, bytes], bytes]:
    """A pass-through that notes every unit in transcript order."""

    def note(who: str, unit: bytes) -> bytes:
        made.append(unit)
        return unit

    return note


class _Stream:
    """The page's vector randomness: SHA-256(seed || counter32) blocks from counter 0."""

    def __init__(self, seed: bytes) -> None:
        self.seed, self.counter, self.buffer = seed, 0, b""

    def __call__(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += hashlib.sha256(self.seed + self.counter.to_bytes(4, "big")).digest()
            self.counter += 1
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out


class _VectorKey(crypto.SigningKey):
    """Signatures as the page says the vectors were made: RFC 6979 for P-256, and for SM2
    k = SHA-256("vector k" || scalar (32 bytes) || message) mod (n - 1) + 1."""

    def sign(self, msg: bytes, rng: crypto.Rng) -> bytes:
        if self.family == "sm2":
            digest = hashlib.sha256(b"vector k" + self.scalar.to_bytes(32, "big") + msg).digest()
            k = int.from_bytes(digest, "big") % (crypto.N - 1) + 1
            return crypto.sm2_sign(self.scalar, msg, k)
        return crypto.p256_private(self.scalar).sign(
            msg, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["suite"] for v in VECTORS])
def test_outside_peer_regenerates_the_vector_units_byte_for_byte(vector: dict) -> None:  # type: ignore[type-arg]
    h, name = bytes.fromhex, vector["suite"].encode()
    family = "sm2" if vector["suite_id"] < 0x20 else "p256"
    cert_suite = 2 if family == "sm2" else 1
    ca = h(vector["keys"]["ca_public"])
    channel = (_VectorKey(family, int(vector["keys"]["channel_private"], 16)),
               h(vector["certificates"]["channel"]))
    module_key = _VectorKey(family, int(vector["keys"]["module_private"], 16))
    cache: dict[bytes, object] = {}
    tickets = []
    for prefix, units in ((b"", vector["units"]), (b"resume ", vector["resumption"]["units"])):
        platform = Responder(preference=[vector["suite_id"]], channel={family: channel},
                             module_ca={cert_suite: ca}, rng=_Stream(b"platform " + prefix + name),
                             now=vector["now"], cache=cache)  # type: ignore[arg-type]
        module = Initiator(suites=[vector["suite_id"]], key=module_key,
                           certificate=h(vector["certificates"]["module"]),
                           ca_roots={cert_suite: ca}, rng=_Stream(b"module " + prefix + name),
                           now=vector["now"], ticket=tickets[-1] if tickets else None)
        made: list[bytes] = []
        _run(module.hello(), platform.receive, module.receive, _recorder(made))
        assert module.session is not None and platform.session is not None
        assert [u.hex() for u in made] == units
        tickets.append(module.ticket)


@pytest.mark.parametrize("suite", [s for s in ALL_SUITES if s.value & 0x0F == 2],
                         ids=[s.name for s in ALL_SUITES if s.value & 0x0F == 2])
def test_core_refuses_a_signed_ephemeral_point_off_the_curve(
        families: dict[str, Family], suite: ChannelSuite, monkeypatch: pytest.MonkeyPatch) -> None:
    """The invalid-curve attack: a module's ephemeral point off the curve, under a valid module
    signature (so only the point check can stop it). The honest handshake works after."""
    fam, cache = _fam(families, suite), SessionCache()
    honest = crypto.ecdh_keypair

    def off_curve(family: str, rng: crypto.Rng) -> tuple[int, bytes]:
        scalar, point = honest(family, rng)
        y = (int.from_bytes(point[33:], "big") + 1).to_bytes(32, "big")
        return scalar, point[:33] + y

    monkeypatch.setattr(crypto, "ecdh_keypair", off_curve)
    core = _core_responder(fam, suite, cache)
    mine = _outside_initiator(fam, suite)
    with pytest.raises(ChannelError) as refused:
        _run(mine.hello(), partial(core.receive, now=NOW), mine.receive)
    assert refused.value.code == ChannelErrorCode.MALFORMED
    assert core.session is None
    monkeypatch.setattr(crypto, "ecdh_keypair", honest)
    core = _core_responder(fam, suite, cache)
    mine = _outside_initiator(fam, suite)
    _run(mine.hello(), partial(core.receive, now=NOW), mine.receive)
    assert core.session is not None
