"""Reuse the mosquitto fixture of the chain tests."""

from tests.blegw.conftest import mosquitto

__all__ = ["mosquitto"]
