"""What went wrong on a module's link, in words an operator can act on.

Sans-IO: a failure (a BlueZ error as bleak reports it, a timeout, the link's own errors) becomes
a :class:`Fault` with a stable code for status and metrics, a plain-language cause and advice,
worded the way bleak-retry-connector words its errors, and whether a connect that failed this
way is worth retrying. Its retry classes follow bleak-retry-connector: ``InProgress``,
``le-connection-abort-by-local``, "Software caused connection abort", ``br-connection-canceled``
and connect timeouts are transient; a missing adapter, a refused bond or a device that is not
the module are not, as retrying cannot change them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Fault", "classify", "internal_error", "is_invalid_handle", "is_key_missing",
           "is_security_failure", "is_stale_cache", "key_missing", "link_lost", "module_error",
           "module_silent", "not_seen", "protocol_error", "stale_cache", "wrong_profile"]


@dataclass(frozen=True, slots=True)
class Fault:
    code: str
    """Stable identifier (status, logs, metrics): ``abort_by_local``, ``connect_timeout``..."""
    cause: str
    advice: str
    transient: bool
    """A connect that failed this way may well succeed if tried again at once."""

    def text(self) -> str:
        return f"{self.cause}. {self.advice}"


def _module(address: str) -> str:
    return f"module {address}" if address else "the module"


# The link's own failures: it knows which one it met, so it names the fault where it raises.

def not_seen(adapter: str, address: str) -> Fault:
    return Fault("not_seen",
                 f"{_module(address)} not seen on {adapter}: it is not advertising within range",
                 "check that it is on, charged and near the gateway", False)


def wrong_profile(address: str) -> Fault:
    return Fault("wrong_profile",
                 f"the device at {address or 'the module address'} does not offer the"
                 " module profile (a stale GATT cache or another device)",
                 "run `blegw forget` and pair the module again", False)


def stale_cache(address: str) -> Fault:
    return Fault("stale_cache",
                 f"BlueZ's copy of the GATT database of {_module(address)} is out of date"
                 " (the module restarted with another layout)",
                 "rediscovering; if this repeats run `blegw forget` and pair the module"
                 " again, which clears BlueZ's cache", True)


def module_silent(address: str) -> Fault:
    return Fault("module_silent", f"{_module(address)} stopped answering during a request",
                 "the next request reconnects; restart the module if this repeats", False)


def link_lost(address: str) -> Fault:
    return Fault("link_lost", f"the link to {_module(address)} was lost (out of range, or the"
                 " module restarted)", "keep it near the gateway; the next request"
                 " reconnects", False)


def module_error(address: str, code: str) -> Fault:
    """The module answered an ERROR frame with ``code`` (its name)."""
    return Fault("module_error", f"{_module(address)} refused the request ({code})",
                 "see the module's own log", False)


def protocol_error(address: str) -> Fault:
    return Fault("protocol_error", f"{_module(address)} sent frames outside the link profile",
                 "update its firmware, or pair a genuine module", False)


def internal_error(error: BaseException) -> Fault:
    """An exchange ended in an exception nobody expected: a bug in the gateway."""
    return Fault("internal_error", f"internal error: {type(error).__name__}",
                 "a bug in the gateway: report it with the daemon's log", False)


def is_invalid_handle(text: str) -> bool:
    """ATT error 0x01 (Invalid Handle) in BlueZ's or bleak's words: a handle from a GATT
    database the peer no longer has."""
    lower = text.lower()
    return "att error: 0x01" in lower or "invalid handle" in lower


def is_stale_cache(text: str) -> bool:
    """An error that means the central's GATT cache is stale: Invalid Handle on a cached
    handle, or an object BlueZ already removed after rediscovering (bleak still holds its
    path). One test of the words, for the link's recovery and the operator's fault alike."""
    lower = text.lower()
    return is_invalid_handle(lower) or "unknownobject" in lower or "unknown object" in lower \
        or "doesn't exist" in lower


def is_key_missing(text: str) -> bool:
    """The peer has no key for the bond the central holds: BlueZ's encryption with the stored
    key failed with "PIN or Key Missing" and the link went down on an authentication failure
    (``br-connection-key-missing``, ``org.bluez.Reason.Authentication``)."""
    lower = text.lower()
    return "key-missing" in lower or "key missing" in lower \
        or "reason.authentication" in lower


def is_security_failure(text: str) -> bool:
    """BlueZ refused the link's security: the bond is gone or does not match on one side."""
    lower = text.lower()
    return is_key_missing(lower) or "not paired" in lower or "notpermitted" in lower \
        or "authentication" in lower or "insufficient" in lower


