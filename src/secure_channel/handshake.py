"""The handshake (seed steps F1-F10) as two sans-IO state machines fed whole units.

Full handshake, five units (docs/secure-channel.md has every byte)::

    module (ChannelInitiator)                  platform (ChannelResponder)
    Hello {versions, suites, random_m}   ->                                  F1-F2
                                         <-   ServerHello {version, suite, random_p,
                                              channel certificate, session id, lifetime
                                              [, ephemeral key, signature]}    F3-F4
    KeyExchange {module certificate,
      encrypted master secret | ephemeral key,
      signature}                         ->                                  F5-F7
                                         <-   Finished "platform finished"     F8-F9
    Finished "module finished"           ->                                  F9-F10

A resumption (after a BLE reconnect) is Hello with the session id, then ServerResume and the
platform's Finished together, then the module's Finished: no certificate, no public-key
operation, fresh randoms on both sides and so fresh keys.

Every unit's bytes enter the transcript hash in order; the module signs the transcript through
its own key exchange, the platform (ephemeral mode) through its hello, and both finished MACs
cover it, so the offered and chosen versions and suites cannot be changed by a relay without the
handshake failing. Time is given in; randomness comes from ``rng``.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto

from e2e.certificates import USAGE_CONFIRMATION, Certificate, verify_certificate
from e2e.errors import CertificateInvalid as E2ECertificateInvalid
from e2e.errors import E2EError
from e2e.suites import PrivateKey, PublicKey
from e2e.suites import Suite as SignatureSuite

from .errors import (
    BadFinished,
    BadSignature,
    CertificateInvalid,
    CertificateRevoked,
    ChannelError,
    DecryptFailed,
    Malformed,
    PeerError,
    SessionExpired,
    Unexpected,
    UnsupportedSuite,
    UnsupportedVersion,
)
from .primitives import (
    Rng,
    digest,
    ecdh,
    ecies_decrypt,
    ecies_encrypt,
    ephemeral_key,
    expand_label,
    extract,
    mac,
    sm2_decrypt,
    sm2_encrypt,
)
from .records import MAX_PLAINTEXT, Session
from .suites import PROTOCOL_VERSION, ChannelSuite, Exchange, HashName, negotiate_version
from .wire import (
    RANDOM_SIZE,
    SESSION_ID_SIZE,
    ContentType,
    Finished,
    Hello,
    KeyExchange,
    ServerHello,
    decode_error,
    decode_handshake,
)

__all__ = ["HANDSHAKE_TIMEOUT", "MASTER_SECRET_SIZE", "USAGE_CHANNEL", "ChannelInitiator",
           "ChannelResponder", "ModuleCredentials", "PlatformCredentials", "ResponderPolicy",
           "Resumption",
           "SessionCache"]

USAGE_CHANNEL = 3
"""Certificate usage of the platform's channel key (e2e's usages 1 and 2 are the module's
confirmation key and the platform's request-signing key): a key certified for one never passes
as another."""
MASTER_SECRET_SIZE = 48
HANDSHAKE_TIMEOUT = 30.0
"""Seconds from the first unit to the last: a relay that holds a unit back past this ends it."""
SIG_MODULE = b"blegw-sc module signature\x00"
SIG_PLATFORM = b"blegw-sc platform signature\x00"
FIN_PLATFORM = b"platform finished"
FIN_MODULE = b"module finished"

Signer = Callable[[bytes], bytes]
RevocationCheck = Callable[[Certificate], bool]
"""Answers True when the module certificate is revoked (asked at every full handshake and
resumption)."""


@dataclass(frozen=True, slots=True)
class ModuleCredentials:
    """The module's key and certificate, and the CA roots it trusts for channel certificates
    (one per signature suite), preinstalled at provisioning."""

    key: PrivateKey
    certificate: Certificate
    channel_roots: dict[SignatureSuite, PublicKey]
    sign: Signer | None = None
    """Signs with ``key`` unless given (the test vectors give a deterministic signer)."""


@dataclass(frozen=True, slots=True)
class PlatformCredentials:
    """The platform's channel keys and certificates per signature suite and the CA keys that
    certify modules."""

    channel_keys: dict[SignatureSuite, tuple[PrivateKey, Certificate]]
    module_cas: dict[SignatureSuite, PublicKey]
    sign: dict[SignatureSuite, Signer] | None = None


@dataclass(frozen=True, slots=True)
class Resumption:
    """What lets one side resume a session: its id, suite, version, the resumption secret
    (HKDF-Expand-Label(handshake secret, "resumption", transcript hash)), the certificates'
    digest the finished MACs cover, the peer's id and, on the platform, the module certificate
    for the revocation check."""

    session_id: bytes
    suite: ChannelSuite
    version: int
    secret: bytes = field(repr=False)
    certificates_digest: bytes
    peer_id: bytes
    expires_at: float
    module_certificate: Certificate | None = None


class SessionCache:
    """The platform's resumable sessions, each usable once: a resumption consumes its entry and
    the resumed session is stored under a fresh id. Bounded; the oldest goes first."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[bytes, Resumption] = OrderedDict()
        self._max = max_entries

    def store(self, entry: Resumption) -> None:
        self._entries[entry.session_id] = entry
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def take(self, session_id: bytes, now: float) -> Resumption | None:
        entry = self._entries.pop(session_id, None)
        return entry if entry is not None and now < entry.expires_at else None

    def __len__(self) -> int:
        return len(self._entries)


