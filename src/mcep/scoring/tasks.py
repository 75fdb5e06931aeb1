"""Worker jobs of the scoring domain: ``scoring`` (real-time scores) and ``retraining``.

Each step opens its own session and commits at the end, so a crash mid-step rolls the whole
step back (cursor included) and the next step redoes it.
"""

from __future__ import annotations

import asyncio
import logging

from mcep.runtime import Runtime
from mcep.scoring import realtime, retraining
from mcep.scoring.champion import ModelCache
from mcep.scoring.errors import ScoringInputError
from mcep.scoring.models import GLOBAL_SCOPE
from mcep.scoring.realtime import BatchResult, GapGuard
from mcep.scoring.settings import ScoringSettings
from mcep.scoring.training import TrainingConfig
from mcep.worker.base import WorkerContext, every

log = logging.getLogger(__name__)
RETRAIN_ACTOR = "worker:retraining"


class ScoringJob:
    """Keeps every prospect's features and score current as events arrive."""

    name = "scoring"

    def __init__(self, settings: ScoringSettings | None = None) -> None:
        self._settings = settings

    async def run(self, context: WorkerContext, stop: asyncio.Event) -> None:
        settings = self._settings or ScoringSettings()
        scorer = BatchScorer(context, settings)
        await every(settings.poll_interval, stop, scorer.step, name=self.name)


class BatchScorer:
    """One step: a batch of events, or when the log is drained, a batch of stale scores."""

    def __init__(self, context: WorkerContext, settings: ScoringSettings) -> None:
        self.context = context
        self.settings = settings
        self.models = ModelCache(settings.model_name, max_age=settings.model_refresh)
        self.guard = GapGuard(settings.gap_timeout)

    async def step(self) -> int:
        """Work done (events consumed plus prospects rescored); 0 when idle."""
        result = await self.events()
        if result.events or result.busy:
            return result.events
        return (await self.rescore()).scored

    async def events(self) -> BatchResult:
        runtime: Runtime = self.context.runtime
        async with runtime.sessions() as session, session.begin():
            return await realtime.process_events(
                session,
                keyring=runtime.keyring,
                models=self.models,
                now=self.context.clock(),
                batch_size=self.settings.batch_size,
                guard=self.guard,
            )

    async def rescore(self) -> BatchResult:
        async with self.context.runtime.sessions() as session, session.begin():
            return await realtime.rescore_stale(
                session,
                models=self.models,
                now=self.context.clock(),
                limit=self.settings.rescore_batch,
            )


class RetrainingJob:
    """Trains a challenger from advisor feedback every ``retrain_interval`` seconds (off when
    unset) and promotes it only if it beats the champion on the same hold-out. It trains only
    when feedback arrived since the last challenger; switch it on for one worker process."""

    name = "retraining"

    def __init__(self, settings: ScoringSettings | None = None) -> None:
        self._settings = settings

    async def run(self, context: WorkerContext, stop: asyncio.Event) -> None:
        settings = self._settings or ScoringSettings()
        if settings.retrain_interval is None:
            log.info("retraining is off (set MCEP_SCORING_RETRAIN_INTERVAL to switch it on)")
            await stop.wait()
            return

        async def step() -> int:
            await retrain_once(context.runtime, settings)
            return 0

        await every(settings.retrain_interval, stop, step, name=self.name)


async def retrain_once(
    runtime: Runtime, settings: ScoringSettings, *, config: TrainingConfig | None = None
) -> retraining.RetrainResult | None:
    """The periodic step: ``None`` when no feedback arrived since the last challenger, or when
    there are too few labels yet."""
    async with runtime.sessions() as session:
        if not await retraining.labels_changed_since_last_challenge(session, settings.model_name):
            return None
    try:
        outcome = await train_on_feedback(runtime, settings, config=config, actor=RETRAIN_ACTOR)
    except ScoringInputError as exc:
        log.info("retraining skipped: %s", exc.message)
        return None
    log.info(
        "retraining: version %s %s (%s)",
        outcome.version,
        "promoted" if outcome.promoted else "kept as challenger",
        outcome.comparison.reason,
    )
    return outcome


async def train_on_feedback(
    runtime: Runtime,
    settings: ScoringSettings,
    *,
    config: TrainingConfig | None = None,
    actor: str,
) -> retraining.RetrainResult:
    """Train a challenger on every prospect's latest verdict, register it, audit the comparison
    with the global champion, and promote it if it wins. Too few labels is a
    :class:`ScoringInputError`."""
    models = ModelCache(settings.model_name, max_age=0)
    async with runtime.sessions() as session:
        examples = await retraining.load_examples(session)
        champion = (await models.champions(session)).by_scope.get(GLOBAL_SCOPE)
    # Training takes seconds of CPU: off the event loop, outside any transaction.
    result = await asyncio.to_thread(
        retraining.challenge,
        examples,
        champion=champion,
        config=config,
        min_gain=settings.retrain_min_gain,
        min_auc=settings.retrain_min_auc,
    )
    async with runtime.sessions() as session, session.begin():
        return await retraining.record(session, result, actor=actor, name=settings.model_name)
