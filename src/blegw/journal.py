"""Log records as journal entries with fields: ``MODULE_ID=`` on every line about a module.

Under systemd the daemon's stderr is a stream to journald and systemd says so in
``JOURNAL_STREAM`` (device and inode of that stream). Lines written there carry no fields of
their own, so when stderr is that stream the daemon sends each record over journald's native
protocol instead (a datagram of ``KEY=value`` lines to ``/run/systemd/journal/socket``, the
protocol ``sd_journal_send`` speaks): ``journalctl -u blegw MODULE_ID=0a1b2c3d`` then finds one
module's lines. No library is needed for it (``systemd-python`` needs libsystemd's headers to
build, which a Raspberry Pi install does not have); the format is systemd's documented
"Native Journal Protocol".

Which module a record is about: the ``module_id`` attribute when the code logging it gives one
(``extra=``), else the module label that the relay's and the link's lines start with
(``module %s: ...``, the first 8 hex digits of the id).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import sys

__all__ = ["JOURNAL_SOCKET", "JournalHandler", "ModuleField", "journal_stream", "module_of"]

JOURNAL_SOCKET = "/run/systemd/journal/socket"
_LABEL = re.compile(r"[0-9a-f]{8,64}")
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
             logging.DEBUG: 7}


def module_of(record: logging.LogRecord) -> str | None:
    """The module id (or its first 8 hex digits) a record is about, if any."""
    given = getattr(record, "module_id", None)
    if isinstance(given, str) and _LABEL.fullmatch(given):
        return given
    if isinstance(record.msg, str) and record.msg.startswith("module %s") and \
            isinstance(record.args, tuple) and record.args and \
            isinstance(record.args[0], str) and _LABEL.fullmatch(record.args[0]):
        return record.args[0]
    return None


class ModuleField(logging.Filter):
    """Sets ``record.module_id`` (or None) so every formatter and handler can use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.module_id = module_of(record)
        return True


def journal_stream() -> bool:
    """Whether stderr is the journal stream systemd gave this service (``JOURNAL_STREAM``)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def _field(key: str, value: str) -> bytes:
    data = value.encode("utf-8", "replace")
    if b"\n" in data:  # the protocol's binary form: name, newline, 64-bit LE length, data
        return key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key.encode() + b"=" + data + b"\n"


class JournalHandler(logging.Handler):
    """Sends each record to journald as one entry: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER,
    LOGGER, MODULE_ID when the record is about a module, and the traceback if any.

    A record journald does not take (it is restarting, the entry is too large) goes to stderr
    instead, so nothing is lost silently.
    """

    def __init__(self, identifier: str = "blegw", path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.identifier = identifier
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addFilter(ModuleField())

    def entry(self, record: logging.LogRecord) -> bytes:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        fields = [("MESSAGE", message), ("PRIORITY", str(_PRIORITY.get(record.levelno, 6))),
                  ("SYSLOG_IDENTIFIER", self.identifier), ("LOGGER", record.name)]
        module = getattr(record, "module_id", None)
        if module:
            fields.append(("MODULE_ID", module))
        return b"".join(_field(k, v) for k, v in fields)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = self.entry(record)
            self._socket.sendto(data, self.path)
        except OSError:
            sys.stderr.write(f"{record.levelname} {record.getMessage()}\n")
        except Exception:  # logging must never stop the daemon
            self.handleError(record)

    def close(self) -> None:
        self._socket.close()
        super().close()
