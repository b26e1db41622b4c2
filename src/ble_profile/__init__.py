"""ble_profile."""
