"""Attacks on the uplink with broker access, against a real mosquitto running the shipped
configuration over TLS (certificates made by broker-setup with ``cryptography``).

The attacker is an ordinary MQTT client (aiomqtt), either with no account or with the account
of another gateway ``H`` (a gateway its owner controls, or one that was compromised). Each test
also checks that the broker still runs and the honest traffic still flows afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from blegw_platform.broker_setup import MAX_PACKET_BYTES, PLATFORM_USER, issue_certificate
from mqtt_uplink import MqttEndpoint
from relay_contract import topic

from .conftest import Mosquitto, SecureMosquitto

G, H = "gw-victim", "gw-attacker"


@dataclass(frozen=True)
class Account:
    user: str | None
    password: str | None


def _client(port: int, ca: str | None, who: Account, *, identifier: str | None = None,
            clean_session: bool | None = None) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", port, username=who.user, password=who.password,
                          identifier=identifier, clean_session=clean_session,
                          tls_params=aiomqtt.TLSParameters(ca_certs=ca) if ca else None,
                          timeout=5)


def connect(broker: SecureMosquitto, who: Account, **kw: object) -> aiomqtt.Client:
    return _client(broker.port, broker.ca, who, **kw)  # type: ignore[arg-type]


async def collect(client: aiomqtt.Client, seconds: float) -> list[aiomqtt.Message]:
    """Every message the client receives within ``seconds``."""
    got: list[aiomqtt.Message] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                got.append(message)
    return got


def _accounts(broker: SecureMosquitto) -> tuple[Account, Account, Account]:
    platform = Account(PLATFORM_USER, broker.platform_password)
    return platform, Account(G, broker.add_gateway(G)), Account(H, broker.add_gateway(H))


def _alive(broker: SecureMosquitto) -> None:
    assert broker.process.proc is not None and broker.process.proc.returncode is None


async def test_gateway_cannot_read_another_gateways_requests(
        secure_mosquitto: SecureMosquitto) -> None:
    platform, g, h = _accounts(secure_mosquitto)
    await secure_mosquitto.reload()
    async with connect(secure_mosquitto, h) as attacker, connect(secure_mosquitto, g) as victim:
        for pattern in (topic(G, "req"), topic("+", "req"), "blegw/#", "#"):
            await attacker.subscribe(pattern, qos=1)
        await victim.subscribe(topic(G, "req"), qos=1)
        async with connect(secure_mosquitto, platform) as sender:
            await sender.publish(topic(G, "req"), b"pay 999.99 to mallory", qos=1)
            await sender.publish(topic(H, "req"), b"for the attacker's own gateway", qos=1)
        stolen = await collect(attacker, 1.0)
        delivered = await collect(victim, 1.0)
    assert [m.payload for m in delivered] == [b"pay 999.99 to mallory"]
    assert [(str(m.topic), m.payload) for m in stolen] == \
        [(topic(H, "req"), b"for the attacker's own gateway")]       # its own, nothing else
    _alive(secure_mosquitto)


async def test_gateway_cannot_answer_set_status_or_inject_requests_for_another(
        secure_mosquitto: SecureMosquitto) -> None:
    platform, g, h = _accounts(secure_mosquitto)
    await secure_mosquitto.reload()
    async with connect(secure_mosquitto, platform) as listener, \
            connect(secure_mosquitto, g) as victim:
        await listener.subscribe(topic("+", "resp"), qos=1)
        await listener.subscribe(topic("+", "status"), qos=1)
        await victim.subscribe(topic(G, "req"), qos=1)
        async with connect(secure_mosquitto, h) as attacker:
            await attacker.publish(topic(G, "resp"), b"forged: module unreachable", qos=1)
            await attacker.publish(topic(G, "status"), b"offline", qos=1, retain=True)
            await attacker.publish(topic(G, "req"), b"injected: pay mallory 999,999.99",
                                   qos=1)
            await attacker.publish(topic(H, "resp"), b"its own answer", qos=1)
        await victim.publish(topic(G, "status"), b"online", qos=1, retain=True)
        got = await collect(listener, 1.0)
        injected = await collect(victim, 0.2)
    assert [(str(m.topic), m.payload) for m in got] == \
        [(topic(H, "resp"), b"its own answer"), (topic(G, "status"), b"online")]
    assert injected == []                      # only the platform may write a gateway's req
    # Nothing forged was retained either: a newcomer reads G's own status.
    async with connect(secure_mosquitto, platform) as newcomer:
        await newcomer.subscribe(topic(G, "status"), qos=1)
        retained = await collect(newcomer, 0.5)
    assert [m.payload for m in retained] == [b"online"]
    _alive(secure_mosquitto)


async def _takeover_trial(connect_as: object, victim: Account, victim_id: str,
                          attacker: Account, attacker_id: str, sender: Account,
                          subscription: str, destination: str) -> tuple[int, int]:
    """The victim's persistent session holds 8 queued QoS 1 messages; the attacker connects
    with the victim's client id and clean session off. Returns (stolen, delivered later)."""
    open_client = connect_as  # a function (Account, identifier=, clean_session=) -> Client
    async with open_client(victim, identifier=victim_id, clean_session=False) as c:  # type: ignore[operator]
        await c.subscribe(subscription, qos=1)
    async with open_client(sender, clean_session=True) as c:  # type: ignore[operator]
        for i in range(8):
            await c.publish(destination, f"queued {i}".encode(), qos=1)
    async with open_client(attacker, identifier=attacker_id, clean_session=False) as c:  # type: ignore[operator]
        stolen = await collect(c, 1.5)
    async with open_client(victim, identifier=victim_id, clean_session=False) as c:  # type: ignore[operator]
        delivered = await collect(c, 1.5)
    return len(stolen), len(delivered)


