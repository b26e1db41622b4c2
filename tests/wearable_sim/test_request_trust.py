"""The module prompts its owner only for requests the platform vouched for.

Over the virtual radio (the only simulated part) with unmodified bleak, and, for the injected
request, over the whole chain with a real mosquitto, the real platform and the gateway daemon.
Every module here auto-approves: if a forged request reached the prompt it would be signed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from blegw_harness.chain import GATEWAY_ID, PAYEE, PAYER, running_chain
from e2e import (
    USAGE_CONFIRMATION,
    USAGE_REQUEST_SIGNING,
    CertificateAuthority,
    ConfirmationRequest,
    ConfirmationResponse,
    ErrorResponse,
    Replay,
    Suite,
    decode_envelope,
    encode_envelope,
    generate_private_key,
    request_signed_bytes,
)
from e2e import ErrorCode as E2ECode
from relay_contract import (
    RelayRequest,
    RelayResponse,
    RelayStatus,
    decode_from_gateway,
    topic,
)
from tests.blegw.conftest import Mosquitto, mosquitto  # noqa: F401 (the fixture)
from vbluez import VirtualBluez
from wearable_sim.element import SecureElement
from wearable_sim.policy import Prompt
from wearable_sim.state import ModuleState

from .conftest import PLATFORM_ID, TEST_CAS, assert_signs_honest_request, make_request, start_module


class RecordingPolicy:
    """Approves everything at once, and records every prompt its owner would have seen."""

    name = "approve"
    verification = "none"

    def __init__(self) -> None:
        self.prompts: list[Prompt] = []

    async def decide(self, prompt: Prompt) -> bool:
        self.prompts.append(prompt)
        return True

    async def close(self) -> None:
        return None


@pytest.fixture(params=list(Suite), ids=lambda s: s.name)
def suite(request: pytest.FixtureRequest) -> Suite:
    return request.param  # type: ignore[no-any-return]


def forge(request: ConfirmationRequest, key: Any, cert: bytes) -> bytes:
    """Sign like the platform, with a key that is not the platform's."""
    with_cert = dataclasses.replace(request, platform_certificate=cert,
                                    platform_signature=b"\x00")
    return encode_envelope(dataclasses.replace(
        with_cert, platform_signature=key.sign(request_signed_bytes(with_cert))))


def forgeries(suite: Suite, element: SecureElement) -> dict[str, bytes]:
    now = int(time.time())
    _, base = make_request(suite, tx=b"\x66" * 16, amount=99_999_999, signed=False)
    base = dataclasses.replace(base, payee_account="mallory")
    module_key = element._key(suite)
    module_cert = element.certificate(suite)
    assert module_cert is not None
    rogue_ca, rogue_key = CertificateAuthority.generate(suite), generate_private_key(suite)
    rogue_cert = rogue_ca.issue(rogue_key.public_key, PLATFORM_ID, not_before=now - 60,
                                not_after=now + 3600, usage=USAGE_REQUEST_SIGNING)
    old_key = generate_private_key(suite)
    expired = TEST_CAS[suite].issue(old_key.public_key, PLATFORM_ID, not_before=now - 7200,
                                    not_after=now - 60, usage=USAGE_REQUEST_SIGNING)
    _, genuine = make_request(suite, tx=b"\x66" * 16, amount=1)
    stolen_key = generate_private_key(suite)
    as_module = TEST_CAS[suite].issue(stolen_key.public_key, PLATFORM_ID, not_before=now - 60,
                                      not_after=now + 3600, usage=USAGE_CONFIRMATION)
    return {
        "unsigned": encode_envelope(base),
        "signed_by_the_module_key": forge(base, module_key, module_cert),
        "module_certificate_with_the_platform_id": forge(base, stolen_key, as_module.encode()),
        "platform_certificate_from_another_ca": forge(base, rogue_key, rogue_cert.encode()),
        "expired_platform_certificate": forge(base, old_key, expired.encode()),
        "amount_altered_after_signing": encode_envelope(dataclasses.replace(
            genuine, amount_minor=99_999_999, payee_account="mallory")),
    }


