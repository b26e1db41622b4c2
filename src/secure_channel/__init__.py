"""A mutually authenticated secure channel between a module and the platform (seed flow F-B).

Sans-IO: the handshake (:mod:`.handshake`) and the records (:mod:`.records`) are state machines
fed whole units; the gateway between them only moves bytes. See docs/secure-channel.md.
"""

from __future__ import annotations

from .errors import ChannelError, ChannelErrorCode
from .handshake import (
    USAGE_CHANNEL,
    ChannelInitiator,
    ChannelResponder,
    ModuleCredentials,
    PlatformCredentials,
    ResponderPolicy,
    Resumption,
    SessionCache,
)
from .records import Session
from .suites import ChannelSuite
from .wire import encode_error

__all__ = ["USAGE_CHANNEL", "ChannelError", "ChannelErrorCode", "ChannelInitiator",
           "ChannelResponder", "ChannelSuite", "ModuleCredentials", "PlatformCredentials",
           "ResponderPolicy", "Resumption", "Session", "SessionCache", "encode_error"]
