"""The broker's side of an authenticated, least-privilege uplink: files for mosquitto.

:func:`setup` writes a directory mosquitto runs from (``mosquitto -c DIR/mosquitto.conf``):

* ``mosquitto.conf``: no anonymous clients, a password file, an ACL file, client ids bound to
  user names, a packet size limit, one TLS listener;
* ``acl``: ``pattern`` rules that keep gateway ``G`` to ``blegw/v1/gw/G/{req,note,resp,status}``
  and let the platform user send every request and read every answer;
* ``passwd``: PBKDF2-SHA512 hashes in mosquitto's own ``$7$`` format (0600);
* ``ca.pem``/``ca.key``: a CA made here, and ``server.pem``/``server.key`` signed by it for the
  host names clients use (keys 0600); clients check the broker against ``ca.pem``;
* ``platform.password``: the platform's broker password (0600), for ``serve
  --mqtt-password-file``.

:func:`add_gateway` adds or rotates one gateway's account and returns its new password, shown
once. Passwords are 192 random bits, so the hash's work factor is not what protects them.
Everything here is plain file I/O, no asyncio: the CLI and the demo chain call it.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from private_files import write_atomic
from relay_contract import GATEWAY_ID_RULE, PLATFORM_USER, is_gateway_id

__all__ = [
    "MAX_PACKET_BYTES",
    "PLATFORM_USER",
    "BrokerDir",
    "BrokerSetupError",
    "add_gateway",
    "hash_password",
    "issue_certificate",
    "remove_gateway",
    "render_acl",
    "render_conf",
    "setup",
]


MAX_PACKET_BYTES = 16384
"""Largest MQTT packet the broker accepts. A relay request or answer is well under 2 KiB; a
bigger packet is refused at the broker and its sender disconnected, so it never reaches (or
queues up in the memory of) a gateway."""

PBKDF2_ITERATIONS = 1000
SALT_BYTES = 12
CERT_DAYS = 825


class BrokerSetupError(Exception):
    """The broker directory cannot be written or read as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class BrokerDir:
    """The files of one broker directory (absolute paths)."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "mosquitto.conf"

    @property
    def acl(self) -> Path:
        return self.root / "acl"

    @property
    def passwd(self) -> Path:
        return self.root / "passwd"

    @property
    def ca(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def platform_password(self) -> Path:
        return self.root / "platform.password"


def hash_password(password: str, *, salt: bytes | None = None,
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """``$7$ITERATIONS$SALT$HASH``: PBKDF2-SHA512, what mosquitto_passwd (2.0) writes."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def render_acl() -> str:
    """The ACL: every rule names exact topics; anything not granted is denied."""
    return (
        "# blegw broker ACL (docs/mqtt-contract.md, \"Deployment security\").\n"
        "# Anything not granted here is denied. %u is the connecting user name: a gateway's\n"
        "# account is named after its gateway id, so gateway G reads only its own requests and\n"
        "# code notices and writes only its own answers and status.\n"
        "pattern read blegw/v1/gw/%u/req\n"
        "pattern read blegw/v1/gw/%u/note\n"
        "pattern write blegw/v1/gw/%u/resp\n"
        "pattern write blegw/v1/gw/%u/status\n"
        "\n"
        "# The platform sends every gateway's requests and code notices and reads every answer\n"
        "# and status.\n"
        f"user {PLATFORM_USER}\n"
        "topic write blegw/v1/gw/+/req\n"
        "topic write blegw/v1/gw/+/note\n"
        "topic read blegw/v1/gw/+/resp\n"
        "topic read blegw/v1/gw/+/status\n"
    )


