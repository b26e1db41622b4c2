"""The freshness rules as properties: the window, the replay memory's bound and its refusal of
every repeat inside the window, and the clock of a card without one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from symmetric_card import (
    Busy,
    Replay,
    ReplayGuard,
    ServerTimeClock,
    StaleTimeFactor,
    TimeWindow,
)

NOW = 1_800_000_000
REF, CHANNEL = b"r" * 8, b"c" * 16


@given(st.integers(0, 600), st.integers(0, 60), st.integers(-1000, 1000))
def test_the_window_accepts_exactly_its_range(max_age: int, skew: int, offset: int) -> None:
    window = TimeWindow(max_age, skew)
    inside = -max_age <= offset <= skew
    try:
        window.check(NOW + offset, NOW)
    except StaleTimeFactor:
        assert not inside
    else:
        assert inside


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30)), max_size=60),
       st.integers(1, 8))
def test_replay_memory_never_admits_a_repeat_and_stays_bounded(
        events: list[tuple[int, int]], capacity: int) -> None:
    """Hellos (a channel number, a time offset) arriving while the clock moves on: one that
    was admitted is never admitted again while it is in the window, and the memory never
    holds more than its capacity."""
    window = TimeWindow(10, 2)
    guard = ReplayGuard(window, capacity=capacity)
    admitted: dict[tuple[int, int], int] = {}
    now = NOW
    for step, (channel, offset) in enumerate(events):
        now = NOW + step                              # one second per event
        time_factor = NOW + offset
        key = (channel, time_factor)
        try:
            guard.admit(REF, 1, 0x41, bytes([channel]) * 16, time_factor, now=now)
        except Replay:
            assert key in admitted and admitted[key] >= now
        except StaleTimeFactor:
            assert not now - 10 <= time_factor <= now + 2
        except Busy:
            assert len(guard) >= capacity
        else:
            assert key not in admitted or admitted[key] < now
            admitted[key] = time_factor + 10
        assert len(guard) <= capacity


def test_replay_memory_survives_a_restart_through_its_entries() -> None:
    window = TimeWindow()
    guard = ReplayGuard(window)
    guard.admit(REF, 1, 0x41, CHANNEL, NOW, now=NOW)
    again = ReplayGuard(window, entries=guard.entries())
    with pytest.raises(Replay):
        again.admit(REF, 1, 0x41, CHANNEL, NOW, now=NOW + 1)


@given(st.lists(st.integers(NOW - 100, NOW + 100), min_size=1, max_size=30))
def test_a_card_without_a_clock_never_repeats_a_time_factor(server_times: list[int]) -> None:
    clock = ServerTimeClock(last_confirmed=NOW - 50)
    seen: list[int] = []
    for server_time in server_times:
        a = clock.time_factor(server_time)
        assert a >= server_time and a > clock.last_confirmed
        assert all(a > earlier for earlier in seen)
        seen.append(a)
        clock.confirm(a)
