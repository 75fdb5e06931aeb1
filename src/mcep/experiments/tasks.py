"""The experiments worker job: looks at every running test-then-send or Thompson experiment.

Each experiment is evaluated in its own transaction (committed here, at the job's edge), so
one experiment's failure never holds back another's decision.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from mcep.experiments import evaluation, repository
from mcep.experiments.design import Mode
from mcep.runtime import Runtime
from mcep.worker.base import WorkerContext, every

log = logging.getLogger(__name__)
INTERVAL_SECONDS = 30.0
_EVALUATED = (Mode.TEST_THEN_SEND, Mode.THOMPSON)


async def evaluate_running(runtime: Runtime, *, now: datetime) -> int:
    """One pass over the running experiments; returns how many changed."""
    async with runtime.sessions() as session:
        ids = await repository.running_ids(session, _EVALUATED)
    changed = 0
    for experiment_id in ids:
        try:
            async with runtime.sessions() as session, session.begin():
                changed += await evaluation.evaluate(
                    session, experiment_id, keyring=runtime.keyring, now=now
                )
        except Exception:
            log.exception(
                "could not evaluate experiment %s; it is retried next pass", experiment_id
            )
    return changed


class ExperimentsJob:
    """Decides test-then-send experiments and releases their remainder; paces Thompson
    batches."""

    name = "experiments"

    def __init__(self, interval: float = INTERVAL_SECONDS) -> None:
        self.interval = interval

    async def step(self, context: WorkerContext) -> int:
        return await evaluate_running(context.runtime, now=context.clock())

    async def run(self, context: WorkerContext, stop: asyncio.Event) -> None:
        await every(self.interval, stop, lambda: self.step(context), name=self.name)
