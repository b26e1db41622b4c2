"""scripts/hostile-probe --quick: issue #11's attacks, from outside, against the README's stack.

The probe starts the walk-through's processes (virtual radio, mosquitto with the shipped
configuration, the platform, the module simulator, the gateway daemon), pairs, and after each
attack checks that every process runs, an honest payment settles, the audit is clean and no
money moved but the honest payments'. The full run (every attack) is run by hand; its output is
in docs/threat-model.md.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_hostile_probe_quick_finds_nothing() -> None:
    proc = subprocess.run([str(ROOT / "scripts" / "hostile-probe"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=170, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert not [line for line in proc.stdout.splitlines() if line.startswith("FAIL")], out
    assert "summary: 8 of 8 checks PASS, 0 FAIL" in proc.stdout, out
