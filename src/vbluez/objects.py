"""A small D-Bus object server: exported objects, properties, introspection, ObjectManager.

The virtual BlueZ answers raw D-Bus messages itself instead of using dbus-fast's
``ServiceInterface`` because it must know *which peer* called (BlueZ keeps discovery sessions,
notify sessions and agents per caller) and must be able to answer a call later, after talking to
another peer (a read on the central side waits for the peripheral's application).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Message, MessageType, Variant

from .errors import BluezError

__all__ = ["DBusObject", "Interface", "ObjectTree", "Prop"]

log = logging.getLogger("vbluez.objects")

PROPS_IFACE = "org.freedesktop.DBus.Properties"
INTROSPECT_IFACE = "org.freedesktop.DBus.Introspectable"
OM_IFACE = "org.freedesktop.DBus.ObjectManager"
PEER_IFACE = "org.freedesktop.DBus.Peer"

Handler = Callable[[Message], Awaitable[tuple[str, list[Any]]]]


@dataclass(slots=True)
class Prop:
    """One property: its D-Bus signature, a getter, and an optional setter.

    A getter returning ``None`` means "not present right now" (BlueZ omits optional properties such
    as RSSI when it has no value).
    """

    signature: str
    get: Callable[[], Any]
    set: Callable[[Any], None] | None = None


@dataclass(slots=True)
class Interface:
    name: str
    props: dict[str, Prop] = field(default_factory=dict)
    methods: dict[str, tuple[str, str, Handler]] = field(default_factory=dict)
    """member -> (in signature, out signature, async handler returning (out sig, body))."""

    def method(self, member: str, in_sig: str, out_sig: str, handler: Handler) -> None:
        self.methods[member] = (in_sig, out_sig, handler)

    def values(self) -> dict[str, Variant]:
        out: dict[str, Variant] = {}
        for name, prop in self.props.items():
            value = prop.get()
            if value is not None:
                out[name] = Variant(prop.signature, value)
        return out


@dataclass(slots=True)
class DBusObject:
    path: str
    interfaces: dict[str, Interface] = field(default_factory=dict)

    def add(self, iface: Interface) -> Interface:
        self.interfaces[iface.name] = iface
        return iface


class ObjectTree:
    """The exported objects, keyed by path, with the signals that keep clients in step."""

    def __init__(self, send: Callable[[Message], None]) -> None:
        self._send = send
        self.objects: dict[str, DBusObject] = {}

    # -- membership -------------------------------------------------------------------------
    def export(self, obj: DBusObject, *, announce: bool = True) -> None:
        self.objects[obj.path] = obj
        if announce:
            self._send(
                Message.new_signal(
                    "/", OM_IFACE, "InterfacesAdded", "oa{sa{sv}}",
                    [obj.path, {n: i.values() for n, i in obj.interfaces.items()}],
                )
            )

    def unexport(self, path: str) -> None:
        obj = self.objects.pop(path, None)
        if obj is None:
            return
        self._send(
            Message.new_signal(
                "/", OM_IFACE, "InterfacesRemoved", "oas", [path, list(obj.interfaces)]
            )
        )

    def unexport_tree(self, prefix: str) -> None:
        """Remove ``prefix`` and everything below it, deepest first (as BlueZ does)."""
        paths = [p for p in self.objects if p == prefix or p.startswith(prefix + "/")]
        for path in sorted(paths, key=len, reverse=True):
            self.unexport(path)

    def changed(self, path: str, iface: str, names: list[str], invalidated: list[str] | None = None,
                ) -> None:
        """Emit PropertiesChanged for ``names`` with their current values."""
        obj = self.objects.get(path)
        if obj is None:
            return
        interface = obj.interfaces[iface]
        values: dict[str, Variant] = {}
        gone = list(invalidated or [])
        for name in names:
            prop = interface.props[name]
            value = prop.get()
            if value is None:
                gone.append(name)
            else:
                values[name] = Variant(prop.signature, value)
        self._send(
            Message.new_signal(
                path, PROPS_IFACE, "PropertiesChanged", "sa{sv}as", [iface, values, gone]
            )
        )

    def managed_objects(self) -> dict[str, dict[str, dict[str, Variant]]]:
        return {
            path: {name: iface.values() for name, iface in obj.interfaces.items()}
            for path, obj in self.objects.items()
        }

    # -- standard interfaces -------------------------------------------------------------------
    def properties_call(self, msg: Message) -> tuple[str, list[Any]]:
        obj = self.objects.get(msg.path or "")
        if obj is None:
            raise BluezError("org.freedesktop.DBus.Error.UnknownObject", f"no object {msg.path}")
        member = msg.member
        if member == "GetAll":
            iface = obj.interfaces.get(msg.body[0])
            return "a{sv}", [iface.values() if iface else {}]
        if member not in ("Get", "Set"):
            raise BluezError("org.freedesktop.DBus.Error.UnknownMethod", f"Properties.{member}")
        iface_name, prop_name = msg.body[0], msg.body[1]
        iface = obj.interfaces.get(iface_name)
        if iface is None:
            raise BluezError("org.freedesktop.DBus.Error.InvalidArgs", "No such interface")
        prop = iface.props.get(prop_name)
        if prop is None:
            raise BluezError("org.freedesktop.DBus.Error.InvalidArgs", "No such property")
        if member == "Get":
            value = prop.get()
            if value is None:
                raise BluezError("org.freedesktop.DBus.Error.InvalidArgs", "No such property")
            return "v", [Variant(prop.signature, value)]
        if prop.set is None:
            raise BluezError("org.freedesktop.DBus.Error.PropertyReadOnly", "Property is read-only")
        variant = msg.body[2]
        if not isinstance(variant, Variant) or variant.signature != prop.signature:
            raise BluezError("org.bluez.Error.InvalidArguments", "Invalid arguments in method call")
        prop.set(variant.value)
        return "", []

    def introspect(self, path: str) -> str:
        obj = self.objects.get(path)
        parts = ['<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
                 ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n<node>']
        parts.append(_iface_xml(INTROSPECT_IFACE, {"Introspect": ("", "s")}, {}))
        if obj is not None:
            parts.append(_iface_xml(PROPS_IFACE, {
                "Get": ("ss", "v"), "Set": ("ssv", ""), "GetAll": ("s", "a{sv}")}, {},
                signals={"PropertiesChanged": "sa{sv}as"}))
            for iface in obj.interfaces.values():
                parts.append(_iface_xml(
                    iface.name,
                    {m: (i, o) for m, (i, o, _) in iface.methods.items()},
                    {n: (p.signature, p.set is not None) for n, p in iface.props.items()},
                ))
        if path == "/":
            parts.append(_iface_xml(OM_IFACE, {"GetManagedObjects": ("", "a{oa{sa{sv}}}")}, {},
                                    signals={"InterfacesAdded": "oa{sa{sv}}",
                                             "InterfacesRemoved": "oas"}))
        prefix = path.rstrip("/") + "/"
        children = sorted({p[len(prefix):].split("/", 1)[0]
                           for p in self.objects if p.startswith(prefix) and p != path})
        parts.extend(f'<node name="{c}"/>' for c in children)
        parts.append("</node>")
        return "\n".join(parts)

    def has_children(self, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        return any(p.startswith(prefix) for p in self.objects)


def _iface_xml(name: str, methods: dict[str, tuple[str, str]], props: dict[str, tuple[str, bool]],
               signals: dict[str, str] | None = None) -> str:
    out = [f'<interface name="{name}">']
    for member, (in_sig, out_sig) in methods.items():
        out.append(f'<method name="{member}">')
        out.extend(f'<arg type="{t}" direction="in"/>' for t in _split_sig(in_sig))
        out.extend(f'<arg type="{t}" direction="out"/>' for t in _split_sig(out_sig))
        out.append("</method>")
    for sig_name, sig in (signals or {}).items():
        out.append(f'<signal name="{sig_name}">')
        out.extend(f'<arg type="{t}"/>' for t in _split_sig(sig))
        out.append("</signal>")
    for prop, (sig, writable) in props.items():
        access = "readwrite" if writable else "read"
        out.append(f'<property name="{prop}" type="{sig}" access="{access}"/>')
    out.append("</interface>")
    return "".join(out)


def _split_sig(sig: str) -> list[str]:
    """Split a D-Bus signature into its complete types."""
    out: list[str] = []
    i = 0
    while i < len(sig):
        j = _end_of_type(sig, i)
        out.append(sig[i:j])
        i = j
    return out


def _end_of_type(sig: str, i: int) -> int:
    c = sig[i]
    if c == "a":
        return _end_of_type(sig, i + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        j = i + 1
        while sig[j] != close:
            j = _end_of_type(sig, j)
        return j + 1
    return i + 1


def error_reply(msg: Message, err: BluezError) -> Message:
    return Message.new_error(msg, err.name, err.text)


def is_call(msg: Message) -> bool:
    return msg.message_type == MessageType.METHOD_CALL
