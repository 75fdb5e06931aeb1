"""One aiohttp session per provider, with timeouts and connection limits.

The composition root opens these at start-up (inside the running event loop) and hands each
adapter its provider's session; nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp

from mcep.channels.base import Platform

USER_AGENT = "mcep/0.1"


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Timeouts (seconds) and connection-pool limits of one provider's session.

    ``total_timeout`` bounds a whole request; long polls (Telegram ``getUpdates``) pass their
    own per-request timeout on top of it.
    """

    total_timeout: float = 30.0
    connect_timeout: float = 5.0
    read_timeout: float | None = None
    max_connections: int = 100
    max_connections_per_host: int = 0
    keepalive_timeout: float = 30.0


DEFAULT_LIMITS: Mapping[Platform, HttpLimits] = {
    Platform.WHATSAPP: HttpLimits(total_timeout=30.0, max_connections=200),
    Platform.TELEGRAM: HttpLimits(total_timeout=30.0, max_connections=100),
    Platform.SIGNAL: HttpLimits(total_timeout=60.0, max_connections=20),
    # BlueBubbles sends have been seen to hang about two minutes before failing.
    Platform.IMESSAGE: HttpLimits(total_timeout=130.0, max_connections=10),
}


def create_session(limits: HttpLimits | None = None) -> aiohttp.ClientSession:
    """A client session with these limits; call from inside the running event loop."""
    limits = limits or HttpLimits()
    connector = aiohttp.TCPConnector(
        limit=limits.max_connections,
        limit_per_host=limits.max_connections_per_host,
        keepalive_timeout=limits.keepalive_timeout,
    )
    timeout = aiohttp.ClientTimeout(
        total=limits.total_timeout,
        connect=limits.connect_timeout,
        sock_read=limits.read_timeout,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
        raise_for_status=False,
    )


def open_sessions(
    limits: Mapping[Platform, HttpLimits] | None = None,
) -> dict[Platform, aiohttp.ClientSession]:
    """One session per provider (defaults from :data:`DEFAULT_LIMITS`, overridable)."""
    chosen = {**DEFAULT_LIMITS, **(limits or {})}
    return {platform: create_session(chosen[platform]) for platform in Platform}


async def close_sessions(sessions: Mapping[Platform, aiohttp.ClientSession]) -> None:
    """Close every session (idempotent)."""
    for session in sessions.values():
        if not session.closed:
            await session.close()


@contextlib.asynccontextmanager
async def provider_sessions(
    limits: Mapping[Platform, HttpLimits] | None = None,
) -> AsyncIterator[dict[Platform, aiohttp.ClientSession]]:
    """Open one session per provider for the duration of the block."""
    sessions = open_sessions(limits)
    try:
        yield sessions
    finally:
        await close_sessions(sessions)
