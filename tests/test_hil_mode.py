"""HIL mode (docs/hil.md) exercised on every commit: ``scripts/hil-selftest`` starts a virtual
BlueZ outside the suite, presents it as the system bus and runs tests with ``pytest --hil``.

The radio here is the virtual one, as everywhere in the suite; what these tests check is the
mode itself: that the HIL-capable tests pass on a BlueZ the suite did not start, that tests
needing fault injection are skipped with a reason, and that a test reaching anything
vbluez-only fails the run instead of passing quietly on the emulator.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "hil-selftest"

pytestmark = pytest.mark.skipif(os.environ.get("BLEGW_HIL") == "1",
                                reason="HIL mode: this test starts its own virtual BlueZ")

CHEATING_TESTS = '''
import pytest
from vbluez import RadioControl, VirtualBluez


@pytest.mark.asyncio
async def test_reaches_the_control_api(vbluez):
    await vbluez.control.links()


@pytest.mark.asyncio
async def test_starts_its_own_radio():
    async with VirtualBluez():
        pass


@pytest.mark.asyncio
async def test_swallows_the_refusal(vbluez):
    try:
        async with RadioControl(vbluez.bus_address) as ctl:
            await ctl.links()
    except Exception:
        pass
'''


def _selftest(*args: str, adapters: int = 4) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BLEGW_HIL") and k != "DBUS_SYSTEM_BUS_ADDRESS"}
    env["BLEGW_HIL_SELFTEST_ADAPTERS"] = str(adapters)
    return subprocess.run([str(SCRIPT), "-rs", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=120, check=False)


def test_hil_mode_pays_through_the_chain_on_an_outside_bluez_and_skips_fault_injection() -> None:
    """On a two-dongle rig: the chain pays; a fault-injection test is skipped with its reason;
    a card test (three hosts) is skipped with the adapter count, not failed, so a small rig's
    run stays meaningful (the HIL pass of scripts/test runs it on four adapters)."""
    chain = "tests/blegw/test_chain.py::test_payment_settles_through_the_chain[P256_SHA256]"
    card = ("tests/blegw/test_card_payments.py::"
            "test_card_payment_settles_beside_a_module_payment_in_both_suites")
    run = _selftest(chain, "tests/vbluez/test_pairing.py::test_numeric_comparison_accepted",
                    card, adapters=2)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "1 passed, 2 skipped" in out, out
    assert "HIL mode: needs the vbluez control API (links)" in out, out
    assert "HIL mode: this test needs 3 adapters" in out, out
    assert "has 2 (['hci0', 'hci1'])" in out, out
    assert "hil-selftest: no vbluez-only call" in out, out


def test_hil_mode_fails_a_test_that_touches_vbluez_only_interfaces(tmp_path: Path) -> None:
    """A test that would only pass on the emulator (it steers or starts the virtual radio, or
    hides the refusal) must fail the HIL run: the first two fail, the third is caught by the
    violations log although it passed."""
    cheat = tmp_path / "test_cheat.py"
    cheat.write_text(CHEATING_TESTS)
    run = _selftest("-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), str(cheat))
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "2 failed, 1 passed" in out, out
    assert out.count("HilViolation") >= 2, out
    assert "HIL mode reached vbluez-only interfaces:" in out, out
    assert "the vbluez control API (radio.control)" in out, out
    assert "starting a virtual radio (VirtualBluez)" in out, out
    assert "the vbluez control API (RadioControl)" in out, out
    assert "hil-selftest: no vbluez-only call" not in out, out

