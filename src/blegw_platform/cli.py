"""``blegw-platform``: the reference platform and a terminal to pay with.

    blegw-platform serve --state DIR [--http 127.0.0.1:8080] [--broker mqtts://HOST:8883
                         --mqtt-password-file F --mqtt-ca CA.pem [--mqtt-username U]
                         [--mqtt-cert C --mqtt-key K]]
    blegw-platform broker-setup --dir DIR [--port 8883] [--listen ADDR] [--host NAME ...]
    blegw-platform broker-user --dir DIR --gateway GW [--password-file F] [--remove]
    blegw-platform seed --state DIR --account ID --balance MINOR [--currency EUR]
    blegw-platform provision-card --state DIR --card-state DIR --user ACCOUNT [--suite aes|sm4]
    blegw-platform issue-cert --state DIR --suite p256|sm2 --module-id HEX --public-key HEX --out F
    blegw-platform enrollment-code --state DIR --account ID [--minutes 15]
    blegw-platform enroll --state DIR --cert FILE --account ID --gateway GW
    blegw-platform enroll-card --state DIR --card-ref HEX --gateway GW
    blegw-platform revoke --state DIR --module HEX
    blegw-platform channel-keys --state DIR [--days 365]
    blegw-platform payment-mode --state DIR --account ID --no-verification-up-to MINOR
                                [--fingerprint-from MINOR]
    blegw-platform terminal add --state DIR --name NAME --payee ACCOUNT [--payee ...]
    blegw-platform terminal list|revoke --state DIR [--name NAME]
    blegw-platform audit --state DIR
    blegw-platform pay [--api URL] --api-key KEY --payer A --payee B --amount MINOR ...

``pay`` creates a payment and follows it to its outcome, saying when the module is asking its
owner; Ctrl-C (SIGINT) cancels the payment and prints the outcome that counted (an approval
that came first still settles). Exit codes: 0 settled, 3 declined, 4 rejected, 5 timed out,
7 cancelled, 1 other failures, 2 usage. ``audit`` exits 0 when the books balance
and 6 when it found violations (each printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exit_codes import ExitCode
from relay_contract import PLATFORM_USER

if TYPE_CHECKING:
    import asyncio

    from aiohttp import ClientSession

    from e2e import Suite
    from mqtt_uplink import MqttEndpoint

    from .ledger import Ledger
    from .platform import Platform

# aiohttp, the platform and the cryptography stack are imported by the commands that use them,
# not here: ``blegw-platform --help`` and a usage error answer at once.

EXIT = {"settled": ExitCode.OK, "declined": ExitCode.PAYMENT_DECLINED,
        "rejected": ExitCode.PAYMENT_REJECTED, "timed_out": ExitCode.PAYMENT_TIMED_OUT,
        "cancelled": ExitCode.PAYMENT_CANCELLED}
"""``pay``'s exit code for each final state of a payment."""
PROGRESS_LINES = {"awaiting_owner": "waiting for the owner to approve on the module… "
                                    "(Ctrl-C cancels)",
                  "processing": "the module is checking the request…"}
"""What ``pay`` prints when a pending payment's progress changes."""
POLL = 30.0
"""Seconds one long-poll of ``pay`` may wait for a change."""
AUDIT_FAILED = ExitCode.AUDIT_FAILED
"""``audit``'s exit code when the books do not balance (distinct from every other failure)."""
SUITE_NAMES = ("p256", "sm2")


def suite_of(name: str) -> Suite:
    """The signature suite a command-line name stands for (one of :data:`SUITE_NAMES`)."""
    from e2e import Suite

    return {"p256": Suite.P256_SHA256, "sm2": Suite.SM2_SM3}[name]


def mqtt_endpoint(args: argparse.Namespace) -> MqttEndpoint:
    """The platform's broker account from ``serve``'s options (raises MqttSettingsError)."""
    from mqtt_uplink import MqttEndpoint, read_secret_file

    password = None
    if args.mqtt_password_file:
        password = read_secret_file(Path(args.mqtt_password_file), "--mqtt-password-file")
    username = args.mqtt_username or (PLATFORM_USER if password is not None else None)
    return MqttEndpoint(args.broker, username, password, args.mqtt_ca, args.mqtt_cert,
                        args.mqtt_key)


