"""Journal lines about a module carry its id as a field (MODULE_ID=), read back from a real
datagram socket speaking journald's native protocol; the text and JSON lines carry it too."""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

from blegw.journal import JournalHandler, ModuleField
from blegw.logs import JsonFormatter, TextFormatter


def _parse(datagram: bytes) -> dict[str, str]:
    """journald's native format: KEY=value lines, or KEY, newline, 64-bit LE length, data."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        head, sep, tail = rest.partition(b"\n")
        if b"=" in head:
            key, _, value = head.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = tail
        else:
            (size,) = struct.unpack("<Q", tail[:8])
            fields[head.decode()] = tail[8:8 + size].decode()
            assert tail[8 + size:9 + size] == b"\n"
            rest = tail[9 + size:]
        assert sep
    return fields


def test_module_lines_carry_module_id_in_the_journal(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.socket")
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(path)
    journal.settimeout(5)
    handler = JournalHandler(path=path)
    log = logging.getLogger("blegw.test-journal")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.warning("module %s: connect attempt 1 of 4 failed: %s", "0a1b2c3d", "timeout")
        first = _parse(journal.recv(65536))
        log.info("registry reloaded\nsecond line")
        second = _parse(journal.recv(65536))
        log.warning("refused", extra={"module_id": "0a1b2c3d4e5f6071"})
        third = _parse(journal.recv(65536))
        log.warning("module %s: not a module id", "band\nMODULE_ID=forged")
        fourth = _parse(journal.recv(65536))
    finally:
        log.removeHandler(handler)
        handler.close()
        journal.close()
    assert first["MODULE_ID"] == "0a1b2c3d"
    assert first["PRIORITY"] == "4" and first["SYSLOG_IDENTIFIER"] == "blegw"
    assert first["MESSAGE"] == "module 0a1b2c3d: connect attempt 1 of 4 failed: timeout"
    assert "MODULE_ID" not in second and second["MESSAGE"] == "registry reloaded\nsecond line"
    assert second["PRIORITY"] == "6"
    assert third["MODULE_ID"] == "0a1b2c3d4e5f6071"
    # A hostile name in the text cannot add or forge a field: it stays inside MESSAGE.
    assert "MODULE_ID" not in fourth and "MODULE_ID=forged" in fourth["MESSAGE"]


def test_a_journal_that_is_away_does_not_lose_the_line(tmp_path: Path,
                                                       capsys: object) -> None:
    handler = JournalHandler(path=str(tmp_path / "no-journal.socket"))
    record = logging.LogRecord("blegw", logging.WARNING, __file__, 1, "module %s: lost",
                               ("0a1b2c3d",), None)
    handler.handle(record)
    handler.close()
    assert "WARNING module 0a1b2c3d: lost" in capsys.readouterr().err  # type: ignore[attr-defined]


def test_text_and_json_lines_name_the_module() -> None:
    record = logging.LogRecord("blegw.relay", logging.WARNING, __file__, 1,
                               "module %s: request %s failed", ("0a1b2c3d", "ff00"), None)
    ModuleField().filter(record)
    assert TextFormatter().format(record).endswith("[module=0a1b2c3d]")
    assert json.loads(JsonFormatter().format(record))["module_id"] == "0a1b2c3d"


def test_the_daemon_uses_the_journal_only_when_stderr_is_the_journal_stream(
        tmp_path: Path) -> None:
    """JOURNAL_STREAM names stderr's device and inode (systemd sets it); any other value, or
    another stderr, keeps plain lines."""
    code = ("import logging; from blegw.logs import setup_logging; setup_logging(20); "
            "print(type(logging.getLogger().handlers[0]).__name__)")
    err = tmp_path / "stderr"
    with err.open("wb") as sink:
        st = os.fstat(sink.fileno())
        results = []
        for stream in (f"{st.st_dev}:{st.st_ino}", f"{st.st_dev}:{st.st_ino + 1}", "junk", ""):
            out = subprocess.run([sys.executable, "-c", code], stderr=sink, check=True,
                                 capture_output=False, stdout=subprocess.PIPE,
                                 env={**os.environ, "JOURNAL_STREAM": stream}, timeout=30)
            results.append(out.stdout.decode().strip())
    assert results == ["JournalHandler", "StreamHandler", "StreamHandler", "StreamHandler"]
