"""``wearable-sim unit-key | unit-template | unit-cert`` in real subprocesses over a real state
directory, the platform's device authority certifying in between: the units a restarted
simulator loads from its owner-only files pay and accept, and no file but the key files holds
a key.
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blegw_harness.provision import provision_module
from blegw_platform.device_authority import DeviceAuthority
from blegw_platform.platform import Platform
from dynamic_code import Role, Verification
from dynamic_code.radio import Accept, Forward, Offer, Pay, UnitRequest, decode_answer
from e2e.suites import PublicKey, Suite
from wearable_sim.dynamic_units import DynamicUnits
from wearable_sim.element import SecureElement
from wearable_sim.policy import FixedPolicy
from wearable_sim.state import ModuleState, StateError
from wearable_sim.unit_cli import present_finger


def _sim(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "wearable_sim", *args], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def _ask(units: DynamicUnits, operation: object) -> object:
    request = UnitRequest(os.urandom(16), operation)  # type: ignore[arg-type]
    answer = decode_answer(await units.answer(request.encode()), request)
    assert answer.code == "ok", answer.message
    return answer.result


@pytest.mark.parametrize("mode", list(Verification), ids=lambda v: v.name.lower())
async def test_units_provisioned_by_the_cli_survive_a_restart_and_pay(
        tmp_path: Path, mode: Verification) -> None:
    platform = Platform(tmp_path / "platform")
    authority = DeviceAuthority(platform.state_dir, platform.cas, platform.ledger)
    try:
        for account in ("alice", "shop"):
            await platform.ledger.run(platform.ledger.add_account, account, "EUR", 10_000)
        till, phone = tmp_path / "till", tmp_path / "phone"
        for state in (till, phone):
            provision_module(platform, state, days=1)
        _sim("enroll-finger", "--state", str(phone))
        suite, label = Suite.SM2_SM3, "sm2"
        for state, role, account in ((till, Role.MERCHANT, "shop"),
                                     (phone, Role.MOBILE, "alice")):
            public = PublicKey(suite, bytes.fromhex(_sim(
                "unit-key", "--state", str(state), "--role", role.name.lower(), "--suite",
                label)))
            template = None
            if role is Role.MOBILE and mode is Verification.FEATURES:
                _sim("unit-template", "--state", str(state), "--out", str(tmp_path / "t.bin"))
                template = (tmp_path / "t.bin").read_bytes()
            cert = await platform.ledger.run(functools.partial(
                authority.enroll, role, public, account, "device",
                verification=mode if role is Role.MOBILE else None, template=template))
            (tmp_path / "cert").write_bytes(cert.encode())
            extra = (["--enroll-finger"] if role is Role.MOBILE
                     and mode is Verification.DEVICE else [])
            _sim("unit-cert", "--state", str(state), "--role", role.name.lower(),
                 str(tmp_path / "cert"), *extra)
        # the key files are owner-only; nothing else in units/ holds a key
        for path in (phone / "units").iterdir():
            if path.suffix in (".key", ".template"):
                assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
        # a restarted simulator: the units load from the files
        merchant = DynamicUnits(FixedPolicy(True), ModuleState(till))
        payer = DynamicUnits(FixedPolicy(True), ModuleState(phone))
        assert merchant.roles == [Role.MERCHANT] and payer.roles == [Role.MOBILE]
        present_finger(payer, SecureElement(ModuleState(phone)), "match")
        consumption = await _ask(merchant, Offer(700, "EUR", 60))
        assert isinstance(consumption, bytes)
        payment = await _ask(payer, Pay(consumption, mode, True))
        assert isinstance(payment, bytes)
        accepted = await _ask(merchant, Accept(payment))
        assert getattr(accepted, "amount_minor", None) == 700
        # and the settlement server accepts what the restarted merchant unit seals
        request = await _ask(merchant, Forward(accepted.handle,  # type: ignore[attr-defined]
                                               authority.unit.certificate(suite), False))
        assert isinstance(request, bytes)
        paid = await asyncio.to_thread(authority.unit.open, request, now=int(time.time()),
                                       directory=authority.registry)
        assert (paid.payer, paid.payee, paid.amount_minor) == ("alice", "shop", 700)
        # a corrupt key file is a StateError, not a silent empty unit
        (till / "units" / "merchant.key").write_bytes(b"\x00")
        os.chmod(till / "units" / "merchant.key", 0o600)
        with pytest.raises(StateError):
            DynamicUnits(FixedPolicy(True), ModuleState(till))
    finally:
        authority.close()
        platform.close()

