"""The module's control point: ``SimulatedModule._on_write`` fed fuzzed fragments.

The real module runs with a real secure element (keys and counter in a temporary directory);
only the bless peripheral is replaced by a recorder of notifications (the radio is what cannot run
here). The module was provisioned with the trust anchors of a harness platform whose fixed keys
sign the seeds, so inputs reach the owner's prompt. Each input is a sequence of writes from one
gateway. Checks: nothing escapes ``_on_write``
or the tasks it starts; everything the module sends back reassembles at the gateway; every MSG
answer is an envelope; and the prompt put before the owner holds no control, escape or bidi
characters.
"""

from __future__ import annotations

import asyncio
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

from ble_profile import Command, FrameAssembler, FramingError, fragment, uuids
from e2e import (
    CertificateAuthority,
    E2EError,
    Suite,
    decode_envelope,
    encode_envelope,
    load_private_key,
)
from e2e.messages import CodeSignRequest, CountersignRequest
from transaction_code import CodeKind, TransactionCode
from wearable_sim.element import SecureElement
from wearable_sim.module import SimulatedModule
from wearable_sim.policy import Prompt
from wearable_sim.state import ModuleState

from ..engine import FuzzOracleError, Target
from ._samples import (
    envelopes,
    join_fragments,
    link_messages,
    platform_signer,
    request,
    split_fragments,
)


class Recorder:
    """Stands in for the bless peripheral: keeps what the module notifies."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def notify(self, char_uuid: str, value: bytes) -> None:
        if char_uuid == uuids.STATUS:
            self.frames.append(bytes(value))


class PromptCheck:
    """An owner who approves everything and whose screen refuses unsafe text."""

    name = "approve"
    verification = "none"

    async def decide(self, prompt: Prompt) -> bool:
        text = prompt.text()
        bad = [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
        if bad or len(text) > 512:
            raise FuzzOracleError(f"unsafe prompt text reached the owner: {text[:80]!r}")
        return True

    async def close(self) -> None:
        return None


_loop = asyncio.new_event_loop()
_dir = Path(tempfile.mkdtemp(prefix="module-"))  # in the engine's scratch directory
_element = SecureElement(ModuleState(_dir / "module"))
_element.install_trust_anchors(platform_signer()[1])  # provisioning: trusts the harness platform
_element.install_certificate(  # a certificate, so transaction-code requests reach the prompt
    CertificateAuthority(load_private_key(Suite.P256_SHA256, b"\x11" * 32)).issue(
        _element.public_key(Suite.P256_SHA256), _element.module_id, not_before=1_700_000_000,
        not_after=2**39).encode())
_errors: list[BaseException] = []


def _handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    _errors.append(exc if isinstance(exc, BaseException) else RuntimeError(context["message"]))


_loop.set_exception_handler(_handler)


async def _run(mtu: int, writes: list[bytes]) -> list[bytes]:
    module = SimulatedModule(_element, PromptCheck(), adapter="hci1", keepalive_interval=0.05)
    recorder = Recorder()
    module.peripheral = recorder  # type: ignore[assignment]
    for value in writes:
        module._on_write(uuids.CONTROL_POINT, value, {"mtu": mtu, "device": "/dev_fuzz"})
        await asyncio.sleep(0)
    for _ in range(50):
        tasks = list(module._tasks)
        if not tasks:
            break
        done, _ = await asyncio.wait(tasks, timeout=0.5)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    if module._tasks:
        raise FuzzOracleError("the module's request never finished")
    return recorder.frames


def one_input(data: bytes) -> None:
    if not data:
        return
    _errors.clear()
    frames = _loop.run_until_complete(_run(23 + data[0], split_fragments(data[1:])))
    if _errors:
        raise _errors[0]
    gateway = FrameAssembler(512)
    for frame in frames:
        try:
            message = gateway.feed(frame)
        except FramingError as exc:
            raise FuzzOracleError(f"the module sent a frame the gateway refuses: {exc}") from exc
        if message is not None and message.command is Command.MSG:
            try:
                decode_envelope(message.payload)
            except E2EError as exc:
                raise FuzzOracleError(f"the module answered a non-envelope: {exc}") from exc


def seeds() -> list[bytes]:
    out = [b"\x00" + join_fragments(frames) for frames in link_messages()]
    signed = encode_envelope(platform_signer()[0].sign(request()))
    out.append(b"\xa2" + join_fragments(fragment(Command.MSG, signed, 185)))
    out.append(b"\x00" + join_fragments(fragment(Command.MSG, envelopes()[0], 20)))
    # transaction-code requests (flow F-D): the owner's prompt shows the account and amount
    code = TransactionCode(CodeKind.COLLECTION, Suite.P256_SHA256, None, "shop", 450, "EUR",
                           2**39 - 60, 2**39, b"\x44" * 16).encode()
    for message in (CodeSignRequest(b"\x55" * 16, 1, Suite.P256_SHA256, "alice", 450, "EUR", 60),
                    CodeSignRequest(b"\x55" * 16, 2, Suite.P256_SHA256, "shop", None, None, 60),
                    CountersignRequest(b"\x55" * 16, code, Suite.P256_SHA256, "alice", 450,
                                       "EUR")):
        out.append(b"\x00" + join_fragments(fragment(Command.MSG, encode_envelope(message),
                                                      185)))
    return out


TARGET = Target("module_control_point", one_input, (), seeds, memory_base=1024 * 1024,
                max_len=8192)
