"""The two roles' state machines: module = initiator, platform = responder, sans-IO."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cbor2

from . import crypto
from .crypto import CryptoFailure, Rng, SigningKey
from .records import Direction
from .schedule import (
    BAD_SIGNATURE,
    CERT_INVALID,
    MALFORMED,
    MODULE_LABEL,
    PLATFORM_LABEL,
    SUITES,
    OutsideError,
    Suite,
    certificates_digest,
    check_certificate,
    check_finished,
    decode_handshake,
    encode_handshake,
    finished_mac,
    handshake_secret,
    signed_bytes,
    traffic_secrets,
)

UNSUPPORTED_VERSION, UNSUPPORTED_SUITE, UNEXPECTED, DECRYPT_FAILED, REVOKED = 2, 3, 4, 8, 6
USAGE_MODULE, USAGE_CHANNEL = 1, 3


def error_unit(code: int) -> bytes:
    """0x15 || {1: code}."""
    return b"\x15" + cbor2.dumps({1: code}, canonical=True)


def _shape(body: dict[int, object], kind: int, keys: set[int]) -> None:
    if body.get(1) != kind:
        raise OutsideError(UNEXPECTED, f"expected message type {kind}, got {body.get(1)!r}")
    if set(body) != keys:
        raise OutsideError(MALFORMED, f"keys {sorted(body)}")


def _bytes(value: object, size: int | None = None, *, most: int = 1024) -> bytes:
    if not isinstance(value, bytes):
        raise OutsideError(MALFORMED, "not a byte string")
    if len(value) != size if size else not 1 <= len(value) <= most:
        raise OutsideError(MALFORMED, "byte string size")
    return value


def _uint(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise OutsideError(MALFORMED, "uint")
    return value


@dataclass(frozen=True)
class Ticket:
    """What a resumption needs, kept by both sides."""

    session_id: bytes
    suite: int
    resumption: bytes
    cd: bytes
    module_cert: bytes = b""


class Session:
    """Both directions of an established session, from one side's view."""

    def __init__(self, suite: Suite, send: bytes, recv: bytes) -> None:
        self.tx, self.rx = Direction(suite, send), Direction(suite, recv)
        self.closed = False

    def seal(self, content: bytes, pad_to: int = 0) -> bytes:
        """An application record; ``pad_to`` pads the content to that many bytes."""
        if self.closed:
            raise OutsideError(UNEXPECTED, "session closed")
        return self.tx.seal(content, pad_to)

    def key_update(self) -> bytes:
        """A key update record; this side's sending direction moves to the next epoch."""
        return self.tx.key_update()

    def open(self, unit: bytes) -> bytes | None:
        """Content, or None after a key update record; any failure closes the session."""
        if self.closed:
            raise OutsideError(UNEXPECTED, "session closed")
        try:
            return self.rx.open(unit)
        except OutsideError:
            self.closed = True
            raise