async def test_forged_requests_are_not_shown_to_the_owner(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any, suite: Suite) -> None:
    policy = RecordingPolicy()
    module, element, cas, certs = await start_module(vbluez, tmp_path / "m", policy)
    try:
        link = await link_to(module)
        for name, envelope in forgeries(suite, element).items():
            reply = await link.request(envelope)
            assert isinstance(reply, ErrorResponse), name
            assert reply.code is E2ECode.UNTRUSTED_REQUEST, (name, reply)
            assert reply.transaction_id == b"\x66" * 16
        assert policy.prompts == []
        assert element.state.counter() == 0  # nothing was signed
        assert module.handled == ["untrusted"] * 6
        # The honest path still works, and the forgeries did not use up its transaction id.
        await assert_signs_honest_request(link, certs, cas, suite, tx=b"\x66" * 16)
        assert [p.payee for p in policy.prompts] == ["shop-42"]
    finally:
        await module.stop()


async def test_replayed_genuine_request_does_not_prompt_twice(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any, suite: Suite) -> None:
    policy = RecordingPolicy()
    module, element, _, _ = await start_module(vbluez, tmp_path / "m", policy)
    try:
        link = await link_to(module)
        envelope, request = make_request(suite, tx=b"\x77" * 16)
        assert isinstance(await link.request(envelope), ConfirmationResponse)
        for _ in range(3):
            reply = await link.request(envelope)
            assert isinstance(reply, ErrorResponse)
            assert (reply.code, reply.transaction_id) == (E2ECode.REPLAY, b"\x77" * 16)
        assert len(policy.prompts) == 1
        assert element.state.counter() == 1
        # A restarted module (a new secure element on the same state) still remembers it.
        with pytest.raises(Replay):
            SecureElement(ModuleState(tmp_path / "m")).admit(request, now=time.time())
        envelope, _ = make_request(suite, tx=b"\x78" * 16)
        assert isinstance(await link.request(envelope), ConfirmationResponse)
        assert len(policy.prompts) == 2
    finally:
        await module.stop()


async def test_unprovisioned_module_refuses_every_request(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any) -> None:
    policy = RecordingPolicy()
    module, element, _, _ = await start_module(vbluez, tmp_path / "m", policy)
    element.state.trust_anchors_path.unlink()
    element._anchors = None  # as a module fresh from its factory, before provisioning
    try:
        link = await link_to(module)
        for suite in Suite:
            reply = await link.request(make_request(suite)[0])
            assert isinstance(reply, ErrorResponse)
            assert reply.code is E2ECode.UNTRUSTED_REQUEST
            assert "needs provisioning" in reply.detail
        assert policy.prompts == []
    finally:
        await module.stop()
    info = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wearable_sim", "info", "--state", str(tmp_path / "m"),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(info.communicate(), 30)
    assert info.returncode == 0
    assert "needs provisioning" in out.decode()