async def serve(args: argparse.Namespace, mqtt: MqttEndpoint) -> int:
    from aiohttp import web

    from .api import make_app
    from .code_confirmation import CodeConfirmation
    from .platform import Platform

    try:
        confirmation = CodeConfirmation(args.code_confirm_above, args.code_confirm_collection)
    except ValueError as exc:
        print(f"blegw-platform serve: --code-confirm-above: {exc}", file=sys.stderr)
        return 2
    from .workers import ChangeFeed, WorkerSettings, WorkerSettingsError

    try:
        workers = WorkerSettings.load(Path(args.state), args.reuse_port or None,
                                      args.share_group)
    except WorkerSettingsError as exc:
        print(f"blegw-platform serve: [workers] {exc}", file=sys.stderr)
        return 2
    platform = Platform(Path(args.state), mqtt=mqtt, approval_window=args.approval_window)
    platform.workers = workers
    if workers.share_group is not None and platform.channels.enabled:
        # A channel's steps live in the process that opened it (channel_payments.py): a step
        # answered to another worker would wait out its expiry. One worker until they move.
        print("blegw-platform serve: --share-group: payments in the secure channel (channel "
              "keys in the state directory) need one worker; docs/scale-out.md",
              file=sys.stderr)
        platform.close()
        return 2
    platform.code_confirmation = confirmation
    platform.cards.require_link = args.require_card_link
    host, _, port = args.http.rpartition(":")
    runner = web.AppRunner(make_app(platform))
    await runner.setup()
    await web.TCPSite(runner, host or "127.0.0.1", int(port),
                      reuse_port=workers.reuse_port or None).start()
    feed = ChangeFeed(platform) if workers.share_group is not None else None
    if feed is not None:
        await feed.start()
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"platform listening on http://{args.http}, broker {mqtt.describe()}; codes: "
          f"{confirmation.describe()}", flush=True)
    try:
        await platform.run_uplink(stop)
    finally:
        await runner.cleanup()
        if feed is not None:
            await feed.aclose()
        await platform.aclose()
    return 0