class _State(Enum):
    START = auto()
    WAIT_SERVER_HELLO = auto()
    WAIT_HELLO = auto()
    WAIT_KEY_EXCHANGE = auto()
    WAIT_FINISHED = auto()
    DONE = auto()
    FAILED = auto()


class _Machine:
    """What both sides share: transcript, state, failure handling, the key schedule."""

    def __init__(self, rng: Rng | None, handshake_timeout: float) -> None:
        self._rng: Rng = rng or secrets.token_bytes
        self._given_rng = rng
        """None in use: the C backends may then draw their own randomness."""
        self._transcript = bytearray()
        self._state = _State.START
        self._timeout = handshake_timeout
        self._deadline = 0.0
        self._hash = HashName.SHA256
        self._handshake_secret = b""
        self._certificates_digest = b""
        self.session: Session | None = None
        self.resumption: Resumption | None = None
        self.resumed = False
        self.suite: ChannelSuite | None = None

    @property
    def failed(self) -> bool:
        return self._state is _State.FAILED

    def receive(self, unit: bytes, now: float) -> list[bytes]:
        """Feed one unit from the peer; units to send back. A :class:`ChannelError` ends the
        handshake (send :func:`~secure_channel.wire.encode_error` of its code)."""
        try:
            if self._state in (_State.DONE, _State.FAILED, _State.START):
                raise Unexpected("no handshake unit is expected now")
            if now > self._deadline:
                raise SessionExpired("handshake took too long")
            if isinstance(unit, bytes) and unit[:1] == bytes([ContentType.ERROR]):
                raise PeerError(decode_error(unit))
            return self._step(decode_handshake(unit), unit, now)
        except ChannelError:
            self._state = _State.FAILED
            raise

    def _step(self, message: object, unit: bytes, now: float) -> list[bytes]:
        raise NotImplementedError

    def _th(self) -> bytes:
        return digest(self._hash, bytes(self._transcript))

    def _th_with(self, unit: bytes) -> bytes:
        return digest(self._hash, bytes(self._transcript) + unit)

    def _finished(self, label: bytes) -> bytes:
        key = expand_label(self._hash, self._handshake_secret, "finished", b"", 32)
        return mac(self._hash, key, self._certificates_digest + self._th() + label)

    def _check_finished(self, message: object, unit: bytes, label: bytes) -> None:
        if not isinstance(message, Finished):
            raise Unexpected("expected a finished message")
        if not hmac.compare_digest(message.verify_data, self._finished(label)):
            raise BadFinished(f"{label.decode()} MAC does not match")
        self._transcript += unit

    def _send_finished(self, label: bytes) -> bytes:
        unit = Finished(self._finished(label)).encode()
        self._transcript += unit
        return unit

    def _establish(self, *, initiator: bool, session_id: bytes, suite: ChannelSuite,
                   version: int, lifetime: int, peer_id: bytes, now: float,
                   module_certificate: Certificate | None) -> None:
        th = self._th()
        h = self._hash
        m2p = expand_label(h, self._handshake_secret, "m2p traffic", th, 32)
        p2m = expand_label(h, self._handshake_secret, "p2m traffic", th, 32)
        self.session = Session(hash=h, aead=suite.params.aead,
                               send_secret=m2p if initiator else p2m,
                               receive_secret=p2m if initiator else m2p,
                               expires_at=now + lifetime, session_id=session_id,
                               peer_id=peer_id, max_plaintext=MAX_PLAINTEXT)
        self.resumption = Resumption(
            session_id, suite, version,
            expand_label(h, self._handshake_secret, "resumption", th, 32),
            self._certificates_digest, peer_id, now + lifetime, module_certificate)
        self._state = _State.DONE

    def _keys_from(self, random_m: bytes, random_p: bytes, ikm: bytes) -> None:
        self._handshake_secret = extract(self._hash, random_m + random_p, ikm)

    def _certificates(self, channel_certificate: bytes, module_certificate: bytes) -> None:
        h = self._hash
        self._certificates_digest = digest(
            h, digest(h, channel_certificate) + digest(h, module_certificate))