def test_provisioning_installs_the_platforms_trust_anchors(tmp_path: Path) -> None:
    """``blegw-harness provision-module`` as a real subprocess, then ``wearable-sim info``."""
    import subprocess

    run = subprocess.run([sys.executable, "-m", "blegw_harness", "provision-module",
                          "--state", str(tmp_path / "p"), "--module-state", str(tmp_path / "m")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    platform_id = (tmp_path / "p" / "platform_id").read_bytes()
    assert f"trusts requests from platform {platform_id.hex()}" in run.stdout
    anchors = SecureElement(ModuleState(tmp_path / "m")).trust_anchors
    assert anchors is not None and anchors.platform_id == platform_id
    assert set(anchors.ca_keys) == set(Suite)
    info = subprocess.run([sys.executable, "-m", "wearable_sim", "info", "--state",
                           str(tmp_path / "m")], capture_output=True, text=True, timeout=60,
                          check=False)
    assert f'"trusted_platform": "{platform_id.hex()}"' in info.stdout


async def test_injected_request_on_the_gateways_req_topic_is_not_shown_to_the_owner(
        mosquitto: Mosquitto) -> None:  # noqa: F811 (the fixture)
    """Anyone who can publish on ``blegw/v1/gw/<id>/req`` (the walk-through broker is
    anonymous) sends a 999,999.99 EUR request to "mallory": the auto-approving module must not
    prompt or sign; a captured genuine request, altered or replayed, fares no better; the
    honest payment after it settles."""
    policy = RecordingPolicy()
    async with running_chain(policy, broker_url=mosquitto.url) as chain:
        ledger = chain.platform.ledger
        before = (await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, PAYEE))
        module_id = chain.module.element.module_id
        async with aiomqtt.Client("127.0.0.1", mosquitto.port,
                                  identifier="attacker-on-the-broker") as attacker:
            await attacker.subscribe(topic(GATEWAY_ID, "req"), qos=1)
            await attacker.subscribe(topic(GATEWAY_ID, "resp"), qos=1)
            answers: dict[bytes, RelayResponse] = {}
            captured: list[RelayRequest] = []

            async def listen() -> None:
                async for message in attacker.messages:
                    payload = bytes(message.payload)  # type: ignore[arg-type]
                    if message.topic.matches(topic(GATEWAY_ID, "req")):
                        captured.append(RelayRequest.decode(payload))
                    else:
                        answer = decode_from_gateway(payload)
                        if isinstance(answer, RelayResponse):  # not progress
                            answers[answer.request_id] = answer

            listener = asyncio.create_task(listen())

            async def inject(tx: bytes, envelope: bytes) -> Any:
                relay = RelayRequest(tx, module_id, envelope, time.time() + 30)
                await attacker.publish(topic(GATEWAY_ID, "req"), relay.encode(), qos=1)
                for _ in range(300):
                    if tx in answers:
                        break
                    await asyncio.sleep(0.05)
                answer = answers[tx]
                assert answer.status is RelayStatus.OK
                return decode_envelope(answer.envelope)

            try:
                for suite in Suite:
                    tx = bytes([0xF0 + int(suite)]) * 16
                    forged = ConfirmationRequest(
                        tx, PAYER, "mallory", "INV-1", "Pay now or lose access", 99_999_999,
                        "EUR", b"\x01" * 16, int(time.time()) + 60, suite)
                    reply = await inject(tx, encode_envelope(forged))
                    assert isinstance(reply, ErrorResponse)
                    assert reply.code is E2ECode.UNTRUSTED_REQUEST
                assert policy.prompts == []

                outcome = await chain.pay(1250, "coffee", Suite.P256_SHA256, "honest-0001")
                assert (outcome["state"], outcome["reason"]) == ("settled", "")
                assert len(policy.prompts) == 1 and policy.prompts[0].payee == PAYEE

                honest = captured[-1]  # the platform's request, read off the broker
                genuine = decode_envelope(honest.envelope)
                assert isinstance(genuine, ConfirmationRequest)
                altered = dataclasses.replace(genuine, payee_account="mallory",
                                              amount_minor=99_999_999)
                reply = await inject(b"\xf9" * 16, encode_envelope(altered))
                assert isinstance(reply, ErrorResponse)
                assert reply.code is E2ECode.UNTRUSTED_REQUEST
                # Under a new relay id, so the gateway does not answer from its own memory.
                reply = await inject(b"\xfa" * 16, honest.envelope)
                assert isinstance(reply, ErrorResponse) and reply.code is E2ECode.REPLAY
                assert reply.transaction_id == genuine.transaction_id
                assert len(policy.prompts) == 1  # neither reached the owner
            finally:
                listener.cancel()
        assert chain.module.element.state.counter() == 1
        assert (await ledger.run(ledger.balance, PAYER),
                await ledger.run(ledger.balance, PAYEE)) == (before[0] - 1250, before[1] + 1250)
        outcome = await chain.pay(42, "after the attack", Suite.SM2_SM3, "honest-0002")
        assert (outcome["state"], outcome["reason"]) == ("settled", "")
        assert len(policy.prompts) == 2
