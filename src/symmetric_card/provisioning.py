"""The card's factory record (seed s0): what provisioning injects into a card and nothing else.

``{1 card number, 2 certificate number, 3 issue time, 4 bound user, 5 card ref (8 bytes),
6 {suite: [key version, card key (16 bytes)]}}``, deterministic CBOR. The platform writes it
once into the card's state (0600); the card's secure element reads it and never exports the
keys. The issuer keeps no copy of the card key: it derives it again from the master key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from e2e.cbor import dumps, loads
from e2e.errors import E2EError

from .errors import Malformed
from .keys import CARD_REF_SIZE, CardKey
from .messages import CardInfo
from .suites import KEY_SIZE, CardSuite

__all__ = ["CardProvision"]


@dataclass(frozen=True, slots=True)
class CardProvision:
    info: CardInfo
    card_ref: bytes
    keys: dict[CardSuite, tuple[int, CardKey]] = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.card_ref) != CARD_REF_SIZE or not self.keys:
            raise Malformed("a card needs an 8-byte card ref and at least one key")
        if any(not 1 <= version <= 0xFF for version, _key in self.keys.values()):
            raise Malformed("key version out of range")

    def encode(self) -> bytes:
        body = self.info.body()
        body[5] = self.card_ref
        body[6] = {int(suite): [version, key.material()]
                   for suite, (version, key) in self.keys.items()}
        return dumps(body)

    @classmethod
    def decode(cls, data: bytes) -> CardProvision:
        try:
            body = loads(data, max_size=1024)
        except E2EError:
            raise Malformed("the card record is not deterministic CBOR") from None
        if type(body) is not dict or set(body) != {1, 2, 3, 4, 5, 6}:
            raise Malformed("the card record's keys are wrong")
        info_body: dict[int, Any] = {k: body[k] for k in (1, 2, 3, 4)}
        info = CardInfo.decode(dumps(info_body))
        keys: dict[CardSuite, tuple[int, CardKey]] = {}
        if type(body[6]) is not dict or type(body[5]) is not bytes:
            raise Malformed("the card record's keys are wrong")
        for suite, entry in body[6].items():
            if (type(suite) is not int or type(entry) is not list or len(entry) != 2
                    or type(entry[0]) is not int or type(entry[1]) is not bytes
                    or len(entry[1]) != KEY_SIZE):
                raise Malformed("a card key entry is wrong")
            keys[CardSuite.parse(suite)] = (entry[0], CardKey(entry[1]))
        return cls(info, body[5], keys)