@pytest.mark.parametrize("attacker_id", ["blegw-platform", PLATFORM_USER])
async def test_client_id_takeover_of_the_platforms_session_steals_nothing(
        secure_mosquitto: SecureMosquitto, attacker_id: str) -> None:
    platform, g, h = _accounts(secure_mosquitto)
    await secure_mosquitto.reload()

    def open_client(who: Account, **kw: object) -> aiomqtt.Client:
        return connect(secure_mosquitto, who, **kw)

    stolen, delivered = await _takeover_trial(
        open_client, platform, "blegw-platform", h, attacker_id, g, topic("+", "resp"),
        topic(G, "resp"))
    assert (stolen, delivered) == (0, 8)
    _alive(secure_mosquitto)


@pytest.mark.parametrize("attacker_id", [f"blegw-{G}", G])
async def test_client_id_takeover_of_a_gateways_session_steals_nothing(
        secure_mosquitto: SecureMosquitto, attacker_id: str) -> None:
    platform, g, h = _accounts(secure_mosquitto)
    await secure_mosquitto.reload()

    def open_client(who: Account, **kw: object) -> aiomqtt.Client:
        return connect(secure_mosquitto, who, **kw)

    stolen, delivered = await _takeover_trial(
        open_client, g, f"blegw-{G}", h, attacker_id, platform, topic(G, "req"),
        topic(G, "req"))
    assert (stolen, delivered) == (0, 8)
    _alive(secure_mosquitto)


async def test_client_id_takeover_on_an_anonymous_broker_steals_everything(
        mosquitto: Mosquitto) -> None:
    """The same trial against the walk-through's former broker (anonymous, fixed client ids):
    the attack the shipped configuration stops is real, and the trial can see it."""
    nobody = Account(None, None)

    def open_client(who: Account, **kw: object) -> aiomqtt.Client:
        return _client(mosquitto.port, None, who, **kw)  # type: ignore[arg-type]

    stolen, delivered = await _takeover_trial(
        open_client, nobody, "blegw-platform", nobody, "blegw-platform", nobody,
        topic("+", "resp"), topic(G, "resp"))
    assert (stolen, delivered) == (8, 0)


async def test_anonymous_client_is_refused(secure_mosquitto: SecureMosquitto) -> None:
    platform, _g, _h = _accounts(secure_mosquitto)
    with pytest.raises(aiomqtt.MqttError):
        async with connect(secure_mosquitto, Account(None, None)):
            pass
    # Nor can anyone skip TLS: the only listener speaks TLS.
    with pytest.raises(aiomqtt.MqttError):
        async with _client(secure_mosquitto.port, None, platform):
            pass
    async with connect(secure_mosquitto, platform):                  # the honest path
        pass
    _alive(secure_mosquitto)


