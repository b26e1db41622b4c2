"""Real keys and certificates of both signature suites for the channel tests (nothing mocked),
and a loop that runs a handshake unit by unit through a relay the test controls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from e2e.certificates import Certificate, CertificateAuthority
from e2e.suites import PrivateKey, generate_private_key
from e2e.suites import Suite as SignatureSuite
from secure_channel import (
    USAGE_CHANNEL,
    ChannelInitiator,
    ChannelResponder,
    ChannelSuite,
    ModuleCredentials,
    PlatformCredentials,
    ResponderPolicy,
    Resumption,
    SessionCache,
)

NOW = 1_800_000_000
ALL_SUITES = list(ChannelSuite)
Relay = Callable[[int, bytes], list[bytes]]
"""(index of the unit in the run, unit) -> what the relay passes on instead."""


@dataclass
class Pki:
    """One deployment: a CA per suite (module certificates and channel certificates), the
    platform's channel keys, one module per suite, a revocation list and a session cache."""

    cas: dict[SignatureSuite, CertificateAuthority] = field(default_factory=dict)
    channel: dict[SignatureSuite, tuple[PrivateKey, Certificate]] = field(default_factory=dict)
    modules: dict[SignatureSuite, tuple[PrivateKey, Certificate]] = field(default_factory=dict)
    revoked: set[int] = field(default_factory=set)
    cache: SessionCache = field(default_factory=SessionCache)

    @classmethod
    def make(cls) -> Pki:
        pki = cls()
        for suite in SignatureSuite:
            ca = CertificateAuthority.generate(suite)
            pki.cas[suite] = ca
            ckey = generate_private_key(suite)
            pki.channel[suite] = (ckey, ca.issue(ckey.public_key, b"platform-1",
                                                 not_before=NOW - 10, not_after=NOW + 10**7,
                                                 usage=USAGE_CHANNEL))
            mkey = generate_private_key(suite)
            pki.modules[suite] = (mkey, ca.issue(mkey.public_key, b"module-" + suite.label.encode(),
                                                 not_before=NOW - 10, not_after=NOW + 10**6))
        return pki

    def module(self, suite: ChannelSuite) -> ModuleCredentials:
        key, cert = self.modules[suite.params.signature]
        return ModuleCredentials(key, cert, {s: ca.public_key for s, ca in self.cas.items()})

    def platform(self) -> PlatformCredentials:
        return PlatformCredentials(dict(self.channel),
                                   {s: ca.public_key for s, ca in self.cas.items()})

    def policy(self, suites: list[ChannelSuite] | None = None) -> ResponderPolicy:
        return ResponderPolicy(suites or ALL_SUITES,
                               lambda cert: cert.serial in self.revoked, cache=self.cache)

    def pair(self, suite: ChannelSuite, *, resume: Resumption | None = None,
             offer: list[ChannelSuite] | None = None,
             platform_suites: list[ChannelSuite] | None = None,
             ) -> tuple[ChannelInitiator, ChannelResponder]:
        return (ChannelInitiator(self.module(suite), suites=offer or [suite], resume=resume),
                ChannelResponder(self.platform(), self.policy(platform_suites)))


def run(init: ChannelInitiator, resp: ChannelResponder, relay: Relay | None = None,
        now: float = NOW) -> int:
    """Run the handshake to its end; the number of units that crossed. Errors propagate."""
    to_platform = [init.start(now)]
    to_module: list[bytes] = []
    index = 0
    while to_platform or to_module:
        if to_platform:
            unit = to_platform.pop(0)
            for passed in (relay(index, unit) if relay else [unit]):
                to_module += resp.receive(passed, now)
        else:
            unit = to_module.pop(0)
            for passed in (relay(index, unit) if relay else [unit]):
                to_platform += init.receive(passed, now)
        index += 1
    return index


def honest(pki: Pki, suite: ChannelSuite,
           resume: Resumption | None = None) -> tuple[ChannelInitiator, ChannelResponder]:
    """An honest handshake, checked to have given both sides matching sessions."""
    init, resp = pki.pair(suite, resume=resume)
    run(init, resp)
    assert init.session is not None and resp.session is not None
    [record] = init.session.seal(b"pay 10.00 to shop", NOW)
    assert resp.session.open(record, NOW) == b"pay 10.00 to shop"
    [answer] = resp.session.seal(b"settled", NOW)
    assert init.session.open(answer, NOW) == b"settled"
    return init, resp
