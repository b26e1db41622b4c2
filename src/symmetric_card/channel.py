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

Limits, said plainly: the platform cannot observe the link; it learns the channel id from the
card and, at most, compares it with what the gateway reports (``expected_channel``), which a
hostile gateway can falsify. With address randomisation (RPA) the addresses change between
connections, which is harmless here (the id names one connection, not a device) but means the
id is no identity. A relay that forwards the card's frames live to a distant gateway keeps the
channel intact: the owner's button on the card is the control against that.
"""

from __future__ import annotations

import re

from .keys import CHANNEL_ID_SIZE
from .suites import CardSuite, digest

__all__ = ["CHANNEL_DOMAIN", "CONNECTION_RANDOM_SIZE", "channel_id", "parse_address"]

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