def key_missing(address: str) -> Fault:
    return Fault("key_missing", f"{_module(address)} no longer has the bond's key (it was"
                 " reset or its bonds were wiped): encryption failed with PIN or Key Missing",
                 "run `blegw forget` and pair the module again", False)


def classify(error: BaseException | str, adapter: str, address: str = "") -> Fault:
    """The fault behind ``error``: an exception from bleak or BlueZ, or its text (the link's
    own failures carry theirs, made by the constructors above)."""
    if isinstance(error, BaseException):
        text = f"{type(error).__name__} {error!r} {error}"
        timed_out = isinstance(error, TimeoutError)
    else:
        text, timed_out = error, False
    lower = text.lower()
    module = _module(address)
    if "slots" in lower:
        return Fault("out_of_slots", f"adapter {adapter} is out of connection slots",
                     "disconnect other devices from it, or give the gateway its own adapter",
                     False)
    if "abort-by-local" in lower:
        return Fault("abort_by_local",
                     f"adapter {adapter} aborted the connection (le-connection-abort-by-local),"
                     " usually radio interference or a busy adapter",
                     "retrying; if it keeps happening, move the gateway closer to the module"
                     " and away from USB 3 ports and Wi-Fi antennas", True)
    if "inprogress" in lower or "in progress" in lower:
        return Fault("in_progress",
                     f"BlueZ was already busy with {module} (InProgress)",
                     "retrying; if it persists another program is using the module: stop it"
                     " or restart bluetoothd", True)
    if is_key_missing(lower):
        return key_missing(address)
    if "br-connection-canceled" in lower or "software caused connection abort" in lower:
        return Fault("connect_canceled", f"the connection attempt to {module} was canceled",
                     "retrying", True)
    if "adapter" in lower and "not found" in lower:
        return Fault("adapter_missing", f"Bluetooth adapter {adapter} not found",
                     "is it plugged in? check `bluetoothctl list` and that bluetoothd runs",
                     False)
    if "notready" in lower or "not ready" in lower or "not powered" in lower \
            or "powered off" in lower:
        return Fault("adapter_off", f"Bluetooth adapter {adapter} is powered off",
                     "power it on (`bluetoothctl power on`; check `rfkill list`)", False)
    if is_stale_cache(lower):
        return stale_cache(address)
    if "att transaction timeout" in lower:
        return Fault("module_silent", f"{module} stopped answering (ATT timeout)",
                     "the next request reconnects; restart the module if this repeats", False)
    if timed_out or ("connect" in lower and ("timeout" in lower or "timed out" in lower)):
        return Fault("connect_timeout", f"{module} did not complete the connection in time",
                     "it may be out of range, switched off or connected to another device",
                     True)
    if "not paired" in lower or "notpermitted" in lower or "authentication" in lower \
            or "insufficient" in lower:
        return Fault("bond_refused", f"{module} refused the link's security: a bond was lost"
                     " on one side", "pair it again with `blegw pair`", False)
    if "lost" in lower or "not connected" in lower or "disconnect" in lower:
        return link_lost(address)
    return Fault("other", f"{module}: {str(error) or type(error).__name__}",
                 "run the daemon with --log-level debug for details", False)