def render_conf(root: Path, *, port: int = 8883, listen: str = "",
                data: Path | None = None, run_as: str = "mosquitto") -> str:
    """mosquitto.conf for mosquitto 2.0 (Debian 12), with absolute paths into ``root``.

    ``run_as``: the account mosquitto switches to when started as root; it must be able to
    read ``passwd`` and ``server.key`` (setup gives them to it).
    """
    files = BrokerDir(root)
    bind = f" {listen}" if listen else ""
    return (
        "# blegw broker: authenticated, TLS only, least privilege.\n"
        "# Written by blegw-platform broker-setup; docs/mqtt-contract.md,\n"
        "# \"Deployment security\", says what each line stops.\n"
        f"user {run_as}\n"
        "per_listener_settings false\n"
        "allow_anonymous false\n"
        f"password_file {files.passwd}\n"
        f"acl_file {files.acl}\n"
        "# Oversized packets are refused and their sender disconnected (the whole packet is\n"
        "# counted; mosquitto 2.0 prefers this to message_size_limit, payload only).\n"
        f"max_packet_size {MAX_PACKET_BYTES}\n"
        "# Bounded memory for a client that stays away: at most this much queued for it.\n"
        "max_queued_messages 1000\n"
        "max_queued_bytes 4194304\n"
        "persistent_client_expiration 14d\n"
        "max_keepalive 300\n"
        "persistence true\n"
        f"persistence_location {data or root}/\n"
        "set_tcp_nodelay true\n"
        "log_dest stderr\n"
        "\n"
        f"listener {port}{bind}\n"
        "# The session (and its queued messages) belongs to the user name, whatever client id\n"
        "# a client claims: nobody can take over another account's persistent session.\n"
        "use_username_as_clientid true\n"
        f"cafile {files.ca}\n"
        f"certfile {files.server_cert}\n"
        f"keyfile {files.server_key}\n"
        "tls_version tlsv1.2\n"
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: str, public_key: ec.EllipticCurvePublicKey,
                 issuer_key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
                 *, ca: bool, hosts: tuple[str, ...] = ()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_key.public_key()), False)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              True)
               .add_extension(x509.KeyUsage(
                   digital_signature=not ca, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=not ca, key_cert_sign=ca,
                   crl_sign=ca, encipher_only=False, decipher_only=False), True))
    if not ca:
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    return builder.sign(issuer_key, hashes.SHA256())


