"""How the daemon and the platform reach the MQTT broker: URL, account, TLS files, secrets.

An adapter shared by both services (it reads secret files and builds aiomqtt's TLS settings),
so it cannot live in the sans-IO ``relay_contract``; neither service may import the other, so
it cannot live in either. aiomqtt is imported only when TLS parameters are built, so a command
that merely reads a configuration does not load the MQTT client.
"""

from .endpoint import MqttEndpoint, MqttSettingsError, check_private_file, read_secret_file

__all__ = ["MqttEndpoint", "MqttSettingsError", "check_private_file", "read_secret_file"]
