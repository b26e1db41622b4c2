"""bench/platform_loadtest.py at a tiny size: it runs end to end and prints every figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "platform_loadtest.py"


def test_the_load_generator_prints_settled_per_second_percentiles_errors_and_scaling() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--gateways", "12", "--payments", "12", "--rate", "30",
         "--workers", "1,2", "--backends", "sqlite", "--time-limit", "5"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^\s+sqlite\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+"
                      r"([\d.]+)x$", result.stdout, re.MULTILINE)
    assert [r[0] for r in rows] == ["1", "2"], result.stdout
    for _workers, settled, per_s, p50, p99, errors, _scaling in rows:
        assert int(settled) == 12 and int(errors) == 0, result.stdout
        assert float(per_s) > 0 and 0 < float(p50) <= float(p99)
    assert rows[0][6] == "1.00"


def test_the_load_generator_refuses_sizes_beyond_its_bounds() -> None:
    result = subprocess.run([sys.executable, str(BENCH), "--gateways", "1001"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "bounds" in result.stderr
