"""The channel's unique id on BLE: which link a message belongs to.

The seed names the IoT network's MAC address. On BLE a link is identified, as the card sees it,
by its own address, the central's address and a random the card makes when the connection opens:

    channel id = first 16 bytes of H("blegw/card-channel/v1" || card address (6 bytes)
                                      || central address (6 bytes) || connection random (16))

with H the suite's hash (SHA-256 or SM3) and addresses in transmission order reversed, i.e. as
written ``AA:BB:CC:DD:EE:FF`` -> ``aa bb cc dd ee ff``. The card puts it in its first message
(where the AEAD and the process key bind it) and refuses any server message made for another
channel id. What it stops: a server message recorded on one link and replayed on another (a
new connection has a new random) or written to another card (another address, another key).

The card sends its connection random in its hello (clear, authenticated by the AEAD), so the
server can recompute the id from the link's addresses as the gateway reports them
(:class:`LinkAddresses`) and refuse a hello whose link is not the one the gateway serves.

Limits, said plainly: the platform cannot observe the link; it compares the card's id with
what the gateway reports, which a hostile gateway can falsify. With address randomisation
(RPA) the addresses change between connections, which is harmless here (the id names one
connection, not a device) but means the id is no identity. A relay that forwards the card's
frames live to a distant gateway, cloning both addresses, keeps the channel intact: the
owner's button on the card is the control against that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .keys import CHANNEL_ID_SIZE
from .suites import CardSuite, digest

__all__ = ["CHANNEL_DOMAIN", "CONNECTION_RANDOM_SIZE", "LinkAddresses", "channel_id",
           "parse_address"]

CHANNEL_DOMAIN = b"blegw/card-channel/v1"
CONNECTION_RANDOM_SIZE = 16
_ADDRESS = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


def parse_address(address: str) -> bytes:
    """``AA:BB:CC:DD:EE:FF`` -> 6 bytes, most significant first."""
    if not _ADDRESS.fullmatch(address):
        raise ValueError("a BLE address is six hex pairs separated by colons")
    return bytes.fromhex(address.replace(":", ""))


def channel_id(suite: CardSuite, card_address: str, central_address: str,
               connection_random: bytes) -> bytes:
    """The 16-byte channel id of one connection between a card and a central."""
    if len(connection_random) != CONNECTION_RANDOM_SIZE:
        raise ValueError("the connection random is 16 bytes")
    data = (CHANNEL_DOMAIN + parse_address(card_address) + parse_address(central_address)
            + connection_random)
    return digest(suite, data)[:CHANNEL_ID_SIZE]


@dataclass(frozen=True, slots=True)
class LinkAddresses:
    """A link as its central reports it: the card's address and its own, ``AA:BB:CC:DD:EE:FF``.

    Checked when made (the platform builds it from bytes a gateway sent)."""

    card_address: str
    central_address: str

    def __post_init__(self) -> None:
        parse_address(self.card_address)
        parse_address(self.central_address)

    @classmethod
    def from_bytes(cls, card: bytes, central: bytes) -> LinkAddresses:
        """From 6-byte addresses, most significant byte first (the relay contract's form)."""
        if len(card) != 6 or len(central) != 6:
            raise ValueError("a BLE address is 6 bytes")
        return cls(_text(card), _text(central))

    def channel_id(self, suite: CardSuite, connection_random: bytes) -> bytes:
        """The channel id a card on this link with this random computes."""
        return channel_id(suite, self.card_address, self.central_address, connection_random)


def _text(address: bytes) -> str:
    return ":".join(f"{b:02X}" for b in address)
