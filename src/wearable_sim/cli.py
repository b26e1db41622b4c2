"""``wearable-sim``: run a simulated secure module, or manage its state.

    wearable-sim run --adapter hci1 --state DIR [--policy approve|decline|ask|button|never]
                     [--pairing-consent accept|reject|ask|none]
    wearable-sim run --kind card --card-state DIR ...   (a symmetric-key card, flow F-C)
    wearable-sim public-key --state DIR --suite p256|sm2     (the public key, hex; never private)
    wearable-sim install-cert --state DIR FILE               (a certificate issued by the CA)
    wearable-sim info --state DIR                 (module id, keys, counter, trusted platform)
    wearable-sim set-pin --state DIR              (the PIN, read from stdin; stored hashed)
    wearable-sim enroll-finger --state DIR        (a new template on the simulated sensor)

Payments over the secure channel ask for the PIN or the finger on the module's side: ``run
--pin-entry DIGITS --finger match|other`` is what the simulated keypad and sensor answer.

``run`` works on real BlueZ or on the virtual radio (``--bus`` or DBUS_SYSTEM_BUS_ADDRESS).
It prints one ``ready`` line when advertising and runs until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from bluez_pairing import Confirm
from e2e import E2EError, Suite
from terminal_input import ask_yes_no

from . import unit_cli
from .card_element import CardElement
from .card_module import CardModule
from .element import SecureElement
from .module import SimulatedModule
from .peripheral import PeripheralError
from .policy import UserPolicy, make_policy
from .state import ModuleState, StateError
from .verification import FingerprintSensor, PinStore, ScriptedInput

EXIT_FAILED, EXIT_USAGE = 1, 2


def _consent(answer: bool | None) -> Confirm:
    """The module's side of numeric comparison: print the code (its "display"), then answer."""

    async def confirm(device: str, code: int) -> bool:
        # Code 0 is BlueZ asking to authorize a just-works pairing: there is no code to show,
        # and printing "000000" would look like a code both sides compared.
        what = "pairing request (just works, no code to compare)" if code == 0 else \
            f"pairing code {code:06d}"
        if answer is not None:
            print(f"{what}: {'accepted' if answer else 'refused'}", flush=True)
            return answer
        return await ask_yes_no(f"{what}: accept on this module? [y/n] ")

    return confirm


_CONSENTS: dict[str, Confirm | None] = {"accept": _consent(True), "reject": _consent(False),
                                        "ask": _consent(None), "none": None}
_SUITES = {"p256": Suite.P256_SHA256, "sm2": Suite.SM2_SM3}


