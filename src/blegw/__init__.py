"""The gateway daemon: relays confirmation requests between the platform (MQTT) and secure
modules (BLE). It holds no key; it moves bytes.

Nothing is imported here: ``blegw status`` must not load bleak, aiohttp or the relay just to
name the package. Import the module you need (``blegw.service``, ``blegw.config``...).
"""
