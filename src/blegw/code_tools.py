"""``blegw code`` and ``blegw scan-code``: transaction codes (flow F-D) signed through the daemon.

Both ask the running daemon over its control socket (owner-only), which sends the request to
the module through its relay worker; the owner approves on the module. ``code`` shows the
signed code as a QR code in the terminal (half blocks: it shows in an SSH session), writes PNG
and SVG when asked and prints the text form; ``scan-code`` reads a code from a PNG (zxing-cpp)
or its text form, has the module countersign it, and submits the countersigned request to the
platform when an API key is given. Exit codes: docs/cli.md.

Imported only by these two commands: the code stack (segno, zxing-cpp, Pillow) stays out of
``blegw --help`` and ``blegw status``.
"""

from __future__ import annotations

import json
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from transaction_code import CodeError, CodeKind, MalformedCode, TransactionCode, from_text
from transaction_code_image import ImageUnreadable, png, read_png, svg, terminal_text

from .config import GatewayConfig
from .daemon_client import ToolError, ask_daemon, open_registry, say
from .local_codes import MODULE_WAIT
from .registry import RegistryError
from .tool_errors import ToolErrorKind

__all__ = ["check_outcome", "make_code", "minor_units", "outcome_line", "scan_code",
           "wait_outcome"]

ANSWER_WAIT = MODULE_WAIT + 10
"""Seconds to wait for the daemon's answer: the module's own limit plus a margin, so the
daemon's typed timeout arrives before this client gives up."""
PLATFORM_WAIT = 30.0
OUTCOME_WAIT = 150.0
"""Seconds ``scan-code`` follows a code the payer is asked to confirm: the platform's approval
window (120 s by default) and a margin."""
_ERROR_KINDS: dict[str, ToolErrorKind] = {
    "unknown_module": "not_found", "module_refused": "declined",
                "timeout": "timeout", "bad_code": "bad_code", "bad_request": "usage",
                "shutting_down": "daemon"}


def minor_units(amount: str) -> int:
    """``12.50`` -> 1250: a decimal amount with at most two decimals, in minor units."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise ToolError(f"--amount: {amount!r} is not a number", "usage") from None
    minor = value * 100
    if not value.is_finite() or minor != minor.to_integral_value() or minor <= 0:
        raise ToolError(f"--amount: {amount!r}: a positive amount with at most two decimals",
                        "usage")
    return int(minor)


def _module_id(config: GatewayConfig, key: str) -> str:
    """The module id for a registry name, address or id prefix; a full hex id as given (a
    module from the configuration file, not in the registry)."""
    try:
        entry = open_registry(config).find(key)
    except RegistryError as exc:
        raise ToolError(str(exc)) from exc
    if entry is not None:
        return entry.module_id
    try:
        bytes.fromhex(key)
    except ValueError:
        raise ToolError(f"no paired module {key!r} (blegw devices lists them)",
                        "not_found") from None
    return key.lower()


_OUTCOME_KINDS: dict[str, ToolErrorKind] = {
    "declined": "declined", "cancelled": "declined", "timed_out": "timeout",
                  "rejected": "platform"}
"""The exit of a code that ended without settling (docs/cli.md)."""


def outcome_line(outcome: dict[str, Any]) -> str:
    """One line for a code's final outcome, from a daemon notice or a platform transaction."""
    amount = f"{int(outcome.get('amount_minor', 0)) / 100:.2f} {outcome.get('currency')}"
    reason = f" ({outcome['reason']})" if outcome.get("reason") else ""
    role = {"payer": "you pay", "payee": "you are paid"}.get(str(outcome.get("role")), "")
    who = f"{role} " if outcome.get("state") == "settled" and role else ""
    tx = outcome.get("transaction", outcome.get("id"))
    return f"outcome: {outcome.get('state')}{reason}: {who}{amount} (transaction {tx})"


def check_outcome(outcome: dict[str, Any]) -> None:
    """Raise the ToolError of a code that ended without settling (after it was printed)."""
    state = str(outcome.get("state"))
    if state != "settled":
        raise ToolError(f"the code ended {state}"
                        f"{' (' + str(outcome['reason']) + ')' if outcome.get('reason') else ''}",
                        _OUTCOME_KINDS.get(state, "failed"))


def wait_outcome(config: GatewayConfig, code_id: str, wait: float, role: str
                 ) -> dict[str, Any]:
    """The platform's notice to ``role``'s side (payer or payee) of how a code ended, as this
    gateway's daemon received it."""
    answer = ask_daemon(config, {"cmd": "code_outcome", "code_id": code_id, "wait": wait,
                                 "role": role}, timeout=wait + 10)
    if not answer.get("ok"):
        code = str(answer.get("code", ""))
        if code == "timeout":
            raise ToolError(f"no outcome for code {code_id[:16]} within {wait:g} s", "timeout")
        raise ToolError(f"{code or 'refused'}: {answer.get('error')}", "daemon")
    outcome: dict[str, Any] = answer["outcome"]
    return outcome


def _role(code: TransactionCode, *, shown: bool) -> str:
    """Which side this terminal is: the payer shows a payment code and scans a collection
    code."""
    payer = (code.kind is CodeKind.PAYMENT) == shown
    return "payer" if payer else "payee"


def _ask(config: GatewayConfig, request: dict[str, Any]) -> dict[str, Any]:
    answer = ask_daemon(config, request, timeout=ANSWER_WAIT)
    if not answer.get("ok"):
        code = str(answer.get("code", ""))
        raise ToolError(f"{code or 'refused'}: {answer.get('error')}",
                        _ERROR_KINDS.get(code, "failed"))
    return answer


def make_code(config: GatewayConfig, module: str, account: str, *, kind: str = "payment",
              amount: str | None = None, currency: str | None = None, suite: str = "p256",
              lifetime: int = 120, png_path: Path | None = None, svg_path: Path | None = None,
              as_json: bool = False, wait: float = 0.0) -> int:
    """Ask the module for a code; show it, write the images, print the text form; with
    ``wait``, then wait that long for the platform's notice of how it ended and print it."""
    started = time.perf_counter()
    request: dict[str, Any] = {"cmd": "code", "module": _module_id(config, module),
                               "kind": kind, "suite": suite, "account": account,
                               "lifetime": lifetime}
    if (amount is None) != (currency is None):
        raise ToolError("--amount and --currency go together", "usage")
    if amount is not None:
        request.update(amount_minor=minor_units(amount), currency=currency)
    say("asking the module; approve the code on it")
    answer = _ask(config, request)
    signed = answer.get("code")
    try:
        code = TransactionCode.decode(from_text(str(signed)))
    except CodeError as exc:
        raise ToolError(f"the daemon sent an unreadable code: {exc}", "daemon") from exc
    data = code.encode()
    for path, image in ((png_path, png), (svg_path, svg)):
        if path is not None:
            try:
                path.write_bytes(image(data, code.suite))
            except OSError as exc:
                raise ToolError(f"cannot write {path}: {exc.strerror}; the code is "
                                f"{signed}") from exc
    shown = time.perf_counter() - started
    code_id = str(answer.get("code_id"))
    if as_json:
        out: dict[str, Any] = {"code": signed, "code_id": code_id,
                               "expires_at": code.expires_at,
                               "module_seconds": answer.get("module_seconds"),
                               "shown_seconds": shown}
        print(json.dumps(out), flush=True)   # shown before waiting: one JSON line each
        if wait > 0:
            outcome = wait_outcome(config, code_id, wait, _role(code, shown=True))
            print(json.dumps({"outcome": outcome}))
            check_outcome(outcome)
        return 0
    sys.stdout.write(terminal_text(data, code.suite))
    print(signed, flush=True)
    module_ms = float(answer.get("module_seconds", 0)) * 1000
    say(f"code {code_id[:16]}: valid until "
        f"{time.strftime('%H:%M:%S', time.localtime(code.expires_at))}; shown "
        f"{shown * 1000:.0f} ms after asking (module {module_ms:.0f} ms)")
    if wait > 0:
        say(f"waiting up to {wait:g} s for the platform's outcome")
        outcome = wait_outcome(config, code_id, wait, _role(code, shown=True))
        print(outcome_line(outcome))
        check_outcome(outcome)
    return 0


def read_code(png_path: Path | None, text: str | None) -> bytes:
    if (png_path is None) == (text is None):
        raise ToolError("give the scanned code with exactly one of --png or --text", "usage")
    try:
        if png_path is not None:
            return read_png(png_path.read_bytes())
        return from_text(str(text).strip())
    except OSError as exc:
        raise ToolError(f"cannot read {png_path}: {exc.strerror}", "usage") from exc
    except ImageUnreadable as exc:
        raise ToolError(f"no transaction code in {png_path}: {exc}", "bad_code") from exc
    except MalformedCode as exc:
        raise ToolError(f"not a transaction code: {exc}", "bad_code") from exc


