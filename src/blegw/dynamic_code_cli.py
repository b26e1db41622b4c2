"""``blegw dynamic-code offer | pay | accept``: the till exchange of flow F-E through the daemon.

* ``offer`` (the merchant's gateway): the merchant's module makes a consumption code for an
  amount; written as PNG, printed as text (``BDC1:...``).
* ``pay`` (the payer's gateway): reads a consumption code from a PNG (or text), the payer's
  module checks the merchant certificate, asks its owner, and answers with a payment code
  encrypted to the merchant device; written as PNG, printed as text.
* ``accept`` (the merchant's gateway): reads the payment code, fetches the settlement server's
  certificate, has the merchant's module accept it and seal it to the server, submits the
  settlement request to ``POST /v1/dynamic-codes`` with this terminal's API key and prints the
  outcome.

Everything heavy (the dynamic-code stack, segno, zxing-cpp, aiohttp) is imported when a command
runs, so ``blegw --help`` stays fast. Exit codes as the other tools (docs/cli.md): a unit's
refusal is 16 with its reason, a platform's refusal 13, an unreadable image 17.
"""

# No ``from __future__ import annotations``, as in ``blegw.cli``: typer builds the commands
# from annotations written as objects, evaluated once at import.
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from .config import GatewayConfig
    from .tool_errors import ToolErrorKind

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                  help="Dynamic codes (flow F-E): the till exchange with the secure units in "
                       "the modules.")

_DEFAULT_CONFIG = Path("/etc/blegw/blegw.toml")
_Config = Annotated[Path, typer.Option("--config", "-c", envvar="BLEGW_CONFIG",
                                       help="gateway configuration (TOML)")]
_Json = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout")]
_Module = Annotated[str, typer.Option(help="the module: registry name, address or id")]
_Png = Annotated[Path | None, typer.Option(help="the scanned code as a PNG")]
_Text = Annotated[str | None, typer.Option(help="the scanned code's text (BDC1:...)")]
_ANSWER_WAIT = 95.0
"""The daemon's module wait (75 s) and a margin, so its typed timeout comes first."""
_PLATFORM_WAIT = 30.0
_KINDS: dict[str, "ToolErrorKind"] = {
    "unknown_module": "not_found", "module_refused": "declined", "timeout": "timeout",
    "bad_code": "bad_code", "bad_request": "usage", "shutting_down": "daemon"}


def _ask(config: "GatewayConfig", request: dict[str, Any]) -> dict[str, Any]:
    from .daemon_client import ToolError, ask_daemon

    answer = ask_daemon(config, request, timeout=_ANSWER_WAIT)
    if not answer.get("ok"):
        code = str(answer.get("code", ""))
        reason = f" ({answer['reason']})" if answer.get("reason") else ""
        raise ToolError(f"{code or 'refused'}{reason}: {answer.get('error')}",
                        _KINDS.get(code, "failed"))
    return answer


def _module_id(config: "GatewayConfig", key: str) -> str:
    from .daemon_client import ToolError, open_registry

    entry = open_registry(config).find(key)
    if entry is not None:
        return entry.module_id
    try:
        bytes.fromhex(key)
    except ValueError:
        raise ToolError(f"no paired module {key!r} (blegw devices lists them)",
                        "not_found") from None
    return key.lower()


def _read(png_path: Path | None, text: str | None) -> bytes:
    """A scanned dynamic code from its PNG (zxing-cpp) or its text form."""
    from dynamic_code import DynamicCodeError, from_text
    from dynamic_code_image import DynamicImageUnreadable, read_png

    from .daemon_client import ToolError

    if (png_path is None) == (text is None):
        raise ToolError("give the scanned code with exactly one of --png or --text", "usage")
    try:
        if png_path is not None:
            return read_png(png_path.read_bytes())
        return from_text(str(text).strip())
    except OSError as exc:
        raise ToolError(f"cannot read {png_path}: {exc.strerror}", "usage") from exc
    except DynamicImageUnreadable as exc:
        raise ToolError(f"no dynamic code in {png_path}: {exc}", "bad_code") from exc
    except DynamicCodeError as exc:
        raise ToolError(f"not a dynamic code: {exc}", "bad_code") from exc


def _write(path: Path | None, data: bytes) -> None:
    from dynamic_code_image import png

    from .daemon_client import ToolError

    if path is None:
        return
    try:
        path.write_bytes(png(data))
    except OSError as exc:
        raise ToolError(f"cannot write {path}: {exc.strerror}") from exc


def _emit(as_json: bool, answer: dict[str, Any], text_key: str) -> None:
    if as_json:
        print(json.dumps({k: v for k, v in answer.items() if k != "ok"}))
    else:
        print(answer[text_key])


def offer_code(config: "GatewayConfig", module: str, amount: str, currency: str,
               lifetime: int, png_path: Path | None, as_json: bool) -> int:
    from dynamic_code import from_text

    from .code_tools import minor_units
    from .daemon_client import say

    say("asking the merchant's module for a consumption code")
    answer = _ask(config, {"cmd": "dynamic_offer", "module": _module_id(config, module),
                           "amount_minor": minor_units(amount), "currency": currency,
                           "lifetime": lifetime})
    _write(png_path, from_text(str(answer["code"])))
    _emit(as_json, answer, "code")
    return 0