class Initiator:
    """The module's side: hello, then the platform's answers."""

    def __init__(self, *, suites: list[int], key: SigningKey, certificate: bytes,
                 ca_roots: dict[int, bytes], rng: Rng, now: int,
                 ticket: Ticket | None = None) -> None:
        self.suites, self.key, self.cert, self.roots = suites, key, certificate, ca_roots
        self.rng, self.now, self.ticket_in = rng, now, ticket
        self.transcript = b""
        self.state = "start"
        self.session: Session | None = None
        self.ticket: Ticket | None = None
        self.lifetime = 0

    def hello(self) -> bytes:
        """The first unit."""
        self.random_m = self.rng(32)
        body: dict[int, object] = {1: 1, 2: [1], 3: list(self.suites), 4: self.random_m}
        if self.ticket_in is not None:
            body[5] = self.ticket_in.session_id
        unit = encode_handshake(body)
        self.transcript, self.state = unit, "hello"
        return unit

    def receive(self, unit: bytes) -> list[bytes]:
        """Feed one unit from the platform; returns the units to send."""
        if unit[:1] == b"\x15":
            raise OutsideError(16, "peer error")
        body = decode_handshake(unit)
        if self.state == "hello" and body.get(1) == 2:
            return self._server_hello(unit, body)
        if self.state == "hello" and body.get(1) == 3:
            return self._server_resume(unit, body)
        if self.state == "wait_finished":
            check_finished(self.suite, self.hs, self.cd, self.transcript, "platform", unit)
            self.transcript += unit
            mine = encode_handshake({1: 5, 2: finished_mac(
                self.suite, self.hs, self.cd, self.transcript, "module")})
            self.transcript += mine
            t = traffic_secrets(self.suite, self.hs, self.transcript)
            self.session = Session(self.suite, t.m2p, t.p2m)
            self.ticket = Ticket(self.session_id, self.suite.ident, t.resumption, self.cd)
            self.state = "done"
            return [mine]
        raise OutsideError(UNEXPECTED, f"type {body.get(1)!r} in state {self.state}")

    def _common(self, body: dict[int, object]) -> None:
        if body[2] != 1:
            raise OutsideError(UNSUPPORTED_VERSION, "version")
        if body[3] not in self.suites or body[3] not in SUITES:
            raise OutsideError(UNSUPPORTED_SUITE, "suite not offered")
        self.suite = SUITES[_uint(body[3])]
        self.random_p = _bytes(body[4], 32)
        self.session_id = _bytes(body[6], 16)
        self.lifetime = _uint(body[7])

    def _server_resume(self, unit: bytes, body: dict[int, object]) -> list[bytes]:
        _shape(body, 3, {1, 2, 3, 4, 6, 7})
        if self.ticket_in is None:
            raise OutsideError(UNEXPECTED, "resume without a ticket")
        self._common(body)
        if self.suite.ident != self.ticket_in.suite:
            raise OutsideError(UNSUPPORTED_SUITE, "resumed suite differs")
        self.transcript += unit
        self.cd = self.ticket_in.cd
        self.hs = handshake_secret(self.suite, self.random_m, self.random_p,
                                   self.ticket_in.resumption)
        self.state = "wait_finished"
        return []

    def _server_hello(self, unit: bytes, body: dict[int, object]) -> list[bytes]:
        kind = body.get(3)
        eph = isinstance(kind, int) and kind in SUITES and SUITES[kind].ephemeral
        _shape(body, 2, {1, 2, 3, 4, 5, 6, 7, 8, 9} if eph else {1, 2, 3, 4, 5, 6, 7})
        self._common(body)
        suite = self.suite
        root = self.roots.get(suite.cert_suite)
        if root is None:
            raise OutsideError(UNSUPPORTED_SUITE, "no CA root")
        channel = check_certificate(_bytes(body[5]), root, suite.cert_suite, USAGE_CHANNEL,
                                    self.now)
        if suite.ephemeral:
            try:
                crypto.verify(suite.family, channel.public, signed_bytes(
                    suite, PLATFORM_LABEL, self.transcript, unit, 9), _bytes(body[9], most=80))
            except CryptoFailure as exc:
                raise OutsideError(BAD_SIGNATURE, "platform") from exc
            scalar, point = crypto.ecdh_keypair(suite.family, self.rng)
            try:
                ikm = crypto.ecdh(suite.family, scalar, _bytes(body[8], 65))
            except CryptoFailure as exc:
                raise OutsideError(MALFORMED, "point") from exc
            exchange = point
        else:
            ikm = self.rng(48)
            if suite.family == "sm2":
                k = crypto.random_scalar("sm2", self.rng)
                exchange = crypto.sm2_encrypt(channel.public, ikm, k)
            else:
                e = crypto.p256_private(crypto.ecdh_keypair("p256", self.rng)[0])
                exchange = crypto.ecies_seal(channel.public, ikm, e)
        self.transcript += unit
        draft = encode_handshake({1: 4, 2: self.cert, 3: exchange})
        sig = self.key.sign(MODULE_LABEL + suite_hash(suite)(self.transcript + draft), self.rng)
        kx = encode_handshake({1: 4, 2: self.cert, 3: exchange, 4: sig})
        self.transcript += kx
        self.cd = certificates_digest(suite, channel.raw, self.cert)
        self.hs = handshake_secret(suite, self.random_m, self.random_p, ikm)
        self.state = "wait_finished"
        return [kx]


def suite_hash(suite: Suite) -> Callable[[bytes], bytes]:
    """The suite's hash function."""
    return crypto.hash_fn(suite.family)