def _decode_certificate(data: bytes) -> Certificate:
    try:
        return Certificate.decode(data)
    except E2EError as exc:  # MalformedMessage, or UnsupportedSuite for an unknown suite id
        raise CertificateInvalid(f"certificate does not decode: {exc}") from None


def _check_certificate(cert: Certificate, ca: PublicKey, *, now: float, usage: int,
                       suite: SignatureSuite) -> PublicKey:
    if cert.suite is not suite:
        raise CertificateInvalid("certificate is of another signature suite than the channel's")
    try:
        return verify_certificate(cert, ca, now=int(now), usage=usage)
    except E2ECertificateInvalid as exc:
        raise CertificateInvalid(str(exc)) from None


class ChannelInitiator(_Machine):
    """The module's side. ``start()`` gives the hello; ``receive()`` the rest; after the last
    unit ``session`` is the record layer and ``resumption`` what the next connection passes as
    ``resume`` to skip the full handshake."""

    def __init__(self, credentials: ModuleCredentials, *, suites: list[ChannelSuite],
                 resume: Resumption | None = None, rng: Rng | None = None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        super().__init__(rng, handshake_timeout)
        if not suites:
            raise ValueError("offer at least one suite")
        self._creds = credentials
        self._offer = list(suites)
        self._resume = resume
        self._random = b""
        self._chosen: ServerHello | None = None
        self._peer_id = b""

    def start(self, now: float) -> bytes:
        if self._state is not _State.START:
            raise Unexpected("handshake already started")
        self._random = self._rng(RANDOM_SIZE)
        self._deadline = now + self._timeout
        unit = Hello([PROTOCOL_VERSION], [int(s) for s in self._offer], self._random,
                     self._resume.session_id if self._resume else None).encode()
        self._transcript += unit
        self._state = _State.WAIT_SERVER_HELLO
        return unit

    def _step(self, message: object, unit: bytes, now: float) -> list[bytes]:
        if self._state is _State.WAIT_SERVER_HELLO:
            if not isinstance(message, ServerHello):
                raise Unexpected("expected the platform's hello")
            return self._on_server_hello(message, unit, now)
        if self._state is _State.WAIT_FINISHED:
            self._check_finished(message, unit, FIN_PLATFORM)
            out = self._send_finished(FIN_MODULE)
            sh = self._chosen
            assert sh is not None
            assert self.suite is not None
            peer = self._resume.peer_id if self.resumed and self._resume else self._peer_id
            self._establish(initiator=True, session_id=sh.session_id, suite=self.suite,
                            version=sh.version, lifetime=sh.lifetime, peer_id=peer, now=now,
                            module_certificate=None)
            return [out]
        raise Unexpected("no handshake unit is expected now")

    def _on_server_hello(self, sh: ServerHello, unit: bytes, now: float) -> list[bytes]:
        if sh.version != PROTOCOL_VERSION:
            raise UnsupportedVersion("platform chose a version not offered")
        suite = ChannelSuite.parse(sh.suite)
        if suite not in self._offer:
            raise UnsupportedSuite("platform chose a suite not offered")
        self.suite, self._hash, self._chosen = suite, suite.params.hash, sh
        params = suite.params
        if sh.resume:
            r = self._resume
            if r is None or r.suite is not suite or r.version != sh.version:
                raise Unexpected("platform resumed a session this module did not offer")
            self._transcript += unit
            self.resumed = True
            self._certificates_digest = r.certificates_digest
            self._keys_from(self._random, sh.random, r.secret)
            self._state = _State.WAIT_FINISHED
            return []
        root = self._creds.channel_roots.get(params.signature)
        if root is None:
            raise UnsupportedSuite("no CA root for this suite's channel certificates")
        cert = _decode_certificate(sh.certificate)
        channel_key = _check_certificate(cert, root, now=now, usage=USAGE_CHANNEL,
                                         suite=params.signature)
        self._peer_id = cert.module_id
        sm2 = params.signature is SignatureSuite.SM2_SM3
        if params.exchange is Exchange.EPHEMERAL:
            if not sh.ephemeral:
                raise Malformed("ephemeral suite without the platform's ephemeral key")
            signed = SIG_PLATFORM + self._th_with(sh.encode(signed=False))
            if not channel_key.verify(sh.signature, signed):
                raise BadSignature("platform's hello signature does not verify")
            self._transcript += unit
            scalar, exchange = ephemeral_key(sm2, self._rng)
            ikm = ecdh(sm2, scalar, sh.ephemeral)
        else:
            if sh.ephemeral:
                raise Malformed("key transport suite with an ephemeral key")
            self._transcript += unit
            ikm = self._rng(MASTER_SECRET_SIZE)
            exchange = (sm2_encrypt(cert.public_key, ikm, self._given_rng) if sm2 else
                        ecies_encrypt(cert.public_key, ikm, self._rng))
        own = self._creds.certificate.encode()
        unsigned = KeyExchange(own, exchange)
        sign = self._creds.sign or self._creds.key.sign
        signature = sign(SIG_MODULE + self._th_with(unsigned.encode(signed=False)))
        out = KeyExchange(own, exchange, signature).encode()
        self._transcript += out
        self._keys_from(self._random, sh.random, ikm)
        self._certificates(sh.certificate, own)
        self._state = _State.WAIT_FINISHED
        return [out]


@dataclass(slots=True)
class ResponderPolicy:
    """What the platform accepts: suites in its order of preference, how long a session and a
    resumption last, and the revocation check."""

    suites: list[ChannelSuite]
    is_revoked: RevocationCheck
    session_lifetime: int = 3600
    cache: SessionCache | None = None


class ChannelResponder(_Machine):
    """The platform's side of one connection. The credentials, policy and session cache are
    shared between connections; a responder is used for one handshake."""

    def __init__(self, credentials: PlatformCredentials, policy: ResponderPolicy, *,
                 rng: Rng | None = None, handshake_timeout: float = HANDSHAKE_TIMEOUT) -> None:
        super().__init__(rng, handshake_timeout)
        self._creds = credentials
        self._policy = policy
        self._state = _State.WAIT_HELLO
        self._started = False
        self._hello: Hello | None = None
        self._sh: ServerHello | None = None
        self._ephemeral = b""
        self._module_cert: Certificate | None = None
        self._peer = b""

    def receive(self, unit: bytes, now: float) -> list[bytes]:
        if not self._started:
            self._started = True
            self._deadline = now + self._timeout
        return super().receive(unit, now)

    def _step(self, message: object, unit: bytes, now: float) -> list[bytes]:
        if self._state is _State.WAIT_HELLO:
            if not isinstance(message, Hello):
                raise Unexpected("expected the module's hello")
            return self._on_hello(message, unit, now)
        if self._state is _State.WAIT_KEY_EXCHANGE:
            if not isinstance(message, KeyExchange):
                raise Unexpected("expected the module's key exchange")
            return self._on_key_exchange(message, unit, now)
        if self._state is _State.WAIT_FINISHED:
            self._check_finished(message, unit, FIN_MODULE)
            assert self._sh is not None
            assert self.suite is not None
            self._establish(initiator=False, session_id=self._sh.session_id,
                            suite=self.suite, version=self._sh.version,
                            lifetime=self._sh.lifetime, peer_id=self._peer, now=now,
                            module_certificate=self._module_cert)
            if self._policy.cache is not None and self.resumption is not None:
                self._policy.cache.store(self.resumption)
            return []
        raise Unexpected("no handshake unit is expected now")

    def _on_hello(self, hello: Hello, unit: bytes, now: float) -> list[bytes]:
        version = negotiate_version(hello.versions)
        offered = set(hello.suites)
        usable = [s for s in self._policy.suites if int(s) in offered
                  and s.params.signature in self._creds.channel_keys]
        if not usable:
            raise UnsupportedSuite("no suite in common")
        self._transcript += unit
        self._hello = hello
        lifetime = self._policy.session_lifetime
        entry = (self._policy.cache.take(hello.session_id, now)
                 if hello.session_id is not None and self._policy.cache is not None else None)
        if (entry is not None and entry.suite in usable and entry.version == version
                and entry.module_certificate is not None
                and now <= entry.module_certificate.not_after
                and not self._policy.is_revoked(entry.module_certificate)):
            self.suite, self._hash, self.resumed = entry.suite, entry.suite.params.hash, True
            self._module_cert, self._peer = entry.module_certificate, entry.peer_id
            sh = ServerHello(True, version, int(entry.suite), self._rng(RANDOM_SIZE),
                             self._rng(SESSION_ID_SIZE), lifetime)
            first = sh.encode()
            self._transcript += first
            self._sh = sh
            self._certificates_digest = entry.certificates_digest
            self._keys_from(hello.random, sh.random, entry.secret)
            self._state = _State.WAIT_FINISHED
            return [first, self._send_finished(FIN_PLATFORM)]
        suite = usable[0]
        self.suite, self._hash = suite, suite.params.hash
        key, cert = self._creds.channel_keys[suite.params.signature]
        random, session_id = self._rng(RANDOM_SIZE), self._rng(SESSION_ID_SIZE)
        if suite.params.exchange is Exchange.EPHEMERAL:
            sm2 = suite.params.signature is SignatureSuite.SM2_SM3
            self._ephemeral, public = ephemeral_key(sm2, self._rng)
            unsigned = ServerHello(False, version, int(suite), random, session_id, lifetime,
                                   cert.encode(), public)
            sign = (self._creds.sign or {}).get(suite.params.signature, key.sign)
            sh = ServerHello(False, version, int(suite), random, session_id, lifetime,
                             cert.encode(), public,
                             sign(SIG_PLATFORM + self._th_with(unsigned.encode(signed=False))))
        else:
            sh = ServerHello(False, version, int(suite), random, session_id, lifetime,
                             cert.encode())
        out = sh.encode()
        self._transcript += out
        self._sh = sh
        self._state = _State.WAIT_KEY_EXCHANGE
        return [out]

    def _on_key_exchange(self, ke: KeyExchange, unit: bytes, now: float) -> list[bytes]:
        assert self.suite is not None
        assert self._sh is not None
        assert self._hello is not None
        params = self.suite.params
        ca = self._creds.module_cas.get(params.signature)
        if ca is None:
            raise UnsupportedSuite("no module CA for this suite")
        cert = _decode_certificate(ke.certificate)
        module_key = _check_certificate(cert, ca, now=now, usage=USAGE_CONFIRMATION,
                                        suite=params.signature)
        if self._policy.is_revoked(cert):
            raise CertificateRevoked("module certificate is revoked")
        signed = SIG_MODULE + self._th_with(KeyExchange(ke.certificate, ke.exchange).encode(
            signed=False))
        if not module_key.verify(ke.signature, signed):
            raise BadSignature("module's key exchange signature does not verify")
        sm2 = params.signature is SignatureSuite.SM2_SM3
        if params.exchange is Exchange.EPHEMERAL:
            ikm = ecdh(sm2, self._ephemeral, ke.exchange)
        else:
            key, channel_cert = self._creds.channel_keys[params.signature]
            ikm = (sm2_decrypt(key.private_bytes(), ke.exchange) if sm2 else
                   ecies_decrypt(key.private_bytes(), channel_cert.public_key, ke.exchange))
            if len(ikm) != MASTER_SECRET_SIZE:
                raise DecryptFailed("master secret of the wrong size")
        self._transcript += unit
        self._module_cert, self._peer = cert, cert.module_id
        self._keys_from(self._hello.random, self._sh.random, ikm)
        self._certificates(self._sh.certificate, ke.certificate)
        self._state = _State.WAIT_FINISHED
        return [self._send_finished(FIN_PLATFORM)]
