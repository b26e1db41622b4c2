"""The README's hand walk-through, run exactly as written (a new user's first session).

It starts real processes: the virtual radio, mosquitto, the platform, the module simulator and
the gateway daemon, then scans, pairs, pays, looks at the status and forgets the module. Only the
radio is simulated. The one question it asks (the pairing code) is answered "y" on stdin.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- walkthrough:start -->\n```sh\n(.*?)```\n<!-- walkthrough:end -->",
                      text, re.S)
    assert match, "the README lost its walk-through block"
    return match.group(1)


@pytest.mark.timeout(240)
def test_the_readme_walkthrough_works_as_written() -> None:
    script = _walkthrough()
    env = {k: v for k, v in os.environ.items() if k not in ("BLEGW_CONFIG",
                                                            "DBUS_SYSTEM_BUS_ADDRESS")}
    # Output goes to a file, not a pipe: if a step fails, the background jobs the script
    # started would hold a pipe open and hide the failure behind a hang.
    with tempfile.TemporaryFile() as out_file:
        proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=ROOT, env=env,
                                stdin=subprocess.PIPE, stdout=out_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.communicate(b"y\n", timeout=180)
        except subprocess.TimeoutExpired:
            pass
        finally:
            # Whatever happened, nothing the walk-through started may outlive it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out_file.seek(0)
        out = out_file.read()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{text}"
    assert re.search(r"band +│ 5A:00:00:00:00:02 .*│ ready", text), text  # scan: pairing mode
    assert re.search(r"paired band \(.*\), module [0-9a-f]{32}, account alice", text), text
    assert "outcome: settled" in text, text
    assert "audit: clean" in text, text
    assert "gateway gw-try: uplink connected" in text, text
    assert re.search(r"forgot band .*enrollment revoked, bond removed", text), text
