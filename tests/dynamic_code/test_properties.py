"""Properties of the till exchange over generated inputs: any valid amount, currency and
accounts settle exactly as asked, and any single byte changed in a payment code or a
settlement request is refused with a typed error while the honest code still works."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamic_code import DynamicCodeError, Verification
from e2e.messages import MAX_AMOUNT_MINOR
from e2e.suites import Suite

from .world import World

WORLDS = {suite: World(suite) for suite in Suite}
SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.label)
@SETTINGS
@given(amount=st.integers(1, MAX_AMOUNT_MINOR), currency=st.sampled_from(["EUR", "CNY", "USD"]),
       account=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", fullmatch=True),
       mode=st.sampled_from(list(Verification)))
def test_any_valid_payment_settles_exactly_as_asked(suite: Suite, amount: int, currency: str,
                                                    account: str, mode: Verification) -> None:
    world = WORLDS[suite]
    payer = world.payer(account, mode)
    shown = world.merchant.consumption_code(amount, currency, now=world.now)
    code = payer.unit.pay(shown, now=world.now, verification=mode,
                          features=payer.sensor.capture())
    accepted = world.merchant.accept(code, now=world.now)
    paid = world.server.open(world.merchant.forward(accepted.handle, world.server_cert,
                                                    now=world.now),
                             now=world.now, directory=world.directory)
    assert (paid.payer, paid.payee, paid.amount_minor, paid.currency) == (account, "shop",
                                                                          amount, currency)


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.label)
@SETTINGS
@given(data=st.data())
def test_any_changed_byte_is_refused_and_the_honest_code_still_works(
        suite: Suite, data: st.DataObject) -> None:
    world = WORLDS[suite]
    payer = world.payer("alice", Verification.FEATURES)
    shown = world.merchant.consumption_code(4200, "EUR", now=world.now)
    code = payer.unit.pay(shown, now=world.now, verification=Verification.FEATURES,
                          features=payer.sensor.capture())
    # positions drawn independently of the lengths (signatures and ciphertexts vary in size)
    index = data.draw(st.integers(0, 2**16)) % len(code)
    flip = data.draw(st.integers(1, 255))
    changed = code[:index] + bytes([code[index] ^ flip]) + code[index + 1:]
    with pytest.raises(DynamicCodeError):
        world.merchant.accept(changed, now=world.now)
    accepted = world.merchant.accept(code, now=world.now)  # the perturbation code was not spent
    request = world.merchant.forward(accepted.handle, world.server_cert, now=world.now)
    index = data.draw(st.integers(0, 2**16)) % len(request)
    changed = request[:index] + bytes([request[index] ^ flip]) + request[index + 1:]
    with pytest.raises(DynamicCodeError):
        world.server.open(changed, now=world.now, directory=world.directory)
    assert world.server.open(request, now=world.now,
                             directory=world.directory).amount_minor == 4200
