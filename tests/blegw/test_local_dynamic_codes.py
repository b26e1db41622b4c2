"""The daemon's dynamic-code requests (``blegw.local_dynamic_codes``): hostile control fields
and hostile module answers.

The relay and the real link run over a fake of the radio path (no radio: the module's side is
scripted here, as in ``test_relay_unit``); an honest module's answers come from the real
``wearable_sim.dynamic_units`` units. The path over the virtual BlueZ with two gateways is
``test_dynamic_codes_radio``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ble_profile import Command
from blegw.local_dynamic_codes import answer
from blegw.relay import Relay
from dynamic_code import Role
from dynamic_code.radio import UnitAnswer, UnitRequest, decode_request
from e2e.suites import Suite
from relay_contract import RelayProgress, RelayResponse
from wearable_sim.dynamic_units import DynamicUnits
from wearable_sim.policy import FixedPolicy

from ..dynamic_code.world import World
from .test_relay_unit import MODULE, FakeRadio, FakeRadioLink

Script = list[Callable[[UnitRequest, bytes], Awaitable[bytes]]]


class _Key:
    def __init__(self, public: object) -> None:
        self.public_key = public


@pytest.fixture
async def module() -> AsyncIterator[tuple[Relay[FakeRadioLink], Script, DynamicUnits]]:
    """A relay serving one scripted module: ``script[0]`` answers each unit request (by
    default the real merchant unit below); nothing is published."""
    world = World(Suite.P256_SHA256)
    units = DynamicUnits(FixedPolicy(True))
    public = units.new_key(Role.MERCHANT, Suite.P256_SHA256)
    units.install(Role.MERCHANT, world.issue(_Key(public), Role.MERCHANT, "till", "shop"),  # type: ignore[arg-type]
                  world.ca.public_key)
    script: Script = []
    published: list[object] = []

    async def honest(_request: UnitRequest, raw: bytes) -> bytes:
        return await units.answer(raw)

    async def radio_script(radio: FakeRadio, raw: bytes) -> None:
        reply = await (script[0] if script else honest)(decode_request(raw), raw)
        radio.notify_message(Command.MSG, reply)

    async def publish(message: RelayResponse | RelayProgress) -> None:
        published.append(message)

    link = FakeRadioLink(radio_script)
    relay: Relay[FakeRadioLink] = Relay({MODULE: link}, publish, queue_size=4)
    relay.start()
    try:
        yield relay, script, units
    finally:
        link.shutdown()
        await relay.stop()
        assert published == []  # a local request's answer never goes to the platform


def _offer(**fields: Any) -> dict[str, Any]:
    return {"cmd": "dynamic_offer", "module": MODULE.hex(), "amount_minor": 1250,
            "currency": "EUR", **fields}


@pytest.mark.parametrize(("request_", "code"), [
    (_offer(module="zz"), "bad_request"),
    (_offer(module=None), "bad_request"),
    (_offer(module="00" * 16), "unknown_module"),
    (_offer(amount_minor=True), "bad_request"),
    (_offer(amount_minor=0), "bad_request"),
    (_offer(lifetime=10**6), "bad_request"),
    (_offer(currency="eur"), "bad_request"),
    ({"cmd": "dynamic_pay", "module": MODULE.hex(), "code": "BDC1:nope",
      "verification": "device"}, "bad_code"),
    ({"cmd": "dynamic_pay", "module": MODULE.hex(), "code": 5}, "bad_request"),
    ({"cmd": "dynamic_accept", "module": MODULE.hex(), "code": "BDC1:" + "A" * 30,
      "settlement_certificate": "00"}, "bad_code"),
], ids=["module-hex", "module-missing", "module-unknown", "amount-bool", "amount-zero",
        "lifetime", "currency", "pay-bad-code", "pay-code-type", "accept-bad-code"])
async def test_hostile_dynamic_code_request_fields_are_typed_errors_before_the_module_is_asked(
        module: tuple[Relay[FakeRadioLink], Script, DynamicUnits], request_: dict[str, Any],
        code: str) -> None:
    relay, _, units = module
    result = await answer(request_, relay)
    assert (result["ok"], result["code"]) == (False, code), result
    assert relay.workers[MODULE].link.received == []
    assert units.handled == []
    # the honest request still works after
    assert (await answer(_offer(), relay))["ok"]


async def test_hostile_module_answers_are_refused(
        module: tuple[Relay[FakeRadioLink], Script, DynamicUnits]) -> None:
    relay, script, units = module

    async def other_request(request: UnitRequest, raw: bytes) -> bytes:
        real = await units.answer(raw)
        return real.replace(request.request_id, secrets.token_bytes(16))

    async def other_amount(request: UnitRequest, raw: bytes) -> bytes:
        return await units.answer(UnitRequest(request.request_id, type(request.operation)(
            99999, "EUR", 60)).encode())  # type: ignore[call-arg]

    async def not_a_code(request: UnitRequest, raw: bytes) -> bytes:
        return UnitAnswer(request.request_id, "ok", b"\x01" * 40).encode()

    async def garbage(request: UnitRequest, raw: bytes) -> bytes:
        return b"\xa3\x01\x01\x02\x18\x61\xff"

    for hostile in (other_request, other_amount, not_a_code, garbage):
        script[:] = [hostile]
        result = await answer(_offer(), relay)
        assert (result["ok"], result["code"]) == (False, "link_error"), (hostile, result)

    async def refuses(request: UnitRequest, raw: bytes) -> bytes:
        return UnitAnswer(request.request_id, "no_unit", None, "no merchant unit").encode()

    script[:] = [refuses]
    refused = await answer(_offer(), relay)
    assert (refused["code"], refused["reason"]) == ("module_refused", "no_unit")
    script.clear()
    honest = await answer(_offer(), relay)
    assert honest["ok"] and honest["code"].startswith("BDC1:"), honest
