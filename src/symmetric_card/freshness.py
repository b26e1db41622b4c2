"""Freshness of time factors: a window with clock-skew tolerance, the server's replay memory,
and the time factor of a card without a real-time clock.

* :class:`TimeWindow`: a time factor is fresh when ``now - max_age <= t <= now + skew``.
* :class:`ReplayGuard`: the server remembers every process key it accepted (card ref, key
  version, message type, channel id, time factor) until its time factor leaves the window;
  the same one again is a replay, and once out of the window the window itself refuses it.
  Memory is bounded: when ``capacity`` unexpired entries are held, a new one is refused with
  :class:`~symmetric_card.errors.Busy` rather than an old one forgotten.
* :class:`ServerTimeClock`: the simulated card has no real-time clock. It takes the server's
  time from the (unauthenticated) card challenge and makes it strictly increasing: ``a =
  max(server time, last confirmed + 1, last used on this link + 1)``. Only a time factor the
  server answered with an authenticated transaction request is *confirmed* and persisted, so
  a hostile gateway that sends a far-future time spoils one connection, not the card.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import Busy, Replay, StaleTimeFactor

__all__ = ["ReplayGuard", "ServerTimeClock", "TimeWindow"]


@dataclass(frozen=True, slots=True)
class TimeWindow:
    max_age: int = 60
    """Seconds a time factor may lag the receiver's clock (transit, a slow owner)."""
    skew: int = 5
    """Seconds it may run ahead of the receiver's clock."""

    def check(self, time_factor: int, now: int) -> None:
        if time_factor < now - self.max_age:
            raise StaleTimeFactor("the time factor is older than the window")
        if time_factor > now + self.skew:
            raise StaleTimeFactor("the time factor is ahead of the clock by more than the skew")

    def last_valid(self, time_factor: int) -> int:
        """The last second at which ``time_factor`` is still inside the window."""
        return time_factor + self.max_age


def _entry(card_ref: bytes, key_version: int, message_type: int, channel_id: bytes,
           time_factor: int) -> bytes:
    return card_ref + bytes([key_version, message_type]) + channel_id + struct.pack(
        ">Q", time_factor)


class ReplayGuard:
    """The server's memory of process keys it accepted inside the window."""

    def __init__(self, window: TimeWindow, capacity: int = 4096,
                 entries: list[tuple[bytes, int]] | None = None) -> None:
        self.window = window
        self.capacity = capacity
        self._seen: dict[bytes, int] = dict(entries or [])

    def __len__(self) -> int:
        return len(self._seen)

    def entries(self) -> list[tuple[bytes, int]]:
        """(entry, last valid second) pairs, for a store that keeps them across restarts."""
        return sorted(self._seen.items())

    def check(self, card_ref: bytes, key_version: int, message_type: int, channel_id: bytes,
              time_factor: int, *, now: int) -> None:
        """Raise unless a message with these inputs is fresh and unseen."""
        self.window.check(time_factor, now)
        last = self._seen.get(_entry(card_ref, key_version, message_type, channel_id,
                                     time_factor))
        if last is not None and last >= now:
            raise Replay("this process key was used before")

    def admit(self, card_ref: bytes, key_version: int, message_type: int, channel_id: bytes,
              time_factor: int, *, now: int) -> None:
        """Remember an accepted message (after its checks passed)."""
        self.check(card_ref, key_version, message_type, channel_id, time_factor, now=now)
        self._seen = {k: last for k, last in self._seen.items() if last >= now}
        if len(self._seen) >= self.capacity:
            raise Busy("the replay memory is full")
        self._seen[_entry(card_ref, key_version, message_type, channel_id, time_factor)] = \
            self.window.last_valid(time_factor)


class ServerTimeClock:
    """The time factor of a card without a real-time clock (see the module docstring)."""

    def __init__(self, last_confirmed: int = 0) -> None:
        self.last_confirmed = last_confirmed
        self._last_used = last_confirmed

    def time_factor(self, server_time: int) -> int:
        value = max(server_time, self.last_confirmed + 1, self._last_used + 1)
        self._last_used = value
        return value

    def confirm(self, time_factor: int) -> None:
        """The server answered ``time_factor`` with an authenticated request."""
        self.last_confirmed = max(self.last_confirmed, time_factor)