class Responder:
    """The platform's side: one handshake, fed the module's units."""

    def __init__(self, *, preference: list[int], channel: dict[str, tuple[SigningKey, bytes]],
                 module_ca: dict[int, bytes], rng: Rng, now: int, cache: dict[bytes, Ticket],
                 revoked: Callable[[bytes], bool] = lambda cert: False,
                 lifetime: int = 3600) -> None:
        self.preference, self.channel, self.module_ca = preference, channel, module_ca
        self.rng, self.now, self.cache, self.revoked = rng, now, cache, revoked
        self.lifetime, self.state, self.transcript = lifetime, "start", b""
        self.session: Session | None = None
        self.resumed = False

    def receive(self, unit: bytes) -> list[bytes]:
        """Feed one unit from the module; returns the units to send."""
        if unit[:1] == b"\x15":
            raise OutsideError(16, "peer error")
        body = decode_handshake(unit)
        if self.state == "start":
            return self._hello(unit, body)
        if self.state == "wait_kx":
            return self._key_exchange(unit, body)
        if self.state == "wait_finished":
            check_finished(self.suite, self.hs, self.cd, self.transcript, "module", unit)
            self.transcript += unit
            t = traffic_secrets(self.suite, self.hs, self.transcript)
            self.session = Session(self.suite, t.p2m, t.m2p)
            self.cache[self.session_id] = Ticket(self.session_id, self.suite.ident,
                                                 t.resumption, self.cd, self.module_cert)
            self.state = "done"
            return []
        raise OutsideError(UNEXPECTED, f"state {self.state}")

    def _hello(self, unit: bytes, body: dict[int, object]) -> list[bytes]:
        _shape(body, 1, {1, 2, 3, 4, 5} if 5 in body else {1, 2, 3, 4})
        versions, offered = body[2], body[3]
        if not (isinstance(versions, list) and isinstance(offered, list)
                and 1 <= len(versions) <= 16 and 1 <= len(offered) <= 16):
            raise OutsideError(MALFORMED, "lists")
        offered = [_uint(s) for s in offered]
        if 1 not in [_uint(v) for v in versions]:
            raise OutsideError(UNSUPPORTED_VERSION, "no version 1")
        self.random_m = _bytes(body[4], 32)
        self.transcript = unit
        ticket = self.cache.pop(_bytes(body[5], 16), None) if 5 in body else None
        if ticket is not None and ticket.suite in offered and not self.revoked(ticket.module_cert):
            self.suite = SUITES[ticket.suite]
            self.random_p = self.rng(32)
            self.session_id = self.rng(16)
            resume = encode_handshake({1: 3, 2: 1, 3: self.suite.ident, 4: self.random_p,
                                       6: self.session_id, 7: self.lifetime})
            self.transcript += resume
            self.cd, self.module_cert = ticket.cd, ticket.module_cert
            self.hs = handshake_secret(self.suite, self.random_m, self.random_p, ticket.resumption)
            fin = encode_handshake({1: 5, 2: finished_mac(
                self.suite, self.hs, self.cd, self.transcript, "platform")})
            self.transcript += fin
            self.resumed, self.state = True, "wait_finished"
            return [resume, fin]
        chosen = [s for s in self.preference
                  if s in offered and s in SUITES and SUITES[s].family in self.channel]
        if not chosen:
            raise OutsideError(UNSUPPORTED_SUITE, "no suite in common")
        self.suite = suite = SUITES[chosen[0]]
        key, self.channel_cert = self.channel[suite.family]
        self.random_p = self.rng(32)
        self.session_id = self.rng(16)
        hello: dict[int, object] = {1: 2, 2: 1, 3: suite.ident, 4: self.random_p,
                                    5: self.channel_cert, 6: self.session_id, 7: self.lifetime}
        if suite.ephemeral:
            self.eph, hello[8] = crypto.ecdh_keypair(suite.family, self.rng)
            draft = encode_handshake(hello)
            hello[9] = key.sign(PLATFORM_LABEL + suite_hash(suite)(self.transcript + draft),
                                self.rng)
        out = encode_handshake(hello)
        self.transcript += out
        self.state = "wait_kx"
        return [out]

    def _key_exchange(self, unit: bytes, body: dict[int, object]) -> list[bytes]:
        _shape(body, 4, {1, 2, 3, 4})
        suite = self.suite
        root = self.module_ca.get(suite.cert_suite)
        if root is None:
            raise OutsideError(CERT_INVALID, "no module CA")
        self.module_cert = _bytes(body[2])
        module = check_certificate(self.module_cert, root, suite.cert_suite, USAGE_MODULE, self.now)
        if self.revoked(self.module_cert):
            raise OutsideError(REVOKED, "revoked")
        try:
            crypto.verify(suite.family, module.public, signed_bytes(
                suite, MODULE_LABEL, self.transcript, unit, 4), _bytes(body[4], most=80))
        except CryptoFailure as exc:
            raise OutsideError(BAD_SIGNATURE, "module") from exc
        exchange = _bytes(body[3], most=256)
        key = self.channel[suite.family][0]
        try:
            if suite.ephemeral:
                ikm = crypto.ecdh(suite.family, self.eph, _bytes(exchange, 65))
            elif suite.family == "sm2":
                ikm = crypto.sm2_decrypt(key.scalar, exchange)
            else:
                ikm = crypto.ecies_open(crypto.p256_private(key.scalar), exchange)
        except CryptoFailure as exc:
            code = MALFORMED if suite.ephemeral else DECRYPT_FAILED
            raise OutsideError(code, "exchange") from exc
        if not suite.ephemeral and len(ikm) != 48:
            raise OutsideError(DECRYPT_FAILED, "master secret length")
        self.transcript += unit
        self.cd = certificates_digest(suite, self.channel_cert, self.module_cert)
        self.hs = handshake_secret(suite, self.random_m, self.random_p, ikm)
        fin = encode_handshake({1: 5, 2: finished_mac(
            suite, self.hs, self.cd, self.transcript, "platform")})
        self.transcript += fin
        self.state = "wait_finished"
        return [fin]
