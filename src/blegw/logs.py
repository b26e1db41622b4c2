"""Log set-up for the daemon: human lines on a terminal, one JSON object per line for log
shippers (``--log-format json``), and journal entries with fields under systemd.

Every line about a module carries its id: the ``MODULE_ID=`` journal field when stderr is the
journal stream systemd gave the service (``journal.py``), a ``module_id`` key in JSON, and a
``[module=...]`` tag at the end of a text line.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from .journal import JournalHandler, ModuleField, journal_stream

__all__ = ["JsonFormatter", "TextFormatter", "setup_logging"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 6),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
                 "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        module = getattr(record, "module_id", None)
        if module:
            entry["module_id"] = module
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(name)s %(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        module = getattr(record, "module_id", None)
        return f"{line} [module={module}]" if module else line


def setup_logging(level: int, fmt: str = "text") -> None:
    handler: logging.Handler
    if journal_stream():
        handler = JournalHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(ModuleField())
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
