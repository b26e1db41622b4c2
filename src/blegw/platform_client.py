"""The platform's HTTP API as the pairing tools use it: the CA keys, a module's enrollment and
its revocation (a card's enrollment is in ``card_pairing``).

Every answer is checked before use (status, JSON shape, key encoding); a refusal or an
unreachable platform is a :class:`ToolError` with exit code 13 (``ExitCode.PLATFORM``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout

from e2e import E2EError, PublicKey, Suite

from .tool_errors import ExitCode, ToolError

__all__ = ["HTTP_TIMEOUT", "enroll_module", "platform_cas", "platform_json", "revoke"]

HTTP_TIMEOUT = ClientTimeout(total=15)


async def platform_json(method: str, url: str, *, timeout: float, key: str | None = None,
                        body: Any = None) -> tuple[int, dict[str, Any]]:
    """One request to the platform (a terminal's or a till's, with its API key); its status and
    JSON answer. Unreachable, timed out or not a JSON object: :class:`ToolError` ``platform``."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with ClientSession(timeout=ClientTimeout(total=timeout)) as http, \
                http.request(method, url, json=body, headers=headers) as resp:
            answer = await resp.json(content_type=None)
            status = resp.status
    except (ClientError, TimeoutError, ValueError) as exc:
        raise ToolError(f"the platform at {url} did not answer: {exc or type(exc).__name__}",
                        ExitCode.PLATFORM) from exc
    if not isinstance(answer, dict):
        raise ToolError(f"the platform sent an unreadable answer ({status})", ExitCode.PLATFORM)
    return status, answer


async def platform_cas(http: ClientSession, url: str) -> dict[str, PublicKey]:
    try:
        async with http.get(f"{url}/v1/ca") as resp:
            if resp.status != 200:
                raise ToolError(f"the platform at {url} answered {resp.status} for its CA keys",
                                ExitCode.PLATFORM)
            raw = await resp.json()
        suites = {s.label: s for s in Suite}
        return {label: PublicKey(suites[label], bytes.fromhex(point))
                for label, point in raw.items() if label in suites}
    except (ClientError, OSError, TimeoutError) as exc:
        raise ToolError(f"cannot reach the platform at {url}: {exc}", ExitCode.PLATFORM) from exc
    except (ValueError, E2EError, AttributeError) as exc:
        raise ToolError(f"the platform at {url} sent unusable CA keys: {exc}",
                        ExitCode.PLATFORM) from exc


async def enroll_module(http: ClientSession, url: str, certificates: list[bytes],
                        account: str, gateway_id: str, code: str, token: str,
                        enrolled: list[str]) -> None:
    """Enroll each certificate with the account holder's one-time code; each module id the
    platform enrolled is appended to ``enrolled`` at once, so a later failure revokes it."""
    for certificate in certificates:
        try:
            async with http.post(f"{url}/v1/modules", json={
                    "certificate": certificate.hex(), "account": account,
                    "gateway_id": gateway_id, "enrollment_code": code,
                    "revocation_token": token}) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 201:
                    detail = body.get("detail") if isinstance(body, dict) else None
                    raise ToolError(f"the platform refused the enrollment: "
                                    f"{detail or resp.status}", ExitCode.PLATFORM)
        except (ClientError, OSError, TimeoutError, ValueError) as exc:
            raise ToolError(f"enrollment at {url} failed: {exc}", ExitCode.PLATFORM) from exc
        enrolled.append(str(body.get("module_id", "")))


async def revoke(http: ClientSession, url: str, module_id: str, token: str,
                  kind: str = "module") -> str | None:
    """Revoke the module's (or card's) enrollments made with ``token``; an error message, or
    None when done.

    404 (nothing active) counts as done: the platform no longer binds the module.
    """
    if not token:
        return ("this registry entry has no revocation token (paired by an older version); "
                "ask the platform operator to revoke the module")
    route = "cards" if kind == "card" else "modules"
    try:
        async with http.delete(f"{url}/v1/{route}/{module_id}",
                               headers={"Authorization": f"Bearer {token}"}) as resp:
            if resp.status in (200, 404):
                return None
            body = await resp.json(content_type=None)
            detail = body.get("detail") if isinstance(body, dict) else None
            return f"the platform refused the revocation: {detail or resp.status}"
    except (ClientError, OSError, TimeoutError) as exc:
        return f"cannot reach the platform at {url}: {exc}"
