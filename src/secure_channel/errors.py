"""Errors of the secure channel, each with a code that crosses the wire in an error unit.

One small hierarchy: :class:`ChannelError` at the top, a class per reason below it. A side that
raises one of them has stopped that handshake or session; it answers the peer with the code
(:func:`secure_channel.wire.encode_error`) and nothing else, so a relay learns no more than the
reason's number.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "BadFinished",
    "BadRecord",
    "BadSignature",
    "CertificateInvalid",
    "CertificateRevoked",
    "ChannelError",
    "ChannelErrorCode",
    "DecryptFailed",
    "Malformed",
    "PeerError",
    "RecordOutOfOrder",
    "RecordReplay",
    "RecordTooLarge",
    "SessionExpired",
    "Unexpected",
    "UnsupportedSuite",
    "UnsupportedVersion",
]


class ChannelErrorCode(IntEnum):
    MALFORMED = 1
    UNSUPPORTED_VERSION = 2
    UNSUPPORTED_SUITE = 3
    UNEXPECTED_MESSAGE = 4
    CERTIFICATE_INVALID = 5
    CERTIFICATE_REVOKED = 6
    BAD_SIGNATURE = 7
    DECRYPT_FAILED = 8
    BAD_FINISHED = 9
    BAD_RECORD = 10
    RECORD_REPLAY = 11
    RECORD_OUT_OF_ORDER = 12
    RECORD_TOO_LARGE = 13
    SESSION_EXPIRED = 14
    PEER_ERROR = 16
    INTERNAL = 127


class ChannelError(Exception):
    """The handshake or the session is over; ``code`` is what the peer is told."""

    code: ChannelErrorCode = ChannelErrorCode.INTERNAL


class Malformed(ChannelError, ValueError):
    """Bytes that are no valid unit: bad CBOR, wrong fields or types, wrong lengths."""

    code = ChannelErrorCode.MALFORMED


class UnsupportedVersion(ChannelError):
    code = ChannelErrorCode.UNSUPPORTED_VERSION


class UnsupportedSuite(ChannelError):
    code = ChannelErrorCode.UNSUPPORTED_SUITE


class Unexpected(ChannelError):
    """A unit this side does not expect now: out of order, repeated, or after the end."""

    code = ChannelErrorCode.UNEXPECTED_MESSAGE


class CertificateInvalid(ChannelError):
    """A certificate the trusted CA did not issue for this use, or out of its validity."""

    code = ChannelErrorCode.CERTIFICATE_INVALID


class CertificateRevoked(CertificateInvalid):
    code = ChannelErrorCode.CERTIFICATE_REVOKED


class BadSignature(ChannelError):
    code = ChannelErrorCode.BAD_SIGNATURE


class DecryptFailed(ChannelError):
    """The transported master secret does not decrypt under this side's key."""

    code = ChannelErrorCode.DECRYPT_FAILED


class BadFinished(ChannelError):
    """A finished MAC that does not match: the two sides saw different transcripts."""

    code = ChannelErrorCode.BAD_FINISHED


class BadRecord(ChannelError):
    """A record whose AEAD tag does not verify (altered, truncated, or from other keys)."""

    code = ChannelErrorCode.BAD_RECORD


class RecordReplay(BadRecord):
    code = ChannelErrorCode.RECORD_REPLAY


class RecordOutOfOrder(BadRecord):
    """A record ahead of the next expected sequence number: one before it was dropped."""

    code = ChannelErrorCode.RECORD_OUT_OF_ORDER


class RecordTooLarge(ChannelError):
    code = ChannelErrorCode.RECORD_TOO_LARGE


class SessionExpired(ChannelError):
    code = ChannelErrorCode.SESSION_EXPIRED


class PeerError(ChannelError):
    """The peer sent an error unit; ``peer_code`` is its reason (untrusted, for logs only)."""

    code = ChannelErrorCode.PEER_ERROR

    def __init__(self, peer_code: int) -> None:
        super().__init__(f"peer ended the channel with code {peer_code}")
        self.peer_code = peer_code
