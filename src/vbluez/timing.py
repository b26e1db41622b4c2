"""The on-air timing model of a virtual link, as plain arithmetic.

A BLE link exchanges packets only at connection events, one every connection interval
(7.5 ms to 4 s, in 1.25 ms steps). The model: a PDU that becomes ready at time ``t`` is carried
at the first connection event strictly after ``t``; a request and its response are therefore at
least one interval apart, and a write-with-response answered by a notification costs about two
intervals in steady state, as measured on real links. With the interval at 0 the model is off
and PDUs go at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ConnectionTiming"]

MIN_INTERVAL_S = 0.0075
MAX_INTERVAL_S = 4.0


@dataclass(slots=True)
class ConnectionTiming:
    """Connection events at ``anchor + k * interval`` for k = 1, 2, ...

    ``interval`` is in seconds; 0 switches the model off.
    """

    interval: float = 0.0
    anchor: float = 0.0

    def __post_init__(self) -> None:
        if self.interval != 0 and not MIN_INTERVAL_S <= self.interval <= MAX_INTERVAL_S:
            raise ValueError(
                f"connection interval {self.interval * 1000:.2f} ms is outside "
                f"{MIN_INTERVAL_S * 1000} ms .. {MAX_INTERVAL_S * 1000:.0f} ms"
            )

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def next_event(self, now: float) -> float:
        """Time of the first connection event strictly after ``now``."""
        if not self.enabled:
            return now
        k = math.floor((now - self.anchor) / self.interval) + 1
        return self.anchor + k * self.interval

    def events_after(self, now: float, count: int) -> float:
        """Time of the ``count``-th connection event after ``now`` (count >= 1)."""
        if not self.enabled or count <= 0:
            return now
        return self.next_event(now) + (count - 1) * self.interval
