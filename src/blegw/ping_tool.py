"""``blegw ping``: round trips over the link, through the daemon when it runs (it owns the
link), else over a link of this command's own."""

from __future__ import annotations

import json

from .config import GatewayConfig
from .daemon_client import daemon_request
from .link import LinkError, ModuleLink, ModuleUnreachable
from .pairing_tool import ANSWER_TIMEOUT
from .registry import RegistryEntry
from .registry_tools import registry_entry
from .tool_errors import ExitCode, ToolError, say

__all__ = ["ping"]


async def ping(config: GatewayConfig, key: str, count: int, as_json: bool) -> int:
    """Round trips over the link: through the daemon when it runs (it owns the link)."""
    entry = registry_entry(config, key)
    times: list[float] = []
    via = "daemon"
    for _ in range(count):
        try:
            answer = await daemon_request(config, {"cmd": "ping", "module": entry.module_id},
                                          timeout=30)
        except ToolError as exc:
            if exc.exit_code is not ExitCode.DAEMON or times:
                raise
            via = "direct"
            times = await _ping_direct(config, entry, count)
            break
        if not answer.get("ok"):
            raise ToolError(f"ping failed: {answer.get('error')}", ExitCode.TIMEOUT)
        times.append(float(answer["round_trip"]))
    ordered = sorted(times)
    summary = {"module_id": entry.module_id, "name": entry.name, "via": via,
               "count": len(times), "round_trips_ms": [round(t * 1000, 2) for t in times],
               "median_ms": round(ordered[len(ordered) // 2] * 1000, 2),
               "max_ms": round(ordered[-1] * 1000, 2)}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{entry.name} ({entry.address}) via {via}: {len(times)} round trips, median "
              f"{summary['median_ms']} ms, max {summary['max_ms']} ms")
    return ExitCode.OK


async def _ping_direct(config: GatewayConfig, entry: RegistryEntry, count: int) -> list[float]:
    say("the daemon is not running: pinging over a link of our own")
    link = ModuleLink(entry.address, config.adapter, connect_timeout=config.connect_timeout)
    try:
        return [(await link.ping(ANSWER_TIMEOUT)).radio for _ in range(count)]
    except ModuleUnreachable as exc:
        raise ToolError(f"{entry.name} ({entry.address}): {exc}", ExitCode.NOT_FOUND) from exc
    except LinkError as exc:
        raise ToolError(f"ping failed: {exc}", ExitCode.TIMEOUT) from exc
    finally:
        await link.close()