def issue_certificate(root: Path, name: str, hosts: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """A certificate (PEM) and its key (PEM) signed by the directory's CA.

    ``hosts`` become the subject alternative names (a server); without them it is a client
    certificate for brokers that also ask clients for one (``require_certificate true``).
    """
    files = BrokerDir(root)
    try:
        ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
    except (OSError, ValueError) as exc:
        raise BrokerSetupError(f"{root}: no usable CA (run broker-setup first): {exc}") from exc
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise BrokerSetupError(f"{files.ca_key}: not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(name, key.public_key(), ca_key, ca_cert.subject, ca=False,
                        hosts=hosts)
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _read_passwd(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise BrokerSetupError(f"{path}: {exc.strerror} (run broker-setup first)") from exc
    users: dict[str, str] = {}
    for line in lines:
        if line.strip():
            user, sep, digest = line.partition(":")
            if not sep:
                raise BrokerSetupError(f"{path}: a line without user:hash")
            users[user] = digest
    return users


def _write_passwd(path: Path, users: dict[str, str],
                  owner: tuple[int, int] | None = None) -> None:
    """The password file, 0600, keeping the owner it had (the broker's account reads it)."""
    if owner is None and path.exists():
        st = path.stat()
        owner = (st.st_uid, st.st_gid)
    write_atomic(path, "".join(f"{u}:{h}\n" for u, h in sorted(users.items())).encode(),
                 owner=owner)


def _account(name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise BrokerSetupError(f"run-as {name!r}: no such user on this machine") from exc
    return entry.pw_uid, entry.pw_gid


def setup(root: Path, *, port: int = 8883, listen: str = "",
          hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
          data: Path | None = None, run_as: str | None = None) -> BrokerDir:
    """Write a complete broker directory; refuses one that already has a configuration (its CA
    and passwords are in use: rotate gateways with :func:`add_gateway` instead).

    ``run_as`` (default: the user running this) is the account mosquitto runs as; when this
    runs as root, the files mosquitto reads (``passwd``, ``server.key``, the persistence
    directory) are given to that account, still 0600.
    """
    run_as = run_as or pwd.getpwuid(os.geteuid()).pw_name
    broker_owner = _account(run_as)
    if data is None and broker_owner[0] != os.geteuid():
        raise BrokerSetupError(f"mosquitto runs as {run_as}: give its persistence directory "
                               f"(--data, e.g. /var/lib/mosquitto)")
    root = root.resolve()
    data = data.resolve() if data is not None else None
    files = BrokerDir(root)
    if files.conf.exists() or files.ca_key.exists():
        raise BrokerSetupError(f"{root} already holds a broker configuration; use "
                               f"broker-user to add or rotate accounts")
    if not 1 <= port <= 65535:
        raise BrokerSetupError(f"port {port}: must be 1..65535")
    if not hosts:
        raise BrokerSetupError("at least one host name for the broker's certificate")
    try:
        # 0750: mosquitto, run as another account, must reach passwd and server.key (its own,
        # 0600) through the directory; ca.key and platform.password stay 0600 to their owner.
        root.mkdir(mode=0o750, parents=True, exist_ok=True)
        root.chmod(0o750)
        if os.geteuid() == 0 and broker_owner[0] != 0:
            os.chown(root, -1, broker_owner[1])
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _certificate("blegw broker CA", ca_key.public_key(), ca_key, None, ca=True)
        write_atomic(files.ca_key, _key_pem(ca_key))
        write_atomic(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        cert, key = issue_certificate(root, hosts[0], hosts)
        write_atomic(files.server_key, key, owner=broker_owner)
        write_atomic(files.server_cert, cert, mode=0o644)
        password = secrets.token_urlsafe(24)
        write_atomic(files.platform_password, f"{password}\n".encode())
        _write_passwd(files.passwd, {PLATFORM_USER: hash_password(password)}, broker_owner)
        write_atomic(files.acl, render_acl().encode(), mode=0o644)
        write_atomic(files.conf, render_conf(root, port=port, listen=listen, data=data,
                                             run_as=run_as).encode(), mode=0o644)
        if data is not None:
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            if os.geteuid() == 0:
                os.chown(data, *broker_owner)

    except OSError as exc:
        raise BrokerSetupError(f"{root}: {exc}") from exc
    return files


def add_gateway(root: Path, gateway_id: str, password_out: Path | None = None) -> str:
    """Add gateway ``gateway_id``'s account, or give it a new password (rotation).

    Returns the new password; with ``password_out`` it is also written there (0600) for the
    gateway's ``[mqtt] password_file``. The broker reads the change on SIGHUP.
    """
    if not is_gateway_id(gateway_id):
        raise BrokerSetupError(f"gateway {gateway_id!r}: {GATEWAY_ID_RULE}")
    files = BrokerDir(root.resolve())
    users = _read_passwd(files.passwd)
    password = secrets.token_urlsafe(24)
    users[gateway_id] = hash_password(password)
    try:
        if password_out is not None:
            password_out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(password_out, f"{password}\n".encode())
        _write_passwd(files.passwd, users)
    except OSError as exc:
        raise BrokerSetupError(f"{exc}") from exc
    return password


def remove_gateway(root: Path, gateway_id: str) -> bool:
    """Delete a gateway's account (a gateway that is gone or compromised); False if absent."""
    files = BrokerDir(root.resolve())
    users = _read_passwd(files.passwd)
    if gateway_id == PLATFORM_USER or users.pop(gateway_id, None) is None:
        return False
    try:
        _write_passwd(files.passwd, users)
    except OSError as exc:
        raise BrokerSetupError(f"{exc}") from exc
    return True
