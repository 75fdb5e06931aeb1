"""Run a set of jobs side by side until asked to stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from mcep.worker.base import Job, WorkerContext

log = logging.getLogger(__name__)


async def run_jobs(context: WorkerContext, jobs: Iterable[Job], stop: asyncio.Event) -> None:
    """Start every job; when ``stop`` is set, wait for each to finish its current step."""
    tasks = [asyncio.create_task(job.run(context, stop), name=job.name) for job in jobs]
    try:
        await stop.wait()
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("job %s ended with %r", task.get_name(), result)
