"""One worker process's jobs, run in the caller's event loop.

``mcep worker`` runs them on their own; ``mcep serve`` on the embedded default and ``mcep demo``
run them beside the API in one process. Either way the caller owns the runtime and the
provider adapters (and closes them) and sets ``stop`` to end the work: each job then finishes
its current step (the dispatch job, its current batch) and returns.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence

from mcep.channels.base import ChannelAdapter, Platform
from mcep.runtime import Runtime
from mcep.worker.base import Job, WorkerContext
from mcep.worker.jobs import JOBS
from mcep.worker.runner import run_jobs

OWNER_LENGTH = 100  # messages.lease_owner


class UnknownJob(ValueError):
    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(
            f"no such job: {', '.join(names)} (known: {', '.join(sorted(JOBS)) or 'none'})"
        )
        self.names = list(names)


def default_owner() -> str:
    """``hostname:pid:random``: unique per process, and says where a lease came from."""
    suffix = f":{os.getpid()}:{secrets.token_hex(4)}"
    return socket.gethostname()[: OWNER_LENGTH - len(suffix)] + suffix


def build_jobs(
    names: Sequence[str], *, factories: Mapping[str, Callable[[], Job]] | None = None
) -> list[Job]:
    """One job per name, from ``factories`` first (a command's configured jobs), then from the
    registry; an unknown name is an error naming the known ones."""
    chosen = {**JOBS, **(factories or {})}
    unknown = [name for name in names if name not in chosen]
    if unknown:
        raise UnknownJob(unknown)
    return [chosen[name]() for name in dict.fromkeys(names)]


async def run_worker(
    runtime: Runtime,
    *,
    jobs: list[str],
    adapters: Mapping[Platform, ChannelAdapter],
    stop: asyncio.Event,
    owner: str | None = None,
) -> None:
    """Run the named jobs (see ``mcep.worker.jobs.JOBS``) until ``stop`` is set."""
    await run_built(runtime, build_jobs(jobs), adapters=adapters, stop=stop, owner=owner)


async def run_built(
    runtime: Runtime,
    jobs: Sequence[Job],
    *,
    adapters: Mapping[Platform, ChannelAdapter],
    stop: asyncio.Event,
    owner: str | None = None,
) -> None:
    """Run already-built jobs until ``stop`` is set."""
    context = WorkerContext(runtime=runtime, owner=owner or default_owner(), adapters=adapters)
    await run_jobs(context, jobs, stop)