async def _submit(url: str, api_key_file: Path, request_text: str) -> dict[str, Any]:
    from aiohttp import ClientError, ClientSession, ClientTimeout

    try:
        import asyncio

        key = (await asyncio.to_thread(api_key_file.read_text)).strip()
    except OSError as exc:
        raise ToolError(f"cannot read the API key file {api_key_file}: {exc.strerror}",
                        "usage") from exc
    try:
        async with ClientSession(timeout=ClientTimeout(total=PLATFORM_WAIT)) as http, \
                http.post(f"{url.rstrip('/')}/v1/codes/countersigned",
                          json={"request": request_text},
                          headers={"Authorization": f"Bearer {key}"}) as resp:
            body = await resp.json(content_type=None)
            status = resp.status
    except (ClientError, TimeoutError, ValueError) as exc:
        raise ToolError(f"the platform at {url} did not answer: {exc or type(exc).__name__}",
                        "platform") from exc
    if not isinstance(body, dict):
        raise ToolError(f"the platform sent an unreadable answer ({status})", "platform")
    if status not in (200, 201, 202):
        raise ToolError(f"the platform refused: {body.get('error')}: {body.get('detail')}",
                        "platform")
    return body


async def scan_code(config: GatewayConfig, module: str, account: str, *,
                    png_path: Path | None = None, text: str | None = None,
                    amount: str | None = None, currency: str | None = None,
                    suite: str = "p256", platform: str | None = None,
                    api_key_file: Path | None = None, as_json: bool = False,
                    wait: float = OUTCOME_WAIT) -> int:
    """Read a scanned code, have the module countersign it, submit it if asked. A submission
    the platform holds for the payer's confirmation (202, pending) is followed for ``wait``
    seconds through the platform's notice to this gateway, and its final outcome printed."""
    import asyncio

    if platform is not None and api_key_file is None:
        raise ToolError("--platform needs --api-key-file (this terminal's API key)", "usage")
    started = time.perf_counter()
    data = await asyncio.to_thread(read_code, png_path, text)
    decoded = time.perf_counter()
    from transaction_code import to_text

    request: dict[str, Any] = {"cmd": "countersign", "module": _module_id(config, module),
                               "code": to_text(data), "suite": suite, "account": account}
    if (amount is None) != (currency is None):
        raise ToolError("--amount and --currency go together", "usage")
    if amount is not None:
        request.update(amount_minor=minor_units(amount), currency=currency)
    say("asking the module; approve the payment on it")
    answer = await asyncio.to_thread(_ask, config, request)
    countersigned = time.perf_counter()
    out: dict[str, Any] = {"request": answer["request"], "code_id": answer.get("code_id"),
                           "amount_minor": answer.get("amount_minor"),
                           "currency": answer.get("currency"),
                           "timings": {"decode": decoded - started,
                                       "countersign": countersigned - decoded}}
    if api_key_file is not None:
        record = await _submit(platform or config.platform_url, api_key_file,
                               str(answer["request"]))
        out["transaction"] = record
        out["timings"]["platform"] = time.perf_counter() - countersigned
        if record.get("state") == "pending":
            say(f"the platform asks the payer to confirm; waiting up to {wait:g} s")
            out["outcome"] = await asyncio.to_thread(
                wait_outcome, config, str(answer.get("code_id")), wait,
                _role(TransactionCode.decode(data), shown=False))
            out["timings"]["confirmed"] = time.perf_counter() - countersigned
    out["timings"]["total"] = time.perf_counter() - started
    final = out.get("outcome", out.get("transaction"))
    if as_json:
        print(json.dumps(out))
    else:
        print(answer["request"])
        if "transaction" in out:
            tx = out["transaction"]
            print(f"transaction {tx.get('id')}: {tx.get('state')}"
                  f"{' (' + str(tx.get('reason')) + ')' if tx.get('reason') else ''}")
        if "outcome" in out:
            print(outcome_line(out["outcome"]))
        t = out["timings"]
        say("decode {:.0f} ms, module {:.0f} ms{}{}".format(
            t["decode"] * 1000, t["countersign"] * 1000,
            f", platform {t['platform'] * 1000:.0f} ms" if "platform" in t else "",
            f", confirmed {t['confirmed'] * 1000:.0f} ms" if "confirmed" in t else ""))
    if final is not None:
        check_outcome(final)
    return 0
