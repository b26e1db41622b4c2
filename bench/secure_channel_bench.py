"""Figures for the secure channel, in one run: SM2 per backend, handshakes, bytes on air.

    .venv/bin/python bench/secure_channel_bench.py [--seconds 1.0] [--runs 20]

Prints:
* SM2 sign / verify per backend beside pure-Python gmssl, with the speed-up (target: the
  chosen backend at least 10x pure gmssl for both), and SM2 encryption / decryption (key
  transport) with gmalglib beside the pure-Python arithmetic;
* handshake time per suite, full and resumed, split into the module's and the platform's share,
  and the module's share against one confirmation signature of the same suite;
* handshake bytes and BLE frames at ATT MTU 23 and 247 with the project's framing
  (ble_profile.framing, one MSG message per unit);
* record overhead per payment: a confirmation request and its answer sealed as records;
* end to end through the whole chain (virtual radio, mosquitto, platform on SQLite, gateway,
  module): a payment in the clear against one inside a live channel, median and p90 per suite
  (``--chain N`` payments each; 0 skips it), and the first payment that also opens the channel.

Figures only; nothing is asserted. Keys and certificates are made fresh for each run.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ble_profile.framing import Command, fragment, fragment_size
from e2e import ConfirmationRequest, Suite, encode_envelope
from e2e.suites import GmsslPureBackend, PrivateKey, PublicKey, sm2_backends
from secure_channel import ChannelInitiator, ChannelResponder, ChannelSuite, primitives
from secure_channel.application import PAD_TO, Order
from secure_channel.carriage import ChannelUnits
from tests.secure_channel.helpers import NOW, Pki

MESSAGE = b"x" * 300


def rate(fn: Callable[[], object], seconds: float) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def ms(per_second: float) -> str:
    return f"{1000 / per_second:8.3f} ms"


def sm2_table(seconds: float) -> None:
    print("SM2 per backend (standard id 1234567812345678)")
    print(f"  {'backend':<40}{'sign':>12}{'verify':>12}{'sign x':>9}{'verify x':>10}")
    scalar = PrivateKey(Suite.SM2_SM3, secrets.token_bytes(31).rjust(32, b"\x01")).private_bytes()
    pure = GmsslPureBackend()
    rows = {}
    for backend in [*sm2_backends()]:
        key = PrivateKey(Suite.SM2_SM3, scalar, backend)
        pub = PublicKey(Suite.SM2_SM3, key.public_key.encode(), backend)
        sig = key.sign(MESSAGE)
        rows[backend.name] = (rate(lambda key=key: key.sign(MESSAGE), seconds),
                              rate(lambda pub=pub, sig=sig: pub.verify(sig, MESSAGE), seconds))
    base = rows[pure.name]
    for name, (s, v) in rows.items():
        chosen = " (chosen)" if name == sm2_backends()[0].name else ""
        print(f"  {name + chosen:<40}{ms(s):>12}{ms(v):>12}{s / base[0]:>8.1f}x"
              f"{v / base[1]:>9.1f}x")
    point = primitives.sm2_public(scalar)
    secret = secrets.token_bytes(48)
    fast_ct = primitives.sm2_encrypt(point, secret, None)
    enc_fast = rate(lambda: primitives.sm2_encrypt(point, secret, None), seconds)
    dec_fast = rate(lambda: primitives.sm2_decrypt(scalar, fast_ct), seconds)
    original = primitives._gmalglib
    primitives._gmalglib = lambda: None  # type: ignore[assignment]
    try:
        enc_pure = rate(lambda: primitives.sm2_encrypt(point, secret, None), seconds)
        dec_pure = rate(lambda: primitives.sm2_decrypt(scalar, fast_ct), seconds)
        ecdh_pure = rate(lambda: primitives.ecdh(True, scalar, point), seconds)
    finally:
        primitives._gmalglib = original  # type: ignore[assignment]
    print(f"  {'SM2 encrypt 48 B: gmalglib / pure':<40}{ms(enc_fast):>12}{ms(enc_pure):>12}"
          f"{enc_fast / enc_pure:>8.1f}x")
    print(f"  {'SM2 decrypt 48 B: gmalglib / pure':<40}{ms(dec_fast):>12}{ms(dec_pure):>12}"
          f"{dec_fast / dec_pure:>8.1f}x")
    print(f"  {'ECDH on the SM2 curve (pure only)':<40}{ms(ecdh_pure):>12}")


def handshake_table(runs: int) -> None:
    pki = Pki.make()
    print(f"\nHandshake time, median of {runs} (both sides in one process)")
    print(f"  {'suite':<28}{'mode':<8}{'module':>11}{'platform':>11}{'total':>11}"
          f"{'module / 1 signature':>22}")
    for suite in ChannelSuite:
        key = pki.modules[suite.params.signature][0]
        one_signature = statistics.median(
            _timed(lambda key=key: key.sign(MESSAGE))[1] for _ in range(runs))
        resumption = None
        for mode in ("full", "resumed"):
            mod_t, plat_t = [], []
            for _ in range(runs):
                init = ChannelInitiator(pki.module(suite), suites=[suite],
                                        resume=resumption if mode == "resumed" else None)
                resp = ChannelResponder(pki.platform(), pki.policy())
                m, p = _run_timed(init, resp)
                mod_t.append(m)
                plat_t.append(p)
                if mode == "full" or init.resumed:
                    resumption = init.resumption  # a session id resumes once
            m, p = statistics.median(mod_t), statistics.median(plat_t)
            print(f"  {suite.name:<28}{mode:<8}{m * 1e3:>8.2f} ms{p * 1e3:>8.2f} ms"
                  f"{(m + p) * 1e3:>8.2f} ms{m / one_signature:>21.1f}x")


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _run_timed(init: ChannelInitiator, resp: ChannelResponder) -> tuple[float, float]:
    module_time = platform_time = 0.0
    hello, t = _timed(lambda: init.start(NOW))
    module_time += t
    pending, to_platform = [hello], True
    while pending:
        replies: list[bytes] = []
        for unit in pending:
            if to_platform:
                out, t = _timed(lambda unit=unit: resp.receive(unit, NOW))
                platform_time += t
            else:
                out, t = _timed(lambda unit=unit: init.receive(unit, NOW))
                module_time += t
            replies += out  # type: ignore[arg-type]
        pending, to_platform = replies, not to_platform
    return module_time, platform_time


def air_table() -> None:
    pki = Pki.make()
    print("\nHandshake on air (one MSG message per unit, FIDO-style framing)")
    print(f"  {'suite':<28}{'mode':<8}{'units':>6}{'bytes':>7}{'frames@23':>11}"
          f"{'frames@247':>12}")
    for suite in ChannelSuite:
        resumption = None
        for mode in ("full", "resumed"):
            init = ChannelInitiator(pki.module(suite), suites=[suite], resume=resumption)
            resp = ChannelResponder(pki.platform(), pki.policy())
            units = [init.start(NOW)]
            pending, to_platform = list(units), True
            while pending:
                replies: list[bytes] = []
                for unit in pending:
                    replies += resp.receive(unit, NOW) if to_platform else init.receive(unit,
                                                                                       NOW)
                units += replies
                pending, to_platform = replies, not to_platform
            resumption = init.resumption
            frames = {mtu: sum(len(fragment(Command.MSG, u, fragment_size(mtu)))
                               for u in units) for mtu in (23, 247)}
            print(f"  {suite.name:<28}{mode:<8}{len(units):>6}{sum(map(len, units)):>7}"
                  f"{frames[23]:>11}{frames[247]:>12}")
    request = ConfirmationRequest(bytes(16), "alice-001", "shop-42", "A-17", "coffee beans",
                                  1250, "EUR", bytes(16), 2**39, Suite.SM2_SM3)
    plain = encode_envelope(request)
    init = ChannelInitiator(pki.module(ChannelSuite.DHE_P256_AES128GCM_SHA256),
                            suites=[ChannelSuite.DHE_P256_AES128GCM_SHA256])
    resp = ChannelResponder(pki.platform(), pki.policy())
    _run_timed(init, resp)
    assert resp.session is not None
    [record] = resp.session.seal(plain, NOW)
    print("\nRecord overhead per payment (confirmation request platform -> module)")
    for mtu in (23, 247):
        size = fragment_size(mtu)
        print(f"  MTU {mtu:>3}: {len(plain)} B in the clear, {len(record)} B as a record "
              f"(+{len(record) - len(plain)} B); frames "
              f"{len(fragment(Command.MSG, plain, size))} -> "
              f"{len(fragment(Command.MSG, record, size))}")
    # What the gateway carries for a payment (and a ping): the order in a record padded to one
    # size, in a channel envelope. The request here is unsigned; a platform-signed one adds
    # about 280 bytes in the clear and nothing in the channel (the pad covers it).
    [padded] = resp.session.seal(Order(plain, 2).encode(), NOW, pad_to=PAD_TO)
    carried = ChannelUnits((padded,), True).encode()
    print(f"  as carried (order padded to {PAD_TO} B, channel envelope): {len(carried)} B; "
          f"frames at MTU 23 / 247: {len(fragment(Command.MSG, carried, fragment_size(23)))}"
          f" / {len(fragment(Command.MSG, carried, fragment_size(247)))}")


def _p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.9 + 0.5) - 1)]


async def _chain_table(count: int) -> None:
    from blegw_harness.chain import PAYER, running_chain
    from blegw_platform.channel_keys import load_channel_credentials, provision_channel_keys
    from blegw_platform.payment_modes import PaymentMode
    from wearable_sim.policy import FixedPolicy

    print(f"End to end, terminal API to settled (ms; {count} payments each, owner approves "
          f"at once, no PIN or finger)")
    async with running_chain(FixedPolicy(True)) as chain:
        async def pay(suite: Suite, tag: str) -> float:
            started = time.perf_counter()
            outcome = await chain.pay(100, "bench", suite, f"{tag}-{time.time_ns()}")
            if outcome["state"] != "settled":
                raise SystemExit(f"bench payment not settled: {outcome}")
            return (time.perf_counter() - started) * 1000

        plain = {suite: [await pay(suite, "plain") for _ in range(count + 1)][1:]
                 for suite in Suite}
        platform = chain.platform
        provision_channel_keys(platform.state_dir, platform.cas, platform.platform_id)
        platform.channels.credentials = load_channel_credentials(platform.state_dir,
                                                                 platform.cas)
        await platform.channels.modes.set(PAYER, PaymentMode(10**9))
        first, channel = {}, {}
        for suite in Suite:
            first[suite] = await pay(suite, "open")
            channel[suite] = [await pay(suite, "channel") for _ in range(count)]
        print(f"  {'suite':<14}{'clear median':>14}{'p90':>8}{'channel median':>16}{'p90':>8}"
              f"{'first (handshake)':>19}")
        for suite in Suite:
            print(f"  {suite.name:<14}{statistics.median(plain[suite]):>14.1f}"
                  f"{_p90(plain[suite]):>8.1f}{statistics.median(channel[suite]):>16.1f}"
                  f"{_p90(channel[suite]):>8.1f}{first[suite]:>19.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--chain", type=int, default=20,
                        help="payments per suite and mode end to end (0: skip)")
    args = parser.parse_args()
    sm2_table(args.seconds)
    handshake_table(args.runs)
    air_table()
    if args.chain:
        import asyncio
        asyncio.run(_chain_table(args.chain))


if __name__ == "__main__":
    main()
