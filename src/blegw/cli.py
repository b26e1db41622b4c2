"""``blegw``: the gateway daemon and the operator's tools.

Reference with examples and exit codes: docs/cli.md. Shell completion:
``blegw --install-completion`` (or ``--show-completion bash`` to see the script).

The console script is ``quick_start.main``: plain ``status`` and ``devices`` run from there
without typer; everything else comes here. Each command imports what it uses when it runs:
``--help``, ``status`` and ``devices`` load neither bleak, aiohttp, the cryptography stack nor
the daemon (bench/cli_startup_bench.py measures them). The demonstration and the benchmark
are ``blegw-harness demo|bench``: the daemon's package does not import the platform, the
simulator or the virtual radio.
"""

# No ``from __future__ import annotations``: typer reads each command's annotations to build
# it, and string annotations are evaluated twice per command on every run (a quarter of
# ``blegw --help``'s time after the imports); written as objects they are built once, here.
from collections.abc import Callable, Coroutine
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from exit_codes import ExitCode

from .dynamic_code_cli import app as dynamic_code_app

if TYPE_CHECKING:
    from .config import GatewayConfig

DEFAULT_CONFIG = Path("/etc/blegw/blegw.toml")


class LogFormat(StrEnum):
    text = "text"
    json = "json"


app = typer.Typer(
    # Plain help (no rich markup): rendering help with rich costs ~80 ms of imports, and
    # ``blegw --help`` should answer at once.
    name="blegw", no_args_is_help=True, add_completion=True, rich_markup_mode=None,
    help="Bluetooth LE secure-module gateway: the daemon, pairing and inspection tools.",
    epilog="Exit codes: 0 ok, 1 failure, 2 usage or configuration, 10 not found, 11 bonding, "
           "12 certificate, 13 platform, 14 timeout, 15 daemon not running, 16 declined on the "
           "module, 17 not a transaction code (docs/cli.md).")

app.add_typer(dynamic_code_app, name="dynamic-code")

ConfigOption = Annotated[Path, typer.Option(
    "--config", "-c", envvar="BLEGW_CONFIG", help="gateway configuration (TOML)",
    show_default=True)]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output on stdout")]


@app.callback()
def _global(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress")
                               ] = False,
            log_format: Annotated[LogFormat, typer.Option(
                "--log-format", help="json: one JSON object per line (journald, shippers)")
            ] = LogFormat.text) -> None:
    import logging

    from .logs import setup_logging

    setup_logging(logging.INFO if verbose else logging.WARNING, log_format.value)


def _config(path: Path) -> "GatewayConfig":
    from .tool_runner import ConfigRefused, load

    try:
        return load(path)
    except ConfigRefused as exc:
        raise typer.Exit(ExitCode.USAGE) from exc


def _tool(make: Callable[[], Coroutine[Any, Any, int] | int]) -> None:
    """Run one tool (``tool_runner``): its exit code ends the command."""
    from .tool_runner import run_tool

    raise typer.Exit(run_tool(make))


