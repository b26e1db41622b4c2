"""Module info of a symmetric-key card: the kind a gateway reads before it sends anything."""

from __future__ import annotations

import cbor2
import pytest

from ble_profile import CARD_PROTOCOL_VERSION, E2E_PROTOCOL_VERSION, ModuleInfo, ModuleInfoError


def test_a_card_says_so_in_its_protocol_versions_and_a_module_does_not() -> None:
    card = ModuleInfo("blegw wearable-sim card", "0.1.0", (CARD_PROTOCOL_VERSION,), (1, 2),
                      bytes(range(8)), 1024)
    module = ModuleInfo("blegw wearable-sim", "0.1.0", (E2E_PROTOCOL_VERSION,), (1, 2),
                        bytes(16), 4096)
    assert card.is_card and not module.is_card
    assert ModuleInfo.decode(card.encode()) == card           # the same canonical bytes


def test_a_gateway_that_knows_no_cards_still_parses_a_cards_info() -> None:
    """The kind is a value in an existing field, not a new key: the decoder of earlier versions
    (keys 1..6, any 16-bit version) reads it; a new key would have been refused whole."""
    raw = cbor2.loads(ModuleInfo("card", "1", (CARD_PROTOCOL_VERSION,), (1,), b"card",
                                 64).encode())
    assert set(raw) == {1, 2, 3, 4, 5, 6}
    with pytest.raises(ModuleInfoError):
        ModuleInfo.decode(cbor2.dumps({**raw, 7: "card"}, canonical=True))