@pytest.mark.parametrize("who", ["wrong password", "unknown user", "platform user, gw password"])
async def test_wrong_password_is_refused(secure_mosquitto: SecureMosquitto, who: str) -> None:
    platform, g, _h = _accounts(secure_mosquitto)
    await secure_mosquitto.reload()
    account = {"wrong password": Account(G, "not-" + (g.password or "")),
               "unknown user": Account("gw-nobody", g.password),
               "platform user, gw password": Account(PLATFORM_USER, g.password)}[who]
    with pytest.raises(aiomqtt.MqttCodeError) as refused:
        async with connect(secure_mosquitto, account):
            pass
    assert str(refused.value.rc) in ("Not authorized", "Bad user name or password")
    async with connect(secure_mosquitto, g), connect(secure_mosquitto, platform):
        pass
    _alive(secure_mosquitto)


async def test_rotated_gateway_password_locks_the_old_one_out(
        secure_mosquitto: SecureMosquitto) -> None:
    _platform, g, _h = _accounts(secure_mosquitto)
    await secure_mosquitto.reload()
    new = Account(G, secure_mosquitto.add_gateway(G))          # rotation after a leak
    await secure_mosquitto.reload()
    with pytest.raises(aiomqtt.MqttCodeError):
        async with connect(secure_mosquitto, g):
            pass
    async with connect(secure_mosquitto, new):
        pass


@pytest.mark.parametrize("direction", ["gateway to platform", "platform to offline gateway"])
async def test_oversized_message_is_refused_by_the_broker(
        secure_mosquitto: SecureMosquitto, direction: str) -> None:
    platform, g, _h = _accounts(secure_mosquitto)
    await secure_mosquitto.reload()
    big = b"x" * (MAX_PACKET_BYTES * 8)
    near_limit = b"y" * (MAX_PACKET_BYTES - 200)           # the limit leaves room for real use
    if direction == "gateway to platform":
        receiver, receiver_id, subscription = platform, "blegw-platform", topic("+", "resp")
        sender, destination = g, topic(G, "resp")
    else:
        receiver, receiver_id, subscription = g, f"blegw-{G}", topic(G, "req")
        sender, destination = platform, topic(G, "req")
    async with connect(secure_mosquitto, receiver, identifier=receiver_id,
                       clean_session=False) as c:
        await c.subscribe(subscription, qos=1)
    with pytest.raises(aiomqtt.MqttError):         # the broker disconnects the sender
        async with connect(secure_mosquitto, sender) as c:
            await c.publish(destination, big, qos=1)
            await c.publish(destination, b"after", qos=1)
    async with connect(secure_mosquitto, sender) as c:
        await c.publish(destination, near_limit, qos=1)
    async with connect(secure_mosquitto, receiver, identifier=receiver_id,
                       clean_session=False) as c:
        got = await collect(c, 1.0)
    assert [len(m.payload) for m in got] == [len(near_limit)]  # type: ignore[arg-type]
    assert "disconnected due to oversize packet" in secure_mosquitto.log()
    _alive(secure_mosquitto)


async def test_broker_requiring_client_certificates_refuses_a_client_without_one(
        tmp_path: Path) -> None:
    """``require_certificate true`` on the listener (not the shipped default): a password alone
    is refused; the client certificate the endpoint's ``cert``/``key`` carry is accepted."""
    broker = SecureMosquitto(tmp_path)
    with broker.conf.open("a") as conf:                  # appended to the TLS listener
        conf.write("require_certificate true\n")
    cert, key = issue_certificate(broker.dir, "gw-cert")
    (tmp_path / "client.pem").write_bytes(cert)
    (tmp_path / "client.key").write_bytes(key)
    (tmp_path / "client.key").chmod(0o600)
    password = broker.add_gateway("gw-cert")
    await broker.start()
    try:
        bare = MqttEndpoint(broker.url, "gw-cert", password, broker.ca)
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(bare.host, bare.port, username=bare.username,
                                      password=bare.password, tls_params=bare.tls_params(),
                                      timeout=5):
                pass
        with_cert = MqttEndpoint(broker.url, "gw-cert", password, broker.ca,
                                 str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
        async with aiomqtt.Client(with_cert.host, with_cert.port, username=with_cert.username,
                                  password=with_cert.password,
                                  tls_params=with_cert.tls_params(), timeout=5) as client:
            await client.publish(topic("gw-cert", "status"), b"online", qos=1)
        _alive(broker)
    finally:
        await broker.stop()
