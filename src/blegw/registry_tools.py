"""``blegw forget`` and ``blegw rename``: what the operator changes in the registry, and the
look-up of a paired module by id, address or name that ``ping`` shares.

``forget`` revokes at the platform first and only then removes the bond and the entry: a module
still enrolled but forgotten here could not be revoked later from this gateway.
"""

from __future__ import annotations

from .config import GatewayConfig
from .daemon_client import announce_pairing, open_registry, reload_registry
from .registry import RegistryEntry, RegistryError
from .tool_errors import ExitCode, ToolError, say

__all__ = ["forget", "registry_entry", "rename"]


def registry_entry(config: GatewayConfig, key: str) -> RegistryEntry:
    """The paired module ``key`` names (id, address or name); exit 10 if none does."""
    try:
        entry = open_registry(config).find(key)
    except RegistryError as exc:
        raise ToolError(str(exc)) from exc
    if entry is None:
        raise ToolError(f"no paired module matches {key!r} (see 'blegw devices')",
                        ExitCode.NOT_FOUND)
    return entry


async def forget(config: GatewayConfig, key: str, *, force: bool = False) -> int:
    """Revoke at the platform first; only then remove the bond and the registry entry."""
    from aiohttp import ClientSession

    from .pairing_tool import remove_bond
    from .platform_client import HTTP_TIMEOUT, revoke

    entry = registry_entry(config, key)
    async with ClientSession(timeout=HTTP_TIMEOUT) as http:
        problem = await revoke(http, config.platform_url, entry.module_id,
                               entry.revocation_token, entry.kind)
    if problem and not force:
        raise ToolError(f"{problem}; nothing was changed (retry, or pass --force to forget the "
                        "module here anyway)", ExitCode.PLATFORM)
    # The daemon must not take the bond's removal for a lost bond (a needs-re-pairing alarm).
    await announce_pairing(config, entry.address, True)
    try:
        bond = await remove_bond(config.adapter, entry.address)
    except ToolError as exc:
        raise ToolError(f"{exc}; the registry entry is kept (run forget again)") from exc
    try:
        open_registry(config).remove(entry.module_id)
    except (RegistryError, OSError) as exc:
        raise ToolError(f"cannot update {config.registry}: {exc}") from exc
    print(f"forgot {entry.name} ({entry.module_id}): enrollment "
          f"{'NOT revoked' if problem else 'revoked'}, bond {'removed' if bond else 'absent'}, "
          "registry entry removed")
    say(await reload_registry(config, entry.module_id, serving=False))
    if problem:
        say(f"warning: {problem}")
        return ExitCode.PLATFORM
    return ExitCode.OK


def rename(config: GatewayConfig, key: str, name: str) -> int:
    entry = registry_entry(config, key)
    if not name.strip():
        raise ToolError("the new name is empty", ExitCode.USAGE)
    try:
        open_registry(config).rename(entry.module_id, name)
    except (RegistryError, OSError) as exc:
        raise ToolError(f"cannot update {config.registry}: {exc}") from exc
    print(f"{entry.module_id}: renamed {entry.name!r} to {name!r}")
    return ExitCode.OK