def _quiet_when_bluez_is_gone(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log writes that failed because BlueZ went away in one line, not as a traceback.

    When the bus dies under the module (BlueZ restarted, the virtual radio stopped), dbus-next
    fails the replies it was still writing; the module notices the lost bus and stops, so
    these are expected, not errors.
    """
    exc = context.get("exception")
    if isinstance(exc, (BrokenPipeError, ConnectionResetError, EOFError)):
        logging.getLogger("wearable_sim").info("D-Bus write after BlueZ went away: %r", exc)
        return
    loop.default_exception_handler(context)


async def _run(args: argparse.Namespace) -> int:
    if args.bus:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = args.bus
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.set_exception_handler(_quiet_when_bluez_is_gone)
    if args.kind == "card":
        return await _run_card(args, stop)
    element = SecureElement(ModuleState(Path(args.state)))
    policy = await make_policy(args.policy, Path(args.state), delay=args.delay)
    module = SimulatedModule(element, policy, **_on_air(args))
    if module.channel is not None:
        module.channel.owner = ScriptedInput(next_pin=args.pin_entry, next_finger=args.finger)
    unit_cli.present_finger(module.dynamic, element, args.finger)
    if not await _started(module, policy):
        return EXIT_FAILED
    if element.trust_anchors is None:
        print("wearable-sim: no trust anchors installed: every confirmation request will be "
              "refused until blegw-harness provision-module", file=sys.stderr, flush=True)
    print(f"ready module_id={element.module_id.hex()} adapter={args.adapter} "
          f"policy={policy.name}", flush=True)
    return await _serve(module, stop)


async def _run_card(args: argparse.Namespace, stop: asyncio.Event) -> int:
    """``run --kind card``: the card's element (state from ``provision-card``) on the air."""
    card = CardElement(Path(args.card_state))
    policy = await make_policy(args.policy, Path(args.card_state), delay=args.delay)
    module = CardModule(card, policy, **_on_air(args))
    if not await _started(module, policy):
        return EXIT_FAILED
    print(f"ready card_ref={card.facts().card_ref.hex()} kind=card adapter={args.adapter} "
          f"policy={policy.name}", flush=True)
    return await _serve(module, stop)


def _on_air(args: argparse.Namespace) -> dict[str, Any]:
    """How a module or a card appears on the air: the options both kinds take."""
    return {"adapter": args.adapter, "name": args.name, "pairing_mode": args.pairing_mode,
            "keepalive_interval": args.keepalive_interval,
            "pairing_consent": _CONSENTS[args.pairing_consent]}


async def _started(module: SimulatedModule, policy: UserPolicy) -> bool:
    """Start a module or a card on the air; False (the reason printed) if BlueZ refused."""
    try:
        await module.start()
    except PeripheralError as exc:
        await policy.close()
        print(f"wearable-sim: {exc}", file=sys.stderr)
        return False
    return True


async def _serve(module: SimulatedModule, stop: asyncio.Event) -> int:
    """Run until ``stop`` (Ctrl-C, SIGTERM) or the loss of BlueZ, then stop the module."""
    stopped = asyncio.create_task(stop.wait())
    lost = asyncio.create_task(module.peripheral.wait_bus_lost())
    unreachable = asyncio.create_task(module.peripheral.wait_unreachable())
    try:
        await asyncio.wait({stopped, lost, unreachable}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopped, lost, unreachable):
            task.cancel()
        await module.stop()
    if unreachable.done() and not unreachable.cancelled():
        print(f"wearable-sim: BlueZ came back but the module could not register again "
              f"({unreachable.result()}); stopped", file=sys.stderr)
        return EXIT_FAILED
    if lost.done() and not lost.cancelled():
        print(f"wearable-sim: lost the D-Bus connection to BlueZ ({lost.result()}); stopped",
              file=sys.stderr)
        return EXIT_FAILED
    return 0


def _trusted_platform(element: SecureElement) -> str:
    anchors = element.trust_anchors
    if anchors is None:
        return ("none: needs provisioning (blegw-harness provision-module); every "
                "confirmation request is refused until then")
    return anchors.platform_id.hex()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="wearable-sim",
                                     description=__doc__.split("\n")[0].replace("``", ""))
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="advertise and answer requests")
    run.add_argument("--adapter", default="hci1")
    run.add_argument("--kind", default="module", choices=["module", "card"],
                     help="a public-key module (default) or a symmetric-key card")
    run.add_argument("--state", help="state directory (keys, certs, counter); a module's")
    run.add_argument("--card-state", help="a card's state directory (blegw-platform "
                                         "provision-card)")
    run.add_argument("--name", default="wearable-sim")
    run.add_argument("--policy", default="approve",
                     choices=["approve", "decline", "ask", "button", "never"])
    run.add_argument("--delay", type=float, default=0.0, help="seconds before approve/decline")
    run.add_argument("--pairing-mode", action="store_true")
    run.add_argument("--pairing-consent", default="accept", choices=sorted(_CONSENTS),
                     help="answer to a gateway's numeric-comparison code (none: no agent, "
                          "pairs as just works)")
    run.add_argument("--keepalive-interval", type=float, default=0.5)
    run.add_argument("--bus", default=None, help="D-Bus address (default: the system bus)")
    run.add_argument("--pin-entry", default="", metavar="DIGITS",
                     help="what the owner types when a payment asks for the PIN")
    run.add_argument("--finger", default="match", choices=["match", "other"],
                     help="the finger presented when a payment asks for one")
    run.add_argument("-v", "--verbose", action="store_true")
    pin = sub.add_parser("set-pin", help="set the owner's PIN (read from stdin), unlocking it")
    pin.add_argument("--state", required=True)
    finger = sub.add_parser("enroll-finger", help="enroll the owner's finger on the sensor")
    finger.add_argument("--state", required=True)
    pk = sub.add_parser("public-key", help="print a public key (hex SEC1)")
    pk.add_argument("--state", required=True)
    pk.add_argument("--suite", choices=sorted(_SUITES), required=True)
    cert = sub.add_parser("install-cert", help="install a certificate issued by the CA")
    cert.add_argument("--state", required=True)
    cert.add_argument("file")
    unit_cli.add_parsers(sub)
    info = sub.add_parser("info", help="module id, suites, certificates, counter, trusted "
                                       "platform")
    info.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else
                        logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.cmd == "run" and not (args.card_state if args.kind == "card" else args.state):
        parser.error("run --kind card needs --card-state; a module needs --state")
    try:
        if args.cmd == "run":
            sys.exit(asyncio.run(_run(args)))
        element = SecureElement(ModuleState(Path(args.state)))
        if args.cmd in unit_cli.COMMANDS:
            unit_cli.run(args, element)
        elif args.cmd == "public-key":
            print(element.public_key(_SUITES[args.suite]).encode().hex())
        elif args.cmd == "set-pin":
            PinStore(element.state).set(sys.stdin.readline().strip())
            print("PIN set")
        elif args.cmd == "enroll-finger":
            FingerprintSensor(element.state).enroll()
            print("finger enrolled")
        elif args.cmd == "install-cert":
            installed = element.install_certificate(Path(args.file).read_bytes())
            print(f"installed {installed.suite.name} certificate serial {installed.serial}")
        else:
            print(json.dumps({
                "module_id": element.module_id.hex(),
                "suites": [s.name for s in element.suites],
                "certificates": [s.name for s in element.suites if element.certificate(s)],
                "counter": element.state.counter(),
                "trusted_platform": _trusted_platform(element)}, indent=2))
    except (StateError, E2EError, ValueError, OSError) as exc:
        print(f"wearable-sim: {exc}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
