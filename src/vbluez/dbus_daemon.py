"""A private ``dbus-daemon`` with a system-bus-like policy, owned by the caller.

bleak and bless connect to "the system bus" at ``DBUS_SYSTEM_BUS_ADDRESS``. A private daemon on a
socket in a temporary directory keeps tests away from the machine's real bus (and its real
BlueZ, if any) and lets several virtual radios run side by side.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .errors import VBluezError

__all__ = ["DBusDaemon", "DBusDaemonError"]

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
  <limit name="max_incoming_bytes">133169152</limit>
  <limit name="max_outgoing_bytes">133169152</limit>
  <limit name="max_message_size">33554432</limit>
  <limit name="max_replies_per_connection">50000</limit>
  <limit name="reply_timeout">60000</limit>
</busconfig>
"""


class DBusDaemonError(VBluezError):
    """The private dbus-daemon could not be started."""


class DBusDaemon:
    """Start and stop one private bus. Use as a context manager or call start()/stop()."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.address: str = ""

    def start(self, timeout: float = 10.0) -> str:
        exe = shutil.which("dbus-daemon")
        if exe is None:
            raise DBusDaemonError(
                "dbus-daemon is not installed; install the 'dbus' package "
                "(scripts/bootstrap does it)"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="vbluez-"))
        socket = self._dir / "system_bus_socket"
        config = self._dir / "bus.conf"
        config.write_text(_CONFIG.format(socket=socket))
        read_fd, write_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [exe, f"--config-file={config}", "--nofork", "--nopidfile",
                 f"--print-address={write_fd}"],
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            os.close(write_fd)
        try:
            with os.fdopen(read_fd, "rb") as pipe:
                line = _read_line(pipe, timeout)
        except Exception:
            self.stop()
            raise
        if not line:
            self.stop()
            raise DBusDaemonError("dbus-daemon exited before printing its address")
        self.address = line.decode().strip()
        return self.address

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> DBusDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_line(pipe: object, timeout: float) -> bytes:
    import select

    fd = pipe.fileno()  # type: ignore[attr-defined]
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        raise DBusDaemonError(f"dbus-daemon did not print its address within {timeout} s")
    line: bytes = pipe.readline()  # type: ignore[attr-defined]
    return line


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this child when its parent dies, so nothing is left behind."""
    import ctypes

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass
