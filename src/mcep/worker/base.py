"""What a worker job is, and what it is handed.

A job is a small object with a ``name`` and an ``async run(context, stop)`` that loops until
``stop`` is set. Jobs share nothing in memory with other processes: every fact lives in the
database, so any number of worker processes on any number of machines can run the same jobs
(they coordinate through row locks and leases, and Redis for rate limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from mcep.channels.base import ChannelAdapter, Platform
from mcep.runtime import Runtime

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class WorkerContext:
    """Everything a job may use, built once per process by the composition root."""

    runtime: Runtime
    owner: str
    """This process's identity, written on the leases it takes."""
    adapters: Mapping[Platform, ChannelAdapter] = field(default_factory=dict)
    clock: Callable[[], datetime] = utc_now


class Job(Protocol):
    name: str

    async def run(self, context: WorkerContext, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; survive (log and retry) any single failure."""
        ...


async def every(
    interval: float,
    stop: asyncio.Event,
    step: Callable[[], Awaitable[int]],
    *,
    name: str,
    busy_interval: float = 0.0,
) -> None:
    """Call ``step`` until ``stop``: again at once (after ``busy_interval``) while it reports
    work done, every ``interval`` seconds while idle. A failing step is logged, not fatal."""
    while not stop.is_set():
        try:
            done = await step()
        except Exception:
            log.exception("job %s failed; retrying in %.1f s", name, interval)
            done = 0
        wait = busy_interval if done else interval
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
