"""Where and as whom a process connects to the broker: URL, credentials, TLS files.

The daemon and the platform both build their aiomqtt client from one :class:`MqttEndpoint`, so
the two sides cannot drift apart in how they authenticate. Secrets come from files that only the
service may read (:func:`read_secret_file`), never from a command line that ``ps`` shows.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    import aiomqtt

__all__ = ["MqttEndpoint", "MqttSettingsError", "check_private_file", "read_secret_file"]

MAX_SECRET_BYTES = 4096
"""A password file longer than this is not a password file."""


class MqttSettingsError(Exception):
    """An MQTT setting is unusable: bad URL, missing or unsafe file. The message says which."""


def check_private_file(path: Path, what: str) -> None:
    """Refuse a secret file that others may read, or that the group may change.

    Group read is allowed (``root:blegw 0640`` is how /etc/blegw is laid out); anything for
    "other", or group write, means the secret is no longer the service's alone.
    """
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise MqttSettingsError(f"{what}: cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        raise MqttSettingsError(f"{what}: {path} is not a regular file")
    if mode & (stat.S_IRWXO | stat.S_IWGRP | stat.S_IXGRP):
        raise MqttSettingsError(
            f"{what}: {path} is accessible to others (mode {stat.S_IMODE(mode):04o}); "
            f"chmod 0600 (or 0640 with the service's group)")


def read_secret_file(path: Path, what: str) -> str:
    """The secret in ``path`` (one line, trailing newline removed), if the file is private."""
    check_private_file(path, what)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MqttSettingsError(f"{what}: cannot read {path}: {exc.strerror}") from exc
    if len(raw) > MAX_SECRET_BYTES:
        raise MqttSettingsError(f"{what}: {path} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        secret = raw.decode().rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise MqttSettingsError(f"{what}: {path} is not UTF-8 text") from exc
    if not secret or "\n" in secret:
        raise MqttSettingsError(f"{what}: {path} must hold exactly one non-empty line")
    return secret


def _check_readable(path: str | None, what: str) -> None:
    if path is not None and not Path(path).is_file():
        raise MqttSettingsError(f"{what}: {path}: no such file")


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """A broker URL (``mqtt://`` plain, ``mqtts://`` TLS) and how to authenticate to it.

    ``ca`` is the CA file that signed the broker's certificate (the system's CAs when ``None``);
    ``cert``/``key`` are an optional client certificate for brokers that require one.
    """

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        parsed = urlparse(self.url)
        if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
            raise MqttSettingsError(f"url: {self.url!r} is not mqtt://host[:port] or "
                                    f"mqtts://host[:port]")
        try:
            parsed.port  # noqa: B018  (raises ValueError for a port out of range)
        except ValueError as exc:
            raise MqttSettingsError(f"url: {self.url!r}: {exc}") from exc
        if parsed.username or parsed.password:
            raise MqttSettingsError("url: put no credentials in the URL (ps and logs show "
                                    "it); use the username and password-file settings")
        if self.password is not None and self.username is None:
            raise MqttSettingsError("username: required when a password is set")
        if (self.cert is None) != (self.key is None):
            raise MqttSettingsError("tls_cert and tls_key: give both or neither")
        if not self.tls and (self.ca or self.cert):
            raise MqttSettingsError(f"url: {self.url!r}: TLS files are set but the URL is "
                                    f"not mqtts://")
        _check_readable(self.ca, "tls_ca")
        _check_readable(self.cert, "tls_cert")
        if self.key is not None:
            check_private_file(Path(self.key), "tls_key")

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parsed = urlparse(self.url)
        return parsed.port or (8883 if parsed.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlparse(self.url).scheme == "mqtts"

    def tls_params(self) -> aiomqtt.TLSParameters | None:
        """TLS with the broker's certificate and host name checked (paho's defaults)."""
        if not self.tls:
            return None
        import aiomqtt  # here, not at module level: reading a configuration stays cheap

        return aiomqtt.TLSParameters(ca_certs=self.ca, certfile=self.cert, keyfile=self.key)

    def describe(self) -> str:
        """For logs: where and as whom, never the password."""
        who = f"{self.username}@" if self.username else "anonymous@"
        return f"{urlparse(self.url).scheme}://{who}{self.host}:{self.port}"
