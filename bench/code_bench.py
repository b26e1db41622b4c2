"""Transaction codes: size in bytes and QR version per suite, and render/decode/verify times.

    .venv/bin/python bench/code_bench.py [-n 21]

For each suite and a short (``alice``) and the longest (64-character) account, with and without
an amount: the code's bytes, its text form's characters, the QR version at level M; then the
median and p90 of signing a code, rendering its PNG, decoding that PNG with zxing-cpp, and the
platform's checks of a countersigned request (both signatures), over N runs.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable

from e2e import Suite, generate_private_key
from transaction_code import (
    CodeKind,
    CountersignedCode,
    TransactionCode,
    check_countersigned,
    to_text,
)
from transaction_code_image import png, read_png, render, terminal_text


def _code(suite: Suite, account: str, amount: int | None, key: object) -> TransactionCode:
    now = int(time.time())
    code = TransactionCode(CodeKind.PAYMENT, suite, secrets.token_bytes(16), account, amount,
                           None if amount is None else "EUR", now, now + 120,
                           secrets.token_bytes(16))
    return code.sign(key)  # type: ignore[arg-type]


def _times(fn: Callable[[], object], n: int) -> str:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return f"{statistics.median(samples):6.1f} / {samples[int(len(samples) * 0.9)]:6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=21, help="runs per timing (default 21)")
    n = parser.parse_args().n
    print(f"{'suite':6} {'account':8} {'amount':7} {'bytes':>5} {'chars':>5} {'QR':>5} "
          f"{'PNG B':>6} {'term rows':>9}")
    keys = {suite: generate_private_key(suite) for suite in Suite}
    for suite in Suite:
        for account in ("alice", "x" * 64):
            for amount in (None, 10**15):
                data = _code(suite, account, amount, keys[suite]).encode()
                qr = render(data, suite)
                rows = len(terminal_text(data, suite).splitlines())
                print(f"{suite.label:6} {len(account):>8} {'yes' if amount else 'no':7} "
                      f"{len(data):>5} {len(to_text(data)):>5} {qr.designator:>5} "
                      f"{len(png(data, suite)):>6} {rows:>9}")
    print(f"\nmilliseconds, median / p90 over {n} runs (code for 'alice' with an amount)")
    print(f"{'suite':6} {'sign code':>15} {'render PNG':>15} {'decode PNG':>15} "
          f"{'verify both':>15}")
    for suite in Suite:
        print(f"{suite.label:6} " + " ".join(f"{cell:>15}" for cell in _timings(suite, n)))


def _timings(suite: Suite, n: int) -> list[str]:
    key = generate_private_key(suite)
    data = _code(suite, "alice", 1250, key).encode()
    image = png(data, suite)
    request = CountersignedCode(data, suite, secrets.token_bytes(16), "shop", 1250, "EUR",
                                int(time.time())).sign(key)

    def verify() -> object:
        return check_countersigned(request, lambda *_: key.public_key, now=int(time.time()))

    return [_times(lambda: _code(suite, "alice", 1250, key), n),
            _times(lambda: png(data, suite), n), _times(lambda: read_png(image), n),
            _times(verify, n)]

if __name__ == "__main__":
    main()
