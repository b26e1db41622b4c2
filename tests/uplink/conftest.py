"""The brokers of tests/blegw/conftest.py, for the uplink tests."""

from tests.blegw.conftest import Mosquitto, SecureMosquitto, mosquitto, secure_mosquitto

__all__ = ["Mosquitto", "SecureMosquitto", "mosquitto", "secure_mosquitto"]
