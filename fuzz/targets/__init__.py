"""The fuzz targets: one module per parser of untrusted bytes, each exposing ``TARGET``.

Modules are imported by name only when run, so each target's process imports (and atheris
instruments) just what that target needs. None of them needs a radio, vbluez or D-Bus.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["NAMES", "module_for"]

NAMES = (
    "framing",
    "frame_payloads",
    "module_info",
    "advert",
    "envelope",
    "certificate",
    "relay_request",
    "relay_response",
    "code_notice",
    "daemon_request",
    "platform_response",
    "gateway_answer",
    "module_control_point",
    "transaction_code",
    "code_image",
    "channel",
    "card_message",
    "dynamic_code",
    "dynamic_unit",
)


def module_for(name: str) -> ModuleType:
    if name not in NAMES:
        raise KeyError(f"no fuzz target {name!r}; targets: {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}")
