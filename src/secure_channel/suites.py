"""The channel's cipher suites: which signature, hash, AEAD and key exchange one id stands for.

Ids are this protocol's own (not TLS's or TLCP's: the messages differ). The low nibble says the
key exchange: 1 = the seed's key transport (the module makes the master secret and encrypts it
to the platform's channel key), 2 = ephemeral key agreement (forward secrecy).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

from e2e.suites import Suite as SignatureSuite

from .errors import UnsupportedSuite, UnsupportedVersion

__all__ = ["PROTOCOL_VERSION", "SUPPORTED_VERSIONS", "Aead", "ChannelSuite", "Exchange",
           "HashName", "SuiteParams", "negotiate_version"]

PROTOCOL_VERSION = 1
"""The only version so far. Versions are offered as a list so a later one can be added; the
offer and the choice are in the signed and MACed transcript, so a relay cannot move either."""

SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)


class Exchange(Enum):
    TRANSPORT = "transport"
    EPHEMERAL = "ephemeral"


class HashName(Enum):
    SHA256 = "sha256"
    SM3 = "sm3"


class Aead(Enum):
    SM4_GCM = "sm4-gcm"
    AES128_GCM = "aes-128-gcm"
    AES256_GCM = "aes-256-gcm"

    @property
    def key_size(self) -> int:
        return 32 if self is Aead.AES256_GCM else 16


class ChannelSuite(IntEnum):
    KT_SM2_SM4GCM_SM3 = 0x0011
    DHE_SM2_SM4GCM_SM3 = 0x0012
    KT_P256_AES128GCM_SHA256 = 0x0021
    DHE_P256_AES128GCM_SHA256 = 0x0022
    KT_P256_AES256GCM_SHA256 = 0x0031
    DHE_P256_AES256GCM_SHA256 = 0x0032

    @classmethod
    def parse(cls, value: object) -> ChannelSuite:
        if type(value) is not int:
            raise UnsupportedSuite("a suite id is an integer")
        try:
            return cls(value)
        except ValueError:
            raise UnsupportedSuite(f"unknown channel suite {value:#06x}") from None

    @property
    def params(self) -> SuiteParams:
        national = self in (ChannelSuite.KT_SM2_SM4GCM_SM3, ChannelSuite.DHE_SM2_SM4GCM_SM3)
        aead = (Aead.SM4_GCM if national else
                Aead.AES256_GCM if self.value >> 4 == 3 else Aead.AES128_GCM)
        return SuiteParams(
            signature=SignatureSuite.SM2_SM3 if national else SignatureSuite.P256_SHA256,
            hash=HashName.SM3 if national else HashName.SHA256,
            aead=aead,
            exchange=Exchange.TRANSPORT if self.value & 0xF == 1 else Exchange.EPHEMERAL)


@dataclass(frozen=True, slots=True)
class SuiteParams:
    signature: SignatureSuite
    hash: HashName
    aead: Aead
    exchange: Exchange


def negotiate_version(offered: list[int]) -> int:
    """The highest version both sides speak."""
    common = [v for v in offered if v in SUPPORTED_VERSIONS]
    if not common:
        raise UnsupportedVersion("no protocol version in common")
    return max(common)
