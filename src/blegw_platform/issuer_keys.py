"""The issuer's symmetric keys for cards (flow F-C): one master key per suite and key version,
card keys derived from it on demand, never stored, logged or printed.

Where the master keys live. A real deployment keeps them in an HSM (a payment HSM such as a
Thales payShield or a GM/T 0028 certified SJJ device) that derives card keys with exactly the
block-cipher diversification of :func:`symmetric_card.keys.diversify` and returns them only
under a transport key, for the personalisation bureau, or uses them inside for the process-key
derivation. The code keeps that seam: :class:`IssuerKeys` is the interface an HSM adapter
implements; :class:`FileIssuerKeys`, the default, holds each master key in its own owner-only
file (``issuer-keys/<suite>-v<NNN>.key``, 0600, directory 0700) written atomically by
``private_files``, for the reference platform, tests and the demo.

Rotation. :meth:`IssuerKeys.rotate` makes the next version of a suite's master key; new cards
are issued under the newest version, cards already issued keep theirs (the version travels in
each card message) until they are re-issued, then the old version can be retired.

The register of issued cards (:class:`IssuedCards`, ``cards.cbor``, 0600: a CBOR array of
``{1 card number, 2 certificate number, 3 issue time, 4 bound user, 5 {suite: key version},
6 card ref}``) holds what the server
needs to recognise a card: card ref, number, certificate number, issue time, bound user and the
key version per suite; no key.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from e2e.cbor import dumps, loads
from e2e.errors import E2EError
from private_files import NotPrivateError, locked, read_private, write_atomic
from symmetric_card import (
    CardError,
    CardInfo,
    CardKey,
    CardProvision,
    CardRecord,
    CardSuite,
    diversify,
    luhn_digit,
)
from symmetric_card.keys import CARD_REF_SIZE
from symmetric_card.suites import KEY_SIZE

__all__ = ["MAX_KEY_VERSION", "FileIssuerKeys", "IssuedCard", "IssuedCards", "IssuerKeyError",
           "IssuerKeys", "MissingMasterKey", "issue_card"]

log = logging.getLogger("blegw.platform.issuer")

MAX_KEY_VERSION = 0xFF
ISSUER_DIR = "issuer-keys"
CARDS_FILE = "cards.cbor"
_KEY_FILE = re.compile(r"(aes|sm4)-v(\d{3})\.key")
CARD_NUMBER_PREFIX = "990000"
"""ISO/IEC 7812 major industry identifier 9 (national use): no real issuer's range."""


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created 0600) for a read-modify-write: two
    ``provision-card`` runs must not both make version N+1 of a master key (the second would
    replace the key the first one's cards were derived from) or lose each other's card."""
    with locked(path):
        yield


class IssuerKeyError(ValueError):
    """A master key file is missing, unsafe (readable by others) or corrupt, or a version
    that does not exist was asked for."""


class MissingMasterKey(IssuerKeyError):
    """No master key of that version (never made, or retired): the one refusal a card
    message may meet in normal use. An unsafe or corrupt key file is an operator's problem
    and stays a plain :class:`IssuerKeyError`."""


class IssuerKeys(Protocol):
    """What the platform needs from whoever holds the master keys (a file store, an HSM)."""

    def derive_card_key(self, card_number: str, version: int, suite: CardSuite) -> CardKey:
        """The card key of ``card_number`` under master key ``version`` of ``suite``."""
        ...

    def current_version(self, suite: CardSuite) -> int:
        """The version new cards are issued under (making version 1 if there is none)."""
        ...

    def rotate(self, suite: CardSuite) -> int:
        """Make the next version of ``suite``'s master key; return its number."""
        ...


class FileIssuerKeys:
    """Master keys in owner-only files under ``state/issuer-keys``."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / ISSUER_DIR
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)

    def __repr__(self) -> str:
        return f"FileIssuerKeys({self.directory})"

    def _path(self, suite: CardSuite, version: int) -> Path:
        return self.directory / f"{suite.label}-v{version:03d}.key"

    def versions(self, suite: CardSuite) -> list[int]:
        found = (_KEY_FILE.fullmatch(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(2)) for m in found if m and m.group(1) == suite.label)

    def _master(self, suite: CardSuite, version: int) -> bytes:
        path = self._path(suite, version)
        try:
            raw = read_private(path)
        except NotPrivateError as exc:
            raise IssuerKeyError(f"{exc}; refusing it") from None
        if raw is None:
            raise MissingMasterKey(f"no {suite.label} master key version {version}")
        if len(raw) != KEY_SIZE:
            raise IssuerKeyError(f"{path} is corrupt")
        return raw

    def derive_card_key(self, card_number: str, version: int, suite: CardSuite) -> CardKey:
        return diversify(suite, self._master(suite, version), card_number)

    def current_version(self, suite: CardSuite) -> int:
        with _locked(self.directory / ".lock"):
            versions = self.versions(suite)
            return versions[-1] if versions else self._make_next(suite)

    def rotate(self, suite: CardSuite) -> int:
        with _locked(self.directory / ".lock"):
            return self._make_next(suite)

    def _make_next(self, suite: CardSuite) -> int:
        versions = self.versions(suite)
        version = (versions[-1] + 1) if versions else 1
        if version > MAX_KEY_VERSION:
            raise IssuerKeyError(f"{suite.label} has used all {MAX_KEY_VERSION} key versions")
        write_atomic(self._path(suite, version), secrets.token_bytes(KEY_SIZE))
        return version

    def retire(self, suite: CardSuite, version: int) -> None:
        """Delete an old master key: cards still under it can no longer pay."""
        if version == self.current_version(suite):
            raise IssuerKeyError("the current version cannot be retired; rotate first")
        path = self._path(suite, version)
        if not path.exists():
            raise IssuerKeyError(f"no {suite.label} master key version {version}")
        path.unlink()


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """The issuer's record of one card (no key)."""

    info: CardInfo
    card_ref: bytes
    versions: dict[CardSuite, int]

    def __post_init__(self) -> None:
        if type(self.card_ref) is not bytes or len(self.card_ref) != CARD_REF_SIZE or any(
                type(v) is not int or not 1 <= v <= MAX_KEY_VERSION
                for v in self.versions.values()):
            raise ValueError("an issued card's ref or key versions are out of range")

    def record(self, keys: IssuerKeys) -> CardRecord:
        """What :class:`symmetric_card.CardVerifier` needs to check this card's messages: a
        card key only for the version the card was issued under."""
        number = self.info.card_number

        def key_for(suite: CardSuite, version: int) -> CardKey | None:
            if self.versions.get(suite) != version:
                return None
            try:
                return keys.derive_card_key(number, version, suite)
            except MissingMasterKey:
                return None                    # retired since
            except IssuerKeyError as exc:      # unsafe or corrupt: the card cannot be served
                log.error("card %s: master key %s v%d refused: %s", self.card_ref.hex(),
                          suite.label, version, exc)
                return None

        return CardRecord(self.card_ref, number, self.info.bound_user, key_for)


class IssuedCards:
    """The register of issued cards (``cards.cbor``, 0600): card ref -> card."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / CARDS_FILE

    def load(self) -> dict[bytes, IssuedCard]:
        try:
            raw = read_private(self.path)
        except NotPrivateError as exc:
            raise IssuerKeyError(f"{exc}; refusing it") from None
        if raw is None:
            return {}
        try:
            body = loads(raw, max_size=16 * 1024 * 1024)
            cards = [IssuedCard(CardInfo.decode(dumps({k: entry[k] for k in (1, 2, 3, 4)})),
                                entry[6], {CardSuite.parse(s): v for s, v in entry[5].items()})
                     for entry in body]
        except (E2EError, CardError, ValueError, KeyError, TypeError, AttributeError):
            raise IssuerKeyError(f"{self.path} is corrupt") from None
        return {card.card_ref: card for card in cards}

    def get(self, card_ref: bytes) -> IssuedCard | None:
        return self.load().get(card_ref)

    def add(self, card: IssuedCard) -> None:
        with _locked(self.path.with_name(f".{self.path.name}.lock")):
            self._add(card)

    def _add(self, card: IssuedCard) -> None:
        cards = self.load()
        if card.card_ref in cards or any(c.info.card_number == card.info.card_number
                                         for c in cards.values()):
            raise IssuerKeyError("a card with this ref or number was issued already")
        cards[card.card_ref] = card
        write_atomic(self.path, dumps([
            {**c.info.body(), 5: {int(s): v for s, v in c.versions.items()}, 6: c.card_ref}
            for c in cards.values()]))


def _new_card_number() -> str:
    partial = CARD_NUMBER_PREFIX + "".join(secrets.choice("0123456789") for _ in range(9))
    return partial + luhn_digit(partial)


def issue_card(keys: IssuerKeys, register: IssuedCards, *, bound_user: str,
               suites: tuple[CardSuite, ...] = tuple(CardSuite),
               card_number: str | None = None, now: int | None = None) -> CardProvision:
    """Seed step s0: make a card's record with its derived keys (for the card's state) and
    register the card with the issuer (without the keys)."""
    info = CardInfo(card_number or _new_card_number(), secrets.token_hex(8).upper(),
                    int(time.time() if now is None else now), bound_user)
    versions = {suite: keys.current_version(suite) for suite in suites}
    card_keys = {suite: (v, keys.derive_card_key(info.card_number, v, suite))
                 for suite, v in versions.items()}
    card = IssuedCard(info, secrets.token_bytes(CARD_REF_SIZE), versions)
    register.add(card)
    return CardProvision(info, card.card_ref, card_keys)
