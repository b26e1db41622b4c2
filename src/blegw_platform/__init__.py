"""The reference platform: HTTP API for terminals, MQTT dispatch, verification, SQLite ledger."""

from .ledger import Ledger, LedgerError, TransactionRecord
from .platform import Platform, PlatformError, TransactionInput

__all__ = ["Ledger", "LedgerError", "Platform", "PlatformError", "TransactionInput",
           "TransactionRecord"]
