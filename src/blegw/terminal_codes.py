"""The one-sided variants of flow F-D: a terminal without a module on one side.

* ``blegw show-code``: the **generating side is a plain terminal** (a market stall's till, a
  printed sticker): it shows an *unsigned collection code* naming its account; only the payer
  who scans it has a module, whose countersignature alone authorises the payment (and the
  platform pays such a code only into a registered merchant's account). With ``--wait`` it
  long-polls the platform (``GET /v1/codes/{code_id}?wait=``, no credentials: the code's id
  is known only to who saw the code) and prints how the code ended.
* ``blegw present-code``: the **scanning side is a plain terminal** with API credentials: it
  reads a payment code (PNG or text) and presents it for one of the accounts it collects for
  (``POST /v1/codes/presented``); a code the platform holds for the payer's confirmation is
  followed on ``GET /v1/transactions/{id}/outcome`` and its final outcome printed.

Neither needs a gateway, a daemon or its configuration. Both import the code stack only when
they run. Exit codes as ``blegw code`` / ``scan-code`` (docs/cli.md).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from e2e.suites import Suite
from transaction_code import CodeError, CodeKind, TransactionCode, to_text
from transaction_code_image import png, svg, terminal_text

from .code_tools import PLATFORM_WAIT, check_outcome, minor_units, outcome_line, read_code
from .daemon_client import ToolError, say
from .platform_client import platform_json

__all__ = ["present_code", "show_code"]

MAX_POLL = 120.0
"""Longest single long-poll the platform accepts."""


def _amount(amount: str | None, currency: str | None) -> tuple[int | None, str | None]:
    if (amount is None) != (currency is None):
        raise ToolError("--amount and --currency go together", "usage")
    return (None, None) if amount is None else (minor_units(amount), currency)


async def show_code(account: str, *, amount: str | None = None, currency: str | None = None,
                    lifetime: int = 120, png_path: Path | None = None,
                    svg_path: Path | None = None, platform: str | None = None,
                    wait: float = 0.0, as_json: bool = False) -> int:
    """Show an unsigned collection code for ``account``; with ``wait``, follow it."""
    if wait > 0 and platform is None:
        raise ToolError("--wait needs --platform (where the code is paid)", "usage")
    minor, cur = _amount(amount, currency)
    now = int(time.time())
    try:
        code = TransactionCode(CodeKind.COLLECTION, Suite.P256_SHA256, None, account, minor,
                               cur, now, now + lifetime, secrets.token_bytes(16))
    except CodeError as exc:
        raise ToolError(f"cannot make that code: {exc}", "usage") from exc
    data = code.encode()
    for path, image in ((png_path, png), (svg_path, svg)):
        if path is not None:
            try:
                await asyncio.to_thread(path.write_bytes, image(data, code.suite))
            except OSError as exc:
                raise ToolError(f"cannot write {path}: {exc.strerror}; the code is "
                                f"{to_text(data)}") from exc
    code_id = code.code_id().hex()
    if as_json:
        print(json.dumps({"code": to_text(data), "code_id": code_id,
                          "expires_at": code.expires_at}), flush=True)
    else:
        sys.stdout.write(terminal_text(data, code.suite))
        print(to_text(data), flush=True)
        say(f"unsigned collection code {code_id[:16]} for {account}: valid until "
            f"{time.strftime('%H:%M:%S', time.localtime(code.expires_at))}")
    if wait <= 0:
        return 0
    assert platform is not None
    url = f"{platform.rstrip('/')}/v1/codes/{code_id}"
    end = time.monotonic() + wait
    while True:
        poll = min(MAX_POLL, max(0.0, end - time.monotonic()))
        status, answer = await platform_json("GET", f"{url}?wait={poll:.3f}", timeout=poll + 10)
        if status not in (200, 404):  # 404: not used yet
            raise ToolError(f"the platform refused: {answer.get('error')}", "platform")
        final = status == 200 and answer.get("state") not in (None, "pending")
        if final or time.monotonic() >= end:
            break
    if not final:
        raise ToolError(f"no outcome for code {code_id[:16]} within {wait:g} s", "timeout")
    outcome = {**answer, "role": "payee", "transaction": answer.get("id")}
    print(json.dumps({"outcome": outcome}) if as_json else outcome_line(outcome))
    check_outcome(outcome)
    return 0


async def present_code(account: str, platform: str, api_key_file: Path, *,
                       png_path: Path | None = None, text: str | None = None,
                       amount: str | None = None, currency: str | None = None,
                       wait: float = 150.0, as_json: bool = False) -> int:
    """Read a payment code and present it for ``account``; print how it ended."""
    data = await asyncio.to_thread(read_code, png_path, text)
    try:
        code = TransactionCode.decode(data)
    except CodeError as exc:
        raise ToolError(f"not a transaction code: {exc}", "bad_code") from exc
    minor, cur = _amount(amount, currency)
    if minor is None:
        if code.amount_minor is None or code.currency is None:
            raise ToolError("the code fixes no amount: give --amount and --currency", "usage")
        minor, cur = code.amount_minor, code.currency
    try:
        key = (await asyncio.to_thread(api_key_file.read_text)).strip()
    except OSError as exc:
        raise ToolError(f"cannot read the API key file {api_key_file}: {exc.strerror}",
                        "usage") from exc
    base = platform.rstrip("/")
    started = time.perf_counter()
    status, tx = await platform_json("POST", f"{base}/v1/codes/presented", timeout=PLATFORM_WAIT,
                             key=key, body={"code": to_text(data), "account": account,
                                            "amount_minor": minor, "currency": cur})
    if status not in (200, 201, 202):
        raise ToolError(f"the platform refused: {tx.get('error')}: {tx.get('detail')}",
                        "platform")
    out: dict[str, Any] = {"transaction": tx, "code_id": code.code_id().hex()}
    end = time.monotonic() + wait
    while tx.get("state") == "pending" and time.monotonic() < end:
        if "outcome" not in out:
            say(f"the platform asks the payer to confirm; waiting up to {wait:g} s")
            out["outcome"] = tx
        poll = min(MAX_POLL, max(0.0, end - time.monotonic()))
        status, tx = await platform_json("GET", f"{base}/v1/transactions/{tx.get('id')}/outcome"
                                 f"?timeout={poll:.3f}", timeout=poll + 10, key=key)
        if status != 200:
            raise ToolError(f"the platform refused: {tx.get('error')}", "platform")
        out["outcome"] = tx
    out["seconds"] = time.perf_counter() - started
    final = out.get("outcome", tx)
    if as_json:
        print(json.dumps(out))
    else:
        print(f"transaction {out['transaction'].get('id')}: "
              f"{out['transaction'].get('state')}")
        if "outcome" in out:
            print(outcome_line({**final, "role": "payee"}))
    if final.get("state") == "pending":
        raise ToolError(f"no outcome within {wait:g} s", "timeout")
    check_outcome(final)
    return 0