def pay_code(config: "GatewayConfig", module: str, png_path: Path | None, text: str | None,
             verification: str, sensor: str, out_png: Path | None, as_json: bool) -> int:
    from dynamic_code import from_text, to_text

    from .daemon_client import say

    scanned = _read(png_path, text)
    say("asking the payer's module; approve the payment on it")
    answer = _ask(config, {"cmd": "dynamic_pay", "module": _module_id(config, module),
                           "code": to_text(scanned), "verification": verification,
                           "sensor": sensor})
    _write(out_png, from_text(str(answer["code"])))
    _emit(as_json, answer, "code")
    return 0


async def accept_code(config: "GatewayConfig", module: str, png_path: Path | None,
                      text: str | None, platform: str | None, api_key_file: Path,
                      till_sensor: bool, as_json: bool) -> int:
    import asyncio

    from dynamic_code import DynamicCodeError, to_text
    from dynamic_code.messages import PaymentCode

    from .daemon_client import ToolError, say
    from .platform_client import platform_json

    url = (platform or config.platform_url or "").rstrip("/")
    if not url:
        raise ToolError("no platform URL: --platform or platform_url in the configuration",
                        "usage")
    try:
        key = (await asyncio.to_thread(api_key_file.read_text)).strip()
    except OSError as exc:
        raise ToolError(f"cannot read the API key file {api_key_file}: {exc.strerror}",
                        "usage") from exc
    scanned = _read(png_path, text)
    try:
        suite = PaymentCode.decode(scanned).suite
    except DynamicCodeError as exc:
        raise ToolError(f"not a payment code: {exc}", "bad_code") from exc
    status, cert = await platform_json(
        "GET", f"{url}/v1/dynamic-codes/settlement-certificate/{suite.label}",
        timeout=_PLATFORM_WAIT)
    if status != 200 or not isinstance(cert.get("certificate"), str):
        raise ToolError(f"no settlement certificate: {cert.get('error')}", "platform")
    say("the merchant's module checks the payment code and seals it to the settlement server")
    request = {"cmd": "dynamic_accept", "module": _module_id(config, module),
               "code": to_text(scanned), "settlement_certificate": cert["certificate"],
               "till_sensor": till_sensor}
    answer = await asyncio.to_thread(_ask, config, request)
    status, outcome = await platform_json("POST", f"{url}/v1/dynamic-codes",
                                          timeout=_PLATFORM_WAIT, key=key,
                                          body={"request": answer["request"]})
    if status not in (200, 201):
        raise ToolError(f"the platform refused: {outcome.get('error')}: "
                        f"{outcome.get('detail')}", "platform")
    if as_json:
        print(json.dumps({"transaction": outcome, "payer": answer["payer"],
                          "verification": answer["verification"]}))
    else:
        print(f"outcome: {outcome.get('state')}: {answer['payer']} paid "
              f"{int(answer['amount_minor']) / 100:.2f} {answer['currency']} "
              f"(transaction {outcome.get('id')}, owner verified: {answer['verification']})")
    return 0


def _run(make: Any) -> None:
    from .cli import _tool

    _tool(make)


def _load(path: Path) -> "GatewayConfig":
    from .cli import _config

    return _config(path)


@app.command("offer")
def offer(module: _Module,
          amount: Annotated[str, typer.Option(help="decimal amount, e.g. 12.50")],
          currency: Annotated[str, typer.Option(help="ISO 4217 code (EUR)")] = "EUR",
          lifetime: Annotated[int, typer.Option(min=1, max=600, help="seconds valid")] = 120,
          png: Annotated[Path | None, typer.Option(help="write the code as PNG")] = None,
          config: _Config = _DEFAULT_CONFIG, json: _Json = False) -> None:
    """Merchant: have the module make a consumption code for an amount."""
    cfg = _load(config)
    _run(lambda: offer_code(cfg, module, amount, currency, lifetime, png, json))


@app.command("pay")
def pay(module: _Module, png: _Png = None, text: _Text = None,
        verification: Annotated[str, typer.Option(
            help="features (the server matches) or device (the module matches)")
        ] = "features",
        sensor: Annotated[str, typer.Option(help="features mode: phone or till captures")
                          ] = "phone",
        out_png: Annotated[Path | None, typer.Option(help="write the payment code as PNG")
                           ] = None,
        config: _Config = _DEFAULT_CONFIG, json: _Json = False) -> None:
    """Payer: have the module pay a scanned consumption code (its owner approves on it)."""
    cfg = _load(config)
    _run(lambda: pay_code(cfg, module, png, text, verification, sensor, out_png, json))


@app.command("accept")
def accept(module: _Module,
           api_key_file: Annotated[Path, typer.Option(help="this terminal's API key")],
           png: _Png = None, text: _Text = None,
           platform: Annotated[str | None, typer.Option(
               help="platform URL (default: the configuration's platform_url)")] = None,
           till_sensor: Annotated[bool, typer.Option(
               help="the till's sensor captures the owner's finger")] = False,
           config: _Config = _DEFAULT_CONFIG, json: _Json = False) -> None:
    """Merchant: have the module accept a scanned payment code and submit it to the
    platform."""
    cfg = _load(config)
    _run(lambda: accept_code(cfg, module, png, text, platform, api_key_file, till_sensor,
                             json))

