"""The soft secure element's files and the owner's confirmation policies."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from wearable_sim.policy import ButtonPolicy, FixedPolicy, Prompt, make_policy
from wearable_sim.state import ModuleState, StateError

PROMPT = Prompt(amount_minor=1250, currency="EUR", payee="shop-42", order_reference="A-17",
                description="coffee beans")


def test_directories_and_secrets_are_owner_only(tmp_path: Path) -> None:
    state = ModuleState(tmp_path / "m")
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o700
    key = state.key_path("p256")
    state.write_secret(key, b"secret")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert state.read_secret(key) == b"secret"
    os.chmod(key, 0o644)
    with pytest.raises(StateError, match="readable by others"):
        state.read_secret(key)


def test_unsafe_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "open").mkdir(mode=0o755)
    os.chmod(tmp_path / "open", 0o755)
    with pytest.raises(StateError, match="accessible by others"):
        ModuleState(tmp_path / "open")


def test_counter_is_monotonic_and_survives_a_restart(tmp_path: Path) -> None:
    state = ModuleState(tmp_path)
    assert [state.next_counter() for _ in range(3)] == [1, 2, 3]
    assert ModuleState(tmp_path).next_counter() == 4
    assert not list(tmp_path.glob(".*.tmp"))


def test_corrupt_counter_is_an_error_not_a_reset(tmp_path: Path) -> None:
    state = ModuleState(tmp_path)
    state.counter_path.write_bytes(b"garbage")
    with pytest.raises(StateError, match="corrupt"):
        state.next_counter()


async def test_fixed_policies() -> None:
    assert await FixedPolicy(True).decide(PROMPT) is True
    assert await FixedPolicy(False).decide(PROMPT) is False


async def test_button_policy_over_its_socket(tmp_path: Path) -> None:
    policy = await make_policy("button", tmp_path)
    assert isinstance(policy, ButtonPolicy)
    try:
        sock = tmp_path / "button.sock"
        assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0

        async def press(word: bytes) -> bytes:
            reader, writer = await asyncio.open_unix_connection(str(sock))
            writer.write(word + b"\n")
            await writer.drain()
            answer = await reader.readline()
            writer.close()
            return answer

        assert (await press(b"approve")).startswith(b"error: no request")
        decision = asyncio.ensure_future(policy.decide(PROMPT))
        await asyncio.sleep(0.05)
        assert (await press(b"maybe")).startswith(b"error")
        assert await press(b"decline") == b"ok\n"
        assert await decision is False
    finally:
        await policy.close()
    assert not (tmp_path / "button.sock").exists()


async def test_never_policy_waits_until_cancelled(tmp_path: Path) -> None:
    policy = await make_policy("never", tmp_path)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(policy.decide(PROMPT), 0.2)


async def test_unknown_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        await make_policy("telepathy", tmp_path)


def test_prompt_shows_every_approved_field() -> None:
    assert PROMPT.text() == "Pay 12.50 EUR to shop-42 (order A-17: coffee beans)"