async def _run_daemon(config: "GatewayConfig") -> int:
    import asyncio
    import signal

    from .service import GatewayService

    service = GatewayService(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    await service.run()
    return 0


@app.command()
def run(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Run the gateway daemon (systemd: Type=notify; SIGTERM stops it cleanly)."""
    import asyncio

    cfg = _config(config)
    raise typer.Exit(asyncio.run(_run_daemon(cfg)))


@app.command()
def scan(config: ConfigOption = DEFAULT_CONFIG,
         timeout: Annotated[float, typer.Option(help="seconds to listen")] = 10.0,
         json: JsonOption = False) -> None:
    """Nearby modules advertising the profile: name, address, id, RSSI, pairing mode."""
    from . import scan_tool

    cfg = _config(config)
    _tool(lambda: scan_tool.scan(cfg, timeout, json))


@app.command()
def pair(module: Annotated[str, typer.Argument(help="address, advertised name or module id")],
         account: Annotated[str, typer.Option(help="the platform account to enroll it for")],
         code: Annotated[str, typer.Option(
             "--code", help="the account holder's one-time enrollment code from the platform "
                            "(blegw-platform enrollment-code)")],
         config: ConfigOption = DEFAULT_CONFIG,
         yes: Annotated[bool, typer.Option("--yes", "-y",
                                           help="accept the pairing code without asking")
                        ] = False,
         name: Annotated[str | None, typer.Option(help="a name for it in the registry")
                         ] = None,
         timeout: Annotated[float, typer.Option(help="seconds to find and bond")] = 20.0,
         ) -> None:
    """Bond, check the module's certificates, enroll it, record it, test a round trip."""
    from . import pairing_tool

    cfg = _config(config)
    _tool(lambda: pairing_tool.pair(cfg, module, account, code, yes=yes, timeout=timeout,
                                    name=name))


@app.command()
def devices(config: ConfigOption = DEFAULT_CONFIG, json: JsonOption = False) -> None:
    """Paired modules with their link state, last answer and counter (from the daemon)."""
    from .inspect_tools import devices as show_devices

    cfg = _config(config)
    _tool(lambda: show_devices(cfg, json))


@app.command()
def forget(module: Annotated[str, typer.Argument(help="module id, address or name")],
           config: ConfigOption = DEFAULT_CONFIG,
           force: Annotated[bool, typer.Option(
               help="forget here even if the platform cannot revoke the enrollment")] = False,
           ) -> None:
    """Revoke the enrollment at the platform, remove the bond and the registry entry."""
    from . import registry_tools

    cfg = _config(config)
    _tool(lambda: registry_tools.forget(cfg, module, force=force))


@app.command()
def rename(module: Annotated[str, typer.Argument(help="module id, address or name")],
           new_name: Annotated[str, typer.Argument(help="the new name")],
           config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Rename a paired module in the registry."""
    from . import registry_tools

    cfg = _config(config)
    _tool(lambda: registry_tools.rename(cfg, module, new_name))


@app.command()
def ping(module: Annotated[str, typer.Argument(help="module id, address or name")],
         config: ConfigOption = DEFAULT_CONFIG,
         count: Annotated[int, typer.Option("--count", "-n", min=1, max=1000)] = 3,
         json: JsonOption = False) -> None:
    """Round-trip time over the link (through the daemon when it is running)."""
    from . import ping_tool

    cfg = _config(config)
    _tool(lambda: ping_tool.ping(cfg, module, count, json))


@app.command()
def status(config: ConfigOption = DEFAULT_CONFIG, json: JsonOption = False) -> None:
    """Ask the running daemon: uplink, each module's link and queue, last errors."""
    from .inspect_tools import status as show_status

    cfg = _config(config)
    _tool(lambda: show_status(cfg, json))


class CodeKindOption(StrEnum):
    payment = "payment"
    collection = "collection"


class SuiteOption(StrEnum):
    p256 = "p256"
    sm2 = "sm2"


ModuleOption = Annotated[str, typer.Option(
    "--module", help="the module that signs: its name, address or id")]
AccountOption = Annotated[str, typer.Option(help="the account the module signs for")]
AmountOption = Annotated[str | None, typer.Option(
    help="amount with at most two decimals (12.50), with --currency")]
CurrencyOption = Annotated[str | None, typer.Option(help="ISO 4217 code (EUR), with --amount")]
WaitOption = Annotated[float, typer.Option(
    min=0, max=300, help="seconds to wait for the platform's outcome of the code (0: do not)")]
SuiteOpt = Annotated[SuiteOption, typer.Option("--suite", help="the module's signature suite")]


@app.command()
def code(module: ModuleOption, account: AccountOption,
         amount: AmountOption = None, currency: CurrencyOption = None,
         kind: Annotated[CodeKindOption, typer.Option(
             help="payment: you pay whoever scans it; collection: whoever scans it pays you")
         ] = CodeKindOption.payment,
         suite: SuiteOpt = SuiteOption.p256,
         lifetime: Annotated[int, typer.Option(min=1, max=86400, help="seconds it is valid")
                             ] = 120,
         png: Annotated[Path | None, typer.Option(help="also write the QR code as PNG")] = None,
         svg: Annotated[Path | None, typer.Option(help="also write the QR code as SVG")] = None,
         wait: WaitOption = 0.0,
         config: ConfigOption = DEFAULT_CONFIG, json: JsonOption = False) -> None:
    """Have the module sign a transaction code; show it as a QR code and its text form."""
    from . import code_tools

    cfg = _config(config)
    _tool(lambda: code_tools.make_code(
        cfg, module, account, kind=kind.value, amount=amount, currency=currency,
        suite=suite.value, lifetime=lifetime, png_path=png, svg_path=svg, as_json=json,
        wait=wait))


@app.command("scan-code")
def scan_code(module: ModuleOption, account: AccountOption,
              png: Annotated[Path | None, typer.Option(help="the scanned code as a PNG")
                             ] = None,
              text: Annotated[str | None, typer.Option(help="the scanned code's text (BGC1:...)")
                              ] = None,
              amount: AmountOption = None, currency: CurrencyOption = None,
              suite: SuiteOpt = SuiteOption.p256,
              platform: Annotated[str | None, typer.Option(
                  help="platform URL (default: the configuration's platform_url)")] = None,
              api_key_file: Annotated[Path | None, typer.Option(
                  help="this terminal's API key: submit the countersigned code")] = None,
              wait: Annotated[float, typer.Option(
                  min=0, max=300, help="seconds to follow a code the payer must confirm")
              ] = 150.0,
              config: ConfigOption = DEFAULT_CONFIG, json: JsonOption = False) -> None:
    """Read a scanned code, have the module countersign it, submit it to the platform."""
    from . import code_tools

    cfg = _config(config)
    _tool(lambda: code_tools.scan_code(
        cfg, module, account, png_path=png, text=text, amount=amount, currency=currency,
        suite=suite.value, platform=platform, api_key_file=api_key_file, as_json=json,
        wait=wait))


PlatformUrl = Annotated[str, typer.Option("--platform", help="the platform's URL")]


@app.command("show-code")
def show_code(account: Annotated[str, typer.Option(help="the account the code collects for")],
              amount: AmountOption = None, currency: CurrencyOption = None,
              lifetime: Annotated[int, typer.Option(min=1, max=86400,
                                                    help="seconds it is valid")] = 120,
              png: Annotated[Path | None, typer.Option(help="also write it as PNG")] = None,
              svg: Annotated[Path | None, typer.Option(help="also write it as SVG")] = None,
              platform: Annotated[str | None, typer.Option(
                  help="the platform's URL, to --wait for the outcome")] = None,
              wait: WaitOption = 0.0, json: JsonOption = False) -> None:
    """Without a module: show an unsigned collection code (the payer's module signs alone)."""
    from . import terminal_codes

    _tool(lambda: terminal_codes.show_code(
        account, amount=amount, currency=currency, lifetime=lifetime, png_path=png,
        svg_path=svg, platform=platform, wait=wait, as_json=json))


@app.command("present-code")
def present_code(account: Annotated[str, typer.Option(
                     help="the account this terminal collects for")],
                 platform: PlatformUrl,
                 api_key_file: Annotated[Path, typer.Option(help="this terminal's API key")],
                 png: Annotated[Path | None, typer.Option(help="the scanned code as a PNG")
                                ] = None,
                 text: Annotated[str | None, typer.Option(
                     help="the scanned code's text (BGC1:...)")] = None,
                 amount: AmountOption = None, currency: CurrencyOption = None,
                 wait: Annotated[float, typer.Option(
                     min=0, max=300, help="seconds to follow a code the payer must confirm")
                 ] = 150.0,
                 json: JsonOption = False) -> None:
    """Without a module: present a scanned payment code to the platform with an API key."""
    from . import terminal_codes

    _tool(lambda: terminal_codes.present_code(
        account, platform, api_key_file, png_path=png, text=text, amount=amount,
        currency=currency, wait=wait, as_json=json))


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="blegw")
