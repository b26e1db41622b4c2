"""The reference platform: HTTP API for terminals, MQTT dispatch, verification, SQLite ledger.

Nothing is imported here, so ``blegw-platform --help`` loads neither aiohttp nor the
cryptography stack; import ``blegw_platform.platform``, ``.ledger`` or ``.api`` directly.
"""