async def pay(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from aiohttp import ClientError, ClientSession, ClientTimeout

    body = {"payer": args.payer, "payee": args.payee, "amount_minor": args.amount,
            "currency": args.currency, "order_reference": args.order,
            "order_description": args.description, "suite": args.suite}
    import uuid

    key = args.key or f"cli-{uuid.uuid4()}"
    api_key = args.api_key or os.environ.get("BLEGW_API_KEY", "")
    if not api_key:
        print("blegw-platform pay: a terminal API key is required: --api-key or BLEGW_API_KEY "
              "(blegw-platform terminal add makes one)", file=sys.stderr)
        return ExitCode.USAGE
    started = time.perf_counter()
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Ctrl-C cancels the payment instead of abandoning it while the owner is still asked.
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    try:
        async with ClientSession(headers={"Authorization": f"Bearer {api_key}"},
                                 timeout=ClientTimeout(total=POLL + 15)) as http:
            async with http.post(f"{args.api}/v1/transactions", json=body,
                                 headers={"Idempotency-Key": key}) as resp:
                created: dict[str, Any] = await resp.json()
                if resp.status not in (200, 201):
                    print(f"refused ({created.get('error', resp.status)}): "
                          f"{created.get('detail', created)}", file=sys.stderr)
                    return ExitCode.FAILED
            print(f"payment {created['id']} {created['state']}: {args.amount} minor units "
                  f"{args.currency} from {args.payer} to {args.payee}", flush=True)
            outcome = await _follow(http, f"{args.api}/v1/transactions/{created['id']}",
                                    created, interrupted)
    except (ClientError, OSError, TimeoutError) as exc:
        print(f"cannot reach the platform at {args.api}: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    reason = f" ({outcome['reason']})" if outcome["reason"] else ""
    print(f"outcome: {outcome['state']}{reason} after "
          f"{(time.perf_counter() - started) * 1000:.0f} ms")
    return EXIT.get(outcome["state"], ExitCode.FAILED)


async def _follow(http: ClientSession, url: str, record: dict[str, Any],
                  interrupted: asyncio.Event) -> dict[str, Any]:
    """Follow a payment until it is final, printing each change of its progress; when
    ``interrupted`` is set, cancel it and return the outcome that counted."""
    import asyncio

    shown = ""
    while record["state"] == "pending":
        line = PROGRESS_LINES.get(record.get("progress", ""), "")
        if line and line != shown:
            print(line, flush=True)
            shown = line
        poll = asyncio.ensure_future(_json(http.get(
            url, params={"wait": str(POLL), "after": repr(float(record["updated"]))})))
        stop = asyncio.ensure_future(interrupted.wait())
        try:
            await asyncio.wait({poll, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not poll.done():
                poll.cancel()
        if poll.done() and not poll.cancelled():
            record = poll.result()
            continue
        print("cancelling the payment…", flush=True)
        cancelled = await _json(http.post(f"{url}/cancel"))
        if "state" in cancelled:
            return cancelled
        # already_final: an outcome came first; show that one
        return await _json(http.get(url))
    return record


async def _json(request: Any) -> dict[str, Any]:
    """One API call's JSON answer (an error body included: the caller looks at its keys)."""
    async with request as resp:
        answer: dict[str, Any] = await resp.json()
        if resp.status >= 400 and resp.status != 409:
            raise OSError(f"the platform answered {resp.status} {answer.get('error', '')}")
        return answer


def add_terminal_command(platform: Platform, args: argparse.Namespace) -> None:
    """``terminal add``: an API key a terminal (a merchant) pays in with."""
    import asyncio

    key = asyncio.run(platform.add_terminal(args.name, args.payee))
    print(key)
    print(f"terminal {args.name} may collect for {', '.join(sorted(set(args.payee)))}; "
          "this key is shown once (only its hash is kept): give it to the terminal as "
          "BLEGW_API_KEY or --api-key", file=sys.stderr)


def provision_card(args: argparse.Namespace) -> None:
    """``provision-card``: seed step s0, a simulated card's state (0600) with its derived keys;
    prints what identifies the card, never a key."""
    from private_files import write_atomic
    from symmetric_card import CardSuite

    from .issuer_keys import FileIssuerKeys, IssuedCards, issue_card

    state = Path(args.state)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    suites = tuple(dict.fromkeys(CardSuite[{"aes": "AES128_GCM_SHA256",
                                            "sm4": "SM4_GCM_SM3"}[name]]
                                 for name in args.suite or ("aes", "sm4")))
    card_dir = Path(args.card_state)
    card_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = card_dir / "card.cbor"
    if target.exists():
        raise ValueError(f"{target} exists: a card is provisioned once")
    card = issue_card(FileIssuerKeys(state), IssuedCards(state), bound_user=args.user,
                      suites=suites, card_number=args.card_number)
    write_atomic(target, card.encode())
    versions = ", ".join(f"{suite.label} v{version}" for suite, (version, _key)
                         in card.keys.items())
    print(f"card {card.info.card_number} (ref {card.card_ref.hex()}, certificate "
          f"{card.info.certificate_number}) bound to {card.info.bound_user}, keys {versions} "
          f"-> {target}")


def open_ledger(state: Path, *, create: bool) -> Ledger:
    """The ledger in ``state`` alone (no CA or signing keys made); without ``create`` a missing
    ledger is refused, so a mistyped ``--state`` is an error, not a new empty platform."""
    from .ledger import Ledger, LedgerError, ledger_location

    if create:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
    location = ledger_location(state)
    if not create and isinstance(location, Path) and not location.is_file():
        raise LedgerError(f"no ledger in {state} ({location.name} is missing): check --state")
    return Ledger(location)


def ledger_command(ledger: Ledger, args: argparse.Namespace) -> None:
    """``seed``, ``audit``, ``terminal list|revoke``: the commands that need only the ledger."""
    if args.cmd == "seed":
        ledger.add_account(args.account, args.currency, args.balance)
        print(f"account {args.account}: {args.balance} {args.currency}")
    elif args.cmd == "audit":
        audit_command(ledger)
    elif args.action == "list":
        for terminal in ledger.terminals():
            state = "active" if terminal.revoked is None else time.strftime(
                "revoked %Y-%m-%d %H:%M:%S", time.localtime(terminal.revoked))
            print(f"{terminal.name}\t{state}\t{','.join(terminal.payees)}")
    elif args.action == "revoke":
        if not ledger.revoke_terminal(args.name):
            print(f"blegw-platform: no active terminal {args.name}", file=sys.stderr)
            sys.exit(1)
        print(f"terminal {args.name}: key revoked")


def audit_command(ledger: Ledger) -> None:
    """``audit``: check the ledger's invariants; exit :data:`AUDIT_FAILED` listing each one."""
    violations, summary = ledger.report()
    for currency, (count, total) in sorted(summary.currencies.items()):
        print(f"{currency}: {count} account(s) holding {total} minor units")
    print(f"{summary.transactions} transaction(s), {summary.settled} settled, "
          f"{summary.postings} posting(s), {summary.issuance} issuance record(s)")
    if not violations:
        print("audit: clean")
        return
    for violation in violations:
        print(f"violation {violation}")
    print(f"audit: {len(violations)} violation(s)", file=sys.stderr)
    sys.exit(AUDIT_FAILED)


def broker_setup(args: argparse.Namespace) -> None:
    from .broker_setup import setup

    files = setup(Path(args.dir), port=args.port, listen=args.listen, hosts=tuple(args.host),
                  data=Path(args.data) if args.data else None, run_as=args.run_as)
    print(f"broker configuration in {files.root}: mosquitto -c {files.conf}")
    print(f"platform account {PLATFORM_USER}: password in {files.platform_password} "
          f"(serve --mqtt-password-file); CA for clients: {files.ca}")
    print("add each gateway: blegw-platform broker-user --dir "
          f"{files.root} --gateway GW --password-file FILE")


def broker_user(args: argparse.Namespace) -> None:
    from .broker_setup import add_gateway, remove_gateway

    root = Path(args.dir)
    if args.remove:
        if not remove_gateway(root, args.gateway):
            print(f"blegw-platform: gateway {args.gateway} has no broker account",
                  file=sys.stderr)
            sys.exit(1)
        print(f"gateway {args.gateway}: broker account removed; reload the broker "
              f"(SIGHUP) and disconnect it")
        return
    out = Path(args.password_file) if args.password_file else None
    password = add_gateway(root, args.gateway, out)
    if out is None:
        print(password)
    where = f"written to {out}" if out else "printed once above"
    print(f"gateway {args.gateway}: broker user {args.gateway}, new password {where}; reload "
          f"the broker (SIGHUP) to apply it", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="blegw-platform",
                                     description=__doc__.split("\n")[0].replace("``", ""))
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="cmd", required=True)
    state_help = "platform state directory (ledger, CA keys); created if missing"
    existing_state_help = "platform state directory; its ledger must exist"
    p = sub.add_parser("serve", help="run the HTTP API and the MQTT dispatch",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--state", required=True, help=state_help)
    p.add_argument("--http", default="127.0.0.1:8080", help="HOST:PORT to listen on")
    p.add_argument("--broker", default=os.environ.get("BLEGW_PLATFORM_MQTT_URL",
                                                      "mqtt://127.0.0.1:1883"),
                   help="MQTT broker URL, mqtts:// for TLS (env BLEGW_PLATFORM_MQTT_URL)")
    p.add_argument("--mqtt-username",
                   default=os.environ.get("BLEGW_PLATFORM_MQTT_USERNAME"),
                   help=f"broker user (default with a password: {PLATFORM_USER}; "
                        f"env BLEGW_PLATFORM_MQTT_USERNAME)")
    p.add_argument("--mqtt-password-file",
                   default=os.environ.get("BLEGW_PLATFORM_MQTT_PASSWORD_FILE"),
                   help="file holding the broker password, readable only by this user "
                        "(env BLEGW_PLATFORM_MQTT_PASSWORD_FILE)")
    p.add_argument("--mqtt-ca", default=os.environ.get("BLEGW_PLATFORM_MQTT_CA"),
                   help="CA file for the broker's certificate (default: the system's; "
                        "env BLEGW_PLATFORM_MQTT_CA)")
    p.add_argument("--mqtt-cert", default=os.environ.get("BLEGW_PLATFORM_MQTT_CERT"),
                   help="client certificate, if the broker asks for one "
                        "(env BLEGW_PLATFORM_MQTT_CERT)")
    p.add_argument("--mqtt-key", default=os.environ.get("BLEGW_PLATFORM_MQTT_KEY"),
                   help="its private key, 0600 (env BLEGW_PLATFORM_MQTT_KEY)")
    p.add_argument("--reuse-port", action="store_true",
                   help="bind --http with SO_REUSEPORT: N workers share one port "
                        "([workers] reuse_port)")
    p.add_argument("--share-group", default=None, metavar="GROUP",
                   help="take gateway responses in the MQTT 5 shared subscription GROUP with "
                        "the other workers ([workers] share_group; docs/scale-out.md)")
    p.add_argument("--approval-window", type=int, default=120,
                   help="seconds a person has to approve on the module")
    p.add_argument("--code-confirm-above", type=int, default=None, metavar="MINOR_UNITS",
                   help="have the payer's module confirm (flow F-A) every transaction code "
                        "above this amount before it settles (docs/transaction-codes.md)")
    p.add_argument("--code-confirm-collection", action="store_true",
                   help="have the payer's module confirm every collection code")
    p.add_argument("--require-card-link", action="store_true",
                   help="refuse a card's hello whose channel cannot be checked against the "
                        "link its gateway reports (older gateways report none)")
    p = sub.add_parser("broker-setup",
                       help="write a mosquitto configuration: TLS, passwords, per-gateway ACLs",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dir", required=True, help="directory to create (mosquitto -c DIR/"
                                                "mosquitto.conf)")
    p.add_argument("--port", type=int, default=8883, help="TLS listener port")
    p.add_argument("--listen", default="", help="address to listen on (default: all)")
    p.add_argument("--host", action="append", default=None,
                   help="a name or address clients use for the broker, in its certificate "
                        "(repeat; default: localhost 127.0.0.1 ::1)")
    p.add_argument("--run-as", default=None,
                   help="account mosquitto runs as (default: the current user; a system "
                        "broker: mosquitto, with --data)")
    p.add_argument("--data", default=None,
                   help="mosquitto's persistence directory (default: --dir)")
    p = sub.add_parser("broker-user",
                       help="add a gateway's broker account or rotate its password")
    p.add_argument("--dir", required=True, help="the broker-setup directory")
    p.add_argument("--gateway", required=True, help="gateway id (its broker user name)")
    p.add_argument("--password-file", default=None,
                   help="write the password here (0600) for the gateway's [mqtt] "
                        "password_file, instead of printing it once")
    p.add_argument("--remove", action="store_true", help="delete the account instead")
    p = sub.add_parser("seed", help="create an account or set its balance")
    p.add_argument("--state", required=True, help=state_help)
    p.add_argument("--account", required=True, help="account name")
    p.add_argument("--balance", type=int, required=True, help="minor units (cents)")
    p.add_argument("--currency", default="EUR", help="ISO 4217 code (default: EUR)")
    p = sub.add_parser("provision-card",
                       help="issue a symmetric-key card: write a simulated card's state with "
                            "its derived keys (the factory's step; no key is printed)")
    p.add_argument("--state", required=True, help=state_help)
    p.add_argument("--card-state", required=True, help="the card's state directory (0700)")
    p.add_argument("--user", required=True, help="the account the card is bound to")
    p.add_argument("--suite", choices=("aes", "sm4"), action="append",
                   help="a suite to give the card a key for (repeat; default: both)")
    p.add_argument("--card-number", default=None,
                   help="16 digits with a Luhn check digit (default: a new one)")
    p = sub.add_parser("channel-keys", help="make and certify the platform's secure-channel "
                                            "keys: module payments then travel inside the "
                                            "channel")
    p.add_argument("--state", required=True, help=state_help)
    p.add_argument("--days", type=int, default=365, help="certificate lifetime")
    p = sub.add_parser("payment-mode", help="a payer's verification: none up to an amount, "
                                            "fingerprint from another, PIN between")
    p.add_argument("--state", required=True, help=existing_state_help)
    p.add_argument("--account", required=True)
    p.add_argument("--no-verification-up-to", type=int, required=True, metavar="MINOR")
    p.add_argument("--fingerprint-from", type=int, default=None, metavar="MINOR")
    p = sub.add_parser("issue-cert", help="certify one module public key (the CA's step)")
    p.add_argument("--state", required=True, help=state_help)
    p.add_argument("--suite", choices=SUITE_NAMES, required=True)
    p.add_argument("--module-id", required=True, help="module id, 32 hex digits")
    p.add_argument("--public-key", required=True, help="SEC1 public key, hex")
    p.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    p.add_argument("--out", required=True, help="file to write the CBOR certificate to")
    p = sub.add_parser("enrollment-code",
                       help="a one-time code that lets 'blegw pair' enroll a module for an "
                            "account (give it to the account holder)")
    p.add_argument("--state", required=True, help=state_help)
    p.add_argument("--account", required=True, help="the account the module will approve for")
    p.add_argument("--minutes", type=int, default=15, help="how long it is valid (default: 15)")
    p = sub.add_parser("enroll", help="bind a certified module to an account and a gateway "
                                      "(blegw pair does this over the API)")
    p.add_argument("--state", required=True, help=state_help)
    p.add_argument("--cert", required=True, help="the module's CBOR certificate file")
    p.add_argument("--account", required=True, help="account the module approves for")
    p.add_argument("--gateway", required=True, help="gateway id that reaches the module")
    p = sub.add_parser("enroll-card", help="bind an issued symmetric-key card to the account "
                                           "its issuer record names, reached via a gateway")
    p.add_argument("--state", required=True, help=state_help)
    p.add_argument("--card-ref", required=True, help="the card ref provision-card printed (hex)")
    p.add_argument("--gateway", required=True, help="gateway id that reaches the card")
    p = sub.add_parser("revoke", help="end every enrollment of a module, as the operator "
                                      "(a lost or stolen module, a gateway that is gone)")
    p.add_argument("--state", required=True, help=state_help)
    p.add_argument("--module", required=True, help="module id, 32 hex digits")
    p = sub.add_parser("terminal", help="API keys for terminals (merchants), bound to the "
                                        "payee accounts they may collect for")
    actions = p.add_subparsers(dest="action", required=True)
    t = actions.add_parser("add", help="register a terminal; prints its API key once")
    t.add_argument("--state", required=True, help=state_help)
    t.add_argument("--name", required=True, help="terminal name (never reused)")
    t.add_argument("--payee", required=True, action="append",
                   help="an account it may collect for (repeat for more)")
    t = actions.add_parser("list", help="terminals, their state and payees")
    t.add_argument("--state", required=True, help=existing_state_help)
    t = actions.add_parser("revoke", help="revoke a terminal's key at once")
    t.add_argument("--state", required=True, help=existing_state_help)
    t.add_argument("--name", required=True, help="terminal name")
    p = sub.add_parser("audit", help="check the ledger's books: money conserved, one debit "
                                     "and one credit per settlement, counters never reused")
    p.add_argument("--state", required=True, help=existing_state_help)
    p = sub.add_parser("pay", help="a terminal: start a payment and wait for its outcome")
    p.add_argument("--api", default="http://127.0.0.1:8080", help="platform base URL")
    p.add_argument("--api-key", default=None,
                   help="the terminal's API key (default: $BLEGW_API_KEY)")
    p.add_argument("--payer", required=True, help="account that approves on its module")
    p.add_argument("--payee", required=True, help="account that receives")
    p.add_argument("--amount", type=int, required=True, help="minor units (cents)")
    p.add_argument("--currency", default="EUR", help="ISO 4217 code (default: EUR)")
    p.add_argument("--order", default=f"ORD-{int(time.time())}", help="order reference")
    p.add_argument("--description", default="payment", help="shown on the module")
    p.add_argument("--suite", choices=SUITE_NAMES, default="p256",
                   help="signature suite (default: p256)")
    p.add_argument("--key", default=None, help="Idempotency-Key (default: a new one)")
    from .device_cli import add_parser as add_device_parser
    add_device_parser(sub, state_help)
    from .ledger_cli import add_parser as add_ledger_parser
    add_ledger_parser(sub, existing_state_help)
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        stream=sys.stderr)
    run(args)


def run(args: argparse.Namespace) -> None:
    """Carry out one parsed command; a refusal is its message on stderr and exit status 1."""
    import asyncio

    from e2e import E2EError, PublicKey
    from mqtt_uplink import MqttSettingsError

    from .broker_setup import BrokerSetupError
    from .card_payments import CardPaymentError
    from .ledger import LedgerError
    from .platform import Platform, PlatformError

    try:
        if args.cmd == "serve":
            try:
                mqtt = mqtt_endpoint(args)
            except MqttSettingsError as exc:
                print(f"blegw-platform serve: {exc}", file=sys.stderr)
                sys.exit(2)
            sys.exit(asyncio.run(serve(args, mqtt)))
        if args.cmd == "broker-setup":
            if args.host is None:
                args.host = ["localhost", "127.0.0.1", "::1"]
            broker_setup(args)
            return
        if args.cmd == "broker-user":
            broker_user(args)
            return
        if args.cmd == "pay":
            sys.exit(asyncio.run(pay(args)))
        if args.cmd == "provision-card":
            provision_card(args)
            return
        if args.cmd == "ledger":
            from .ledger_cli import run as ledger_copy_command
            ledger_copy_command(args)
            return
        if args.cmd == "device":
            from .device_cli import run as device_command
            device_command(args)
            return
        if args.cmd in ("seed", "audit") or (args.cmd == "terminal" and args.action != "add"):
            ledger = open_ledger(Path(args.state), create=args.cmd == "seed")
            try:
                ledger_command(ledger, args)
            finally:
                ledger.close()
            return
        platform = Platform(Path(args.state))
        try:
            if args.cmd == "terminal":
                add_terminal_command(platform, args)
            elif args.cmd == "issue-cert":
                suite = suite_of(args.suite)
                now = int(time.time())
                cert = platform.cas[suite].issue(
                    PublicKey(suite, bytes.fromhex(args.public_key)),
                    bytes.fromhex(args.module_id), not_before=now - 300,
                    not_after=now + args.days * 86400)
                Path(args.out).write_bytes(cert.encode())
                print(f"issued {suite.name} certificate serial {cert.serial} -> {args.out}")
            elif args.cmd == "enrollment-code":
                code = asyncio.run(platform.enrollment_code(args.account, args.minutes * 60))
                print(code)
                print(f"one module may be paired for {args.account} with this code in the next "
                      f"{args.minutes} min (blegw pair ... --account {args.account} --code "
                      f"{code})", file=sys.stderr)
            elif args.cmd == "revoke":
                count = asyncio.run(platform.revoke(bytes.fromhex(args.module)))
                if not count:
                    print(f"blegw-platform: module {args.module} has no active enrollment",
                          file=sys.stderr)
                    sys.exit(1)
                print(f"module {args.module}: {count} enrollment(s) revoked")
            elif args.cmd == "enroll":
                cert = asyncio.run(platform.enroll(Path(args.cert).read_bytes(), args.account,
                                                   args.gateway))
                print(f"enrolled module {cert.module_id.hex()} ({cert.suite.name}) for "
                      f"{args.account} via {args.gateway}")
            elif args.cmd == "channel-keys":
                from .channel_keys import provision_channel_keys
                for cert in provision_channel_keys(Path(args.state), platform.cas,
                                                   platform.platform_id, days=args.days):
                    print(f"channel key {cert.suite.name}: certificate serial {cert.serial}, "
                          f"valid {args.days} days")
            elif args.cmd == "payment-mode":
                from .payment_modes import PaymentMode
                asyncio.run(platform.ledger.run(platform.ledger.balance, args.account))
                asyncio.run(platform.channels.modes.set(args.account, PaymentMode(
                    args.no_verification_up_to, args.fingerprint_from)))
                print(f"{args.account}: no verification up to {args.no_verification_up_to}, "
                      + (f"fingerprint from {args.fingerprint_from}, " if args.fingerprint_from
                         else "") + "PIN otherwise")
            elif args.cmd == "enroll-card":
                card = asyncio.run(platform.cards.enroll(bytes.fromhex(args.card_ref),
                                                         args.gateway))
                print(f"enrolled card {card.card_ref.hex()} for {card.account} via "
                      f"{card.gateway_id}")
        finally:
            platform.close()
    except (PlatformError, LedgerError, E2EError, BrokerSetupError, CardPaymentError,
            ValueError, OSError) as exc:
        print(f"blegw-platform: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
