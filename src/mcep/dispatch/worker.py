"""The dispatch worker: claim due messages in batches, send them, record what happened.

One batch is three transactions:

1. claim up to ``batch`` due messages with a lease and read what their sends need (the
   recipients, consents, devices, retry rules, WhatsApp windows); commit, so the lease holds;
2. no transaction while the provider calls run, concurrently up to ``concurrency``, each
   after the rate limits said yes (a message that must wait goes back in line, due when the
   limit frees up, without counting as a failure);
3. record every outcome set-based (see :mod:`mcep.dispatch.recording`), report refused devices
   to the fleet and move their messages to other devices, opt out whoever the provider says
   opted out; commit. Then campaigns with nothing left waiting or in flight are completed.

A worker that dies between 1 and 3 leaves its messages leased; the ``leases`` job puts them
back in line when the lease runs out, with a new attempt number. A provider that accepted a
send just before the worker died will see that message again: the only duplicates possible.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from limits.aio.strategies import MovingWindowRateLimiter, RateLimiter
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.channels.base import Platform, RetryLater
from mcep.contacts.crypto import DataKey
from mcep.dispatch import recording, repository
from mcep.dispatch.budget import admit
from mcep.dispatch.models import MessageKind, MessageState
from mcep.dispatch.outcomes import (
    Decision,
    Deferred,
    NeedsDevice,
    Refused,
    decide,
    spread,
    without_device,
)
from mcep.dispatch.repository import ClaimedMessage
from mcep.dispatch.sending import (
    BatchFacts,
    Prepared,
    Sent,
    TokenCache,
    load_facts,
    prepare,
    send_prepared,
)
from mcep.dispatch.windows import next_allowed
from mcep.worker.base import WorkerContext, every

log = logging.getLogger(__name__)
ACTOR = "worker:dispatch"
RECORD_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class DispatchOptions:
    """How a dispatch worker works; the defaults suit one process on the embedded default."""

    batch: int = 500
    concurrency: int = 100
    lease: timedelta = timedelta(minutes=5)
    """Longer than a batch can take (the slowest provider answers within ``send_timeout``)."""
    send_timeout: float | None = None
    """Seconds one provider call may take; by default a third of the lease."""
    idle_interval: float = 0.5
    pipelines: int = 1
    """Batches in progress at once in this process: while one waits on the database, another
    sends (concurrent claims never overlap: each takes rows the others have not locked)."""
    pm_limit: str | None = None
    """A cap on every PM's sends (``limits`` notation, e.g. ``"600/minute"``)."""

    def __post_init__(self) -> None:
        if self.batch < 1 or self.concurrency < 1 or self.pipelines < 1:
            raise ValueError("batch, concurrency and pipelines must be at least 1")
        if self.lease <= timedelta(0):
            raise ValueError("the lease must be positive")

    @property
    def timeout(self) -> float:
        return self.send_timeout or self.lease.total_seconds() / 3


@dataclass
class BatchReport:
    """What one batch did (for logs, tests and benchmarks)."""

    claimed: int = 0
    states: dict[MessageState, int] = field(default_factory=dict)
    stale: int = 0
    """Outcomes not written because the lease had passed to another attempt."""
    devices_reported: list[uuid.UUID] = field(default_factory=list)
    opted_out: list[uuid.UUID] = field(default_factory=list)
    completed: list[uuid.UUID] = field(default_factory=list)


class Dispatcher:
    """One worker's batches: :meth:`run_batch` claims, sends and records one batch."""

    def __init__(
        self,
        context: WorkerContext,
        options: DispatchOptions | None = None,
        *,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.context = context
        self.options = options or DispatchOptions()
        self.limiter = limiter or MovingWindowRateLimiter(context.runtime.limiter_storage)
        self.tokens = TokenCache(context.runtime.keyring)
        self.gate = asyncio.Semaphore(self.options.concurrency)

    async def step(self) -> int:
        """One batch; how many messages it claimed (``every`` loops at once while busy)."""
        return (await self.run_batch()).claimed

    async def run_batch(self) -> BatchReport:
        """Claim, send and record one batch (see the module's note)."""
        claimed, facts = await self._claim()
        if not claimed:
            return BatchReport()
        ready, early = self._prepare(claimed, facts)
        sent = await self._send_admitted(ready)
        decisions = early + self._decisions(sent, facts)
        report = await self._record(claimed, decisions, facts)
        report.claimed = len(claimed)
        report.completed = await self._complete(claimed)
        return report

    # --- 1. claim ------------------------------------------------------------------------

    async def _claim(self) -> tuple[list[ClaimedMessage], BatchFacts]:
        now = self.context.clock()
        async with self.context.runtime.sessions() as session, session.begin():
            claimed = await repository.claim_due(
                session,
                owner=self.context.owner,
                now=now,
                lease=self.options.lease,
                limit=self.options.batch,
            )
            if not claimed:
                return [], BatchFacts()
            facts = await load_facts(session, claimed, tokens=self.tokens, now=now)
        return claimed, facts

    # --- 2. send -------------------------------------------------------------------------

    def _prepare(
        self, claimed: Sequence[ClaimedMessage], facts: BatchFacts
    ) -> tuple[list[Prepared], list[Decision]]:
        """The messages ready to go, and the decisions for those that can't or must not."""
        keys: dict[uuid.UUID, DataKey] = {}
        ready: list[Prepared] = []
        early: list[Decision] = []
        for message in claimed:
            try:
                prepared = prepare(
                    message,
                    facts,
                    keyring=self.context.runtime.keyring,
                    pm_limit=self.options.pm_limit,
                    keys=keys,
                )
            except Exception as exc:  # one unreadable message must not sink its batch forever
                log.exception("message %s could not be prepared", message.id)
                prepared = Refused(f"could not be prepared: {type(exc).__name__}", "unreadable")
            if isinstance(prepared, Prepared):
                ready.append(prepared)
            else:
                early.append(self._decide(message, prepared, facts))
        return ready, early

    async def _send_admitted(self, ready: Sequence[Prepared]) -> list[Sent]:
        """Send what the rate limits admit, concurrently; the rest waits its turn."""
        admission = await admit(self.limiter, ready)
        now = self.context.clock()
        waiting = [
            Sent(p, Deferred(at=now + timedelta(seconds=admission.waits[p.claimed.id])))
            for p in ready
            if p.claimed.id in admission.waits
        ]
        sent = await asyncio.gather(*(self._send(p) for p in admission.admitted))
        return [*sent, *waiting]

    async def _send(self, prepared: Prepared) -> Sent:
        adapter = self.context.adapters.get(Platform(prepared.claimed.channel.value))
        if adapter is None:
            reason = f"this worker has no {prepared.claimed.channel.value} adapter"
            return Sent(prepared, RetryLater(reason=reason, code="no_adapter"))
        async with self.gate:
            return await send_prepared(prepared, adapter, send_timeout=self.options.timeout)

    def _decide(
        self, message: ClaimedMessage, attempted: Refused | NeedsDevice, facts: BatchFacts
    ) -> Decision:
        decision = decide(
            attempted,
            message_id=message.id,
            attempt=message.attempt,
            failures=message.failures,
            policy=facts.rules_for(message.campaign_id).retry,
            now=self.context.clock(),
        )
        return self._in_window(message, decision, facts)

    def _decisions(self, sent: Sequence[Sent], facts: BatchFacts) -> list[Decision]:
        """Decide each send; deferred ones are spaced out at their device's rate."""
        decisions = []
        position: dict[str | None, int] = defaultdict(int)
        for item in sorted(sent, key=lambda s: s.prepared.claimed.id):
            message = item.prepared.claimed
            decision = decide(
                item.attempted,
                message_id=message.id,
                attempt=message.attempt,
                failures=message.failures,
                policy=facts.rules_for(message.campaign_id).retry,
                now=self.context.clock(),
                template=item.template,
            )
            if isinstance(item.attempted, Deferred) and decision.next_attempt_at is not None:
                limit = item.prepared.checks[0].item
                device = item.prepared.device.id
                decision = replace(
                    decision,
                    next_attempt_at=spread(
                        decision.next_attempt_at,
                        position=position[device],
                        per_second=limit.amount / limit.get_expiry(),
                    ),
                )
                position[device] += 1
            decisions.append(self._in_window(message, decision, facts))
        return decisions

    def _in_window(
        self, message: ClaimedMessage, decision: Decision, facts: BatchFacts
    ) -> Decision:
        """A campaign message waits for its recipient's send window; a notice never waits."""
        at = decision.next_attempt_at
        recipient = facts.recipients.get(message.prospect_id)
        if (
            at is None
            or message.kind is MessageKind.NOTICE
            or recipient is None
            or decision.state not in (MessageState.RETRY_SCHEDULED, MessageState.QUEUED)
        ):
            return decision
        window = facts.rules_for(message.campaign_id).window
        return replace(
            decision, next_attempt_at=next_allowed(at, zone=recipient.timezone, window=window)
        )

    # --- 3. record -----------------------------------------------------------------------

    async def _record(
        self, claimed: Sequence[ClaimedMessage], decisions: list[Decision], facts: BatchFacts
    ) -> BatchReport:
        """Write the outcomes; a failed transaction (a deadlock, a dropped connection) changed
        nothing, so it is tried again rather than leaving sent messages to be sent twice."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                return await self._record_once(claimed, decisions, facts)
            except DBAPIError:
                if attempt == RECORD_ATTEMPTS:
                    raise
                log.warning("recording a batch failed (try %d); trying again", attempt)
                await asyncio.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    async def _record_once(
        self, claimed: Sequence[ClaimedMessage], decisions: list[Decision], facts: BatchFacts
    ) -> BatchReport:
        report = BatchReport()
        by_id = {m.id: m for m in claimed}
        now = self.context.clock()
        owner = self.context.owner
        async with self.context.runtime.sessions() as session, session.begin():
            before = await recording.lock_owned(session, list(by_id), owner=owner)
            current = [d for d in decisions if before.get(d.message_id, (None, -1))[1] == d.attempt]
            report.stale = len(decisions) - len(current)
            reports = _device_reports(current, by_id)
            report.devices_reported = await recording.report_devices(
                session, reports, actor=ACTOR, now=now
            )
            current = await self._reallocate(session, current, by_id, facts, now=now)
            changed = await recording.apply_decisions(session, current, owner=owner, now=now)
            await recording.close_attempts(session, current, now=now)
            chosen = {d.message_id: d for d in current}
            events = recording.outcome_events(changed, chosen, before, now=now)
            await repository.insert_events(session, events)
            opted = {
                by_id[d.message_id].prospect_id: by_id[d.message_id].channel.value
                for d in current
                if d.opt_out
            }
            report.opted_out = await recording.opt_out(session, opted, actor=ACTOR, now=now)
        for decision in current:
            report.states[decision.state] = report.states.get(decision.state, 0) + 1
        return report

    async def _complete(self, claimed: Sequence[ClaimedMessage]) -> list[uuid.UUID]:
        """Complete the batch's campaigns that have nothing left to send (the ``leases`` job
        catches any this misses)."""
        campaigns = {m.campaign_id for m in claimed if m.campaign_id is not None}
        if not campaigns:
            return []
        try:
            async with self.context.runtime.sessions() as session, session.begin():
                return await recording.complete_campaigns(
                    session, campaigns, now=self.context.clock()
                )
        except DBAPIError:
            log.warning("completing campaigns failed; the leases job will retry", exc_info=True)
            return []

    async def _reallocate(
        self,
        session: AsyncSession,
        decisions: list[Decision],
        by_id: dict[uuid.UUID, ClaimedMessage],
        facts: BatchFacts,
        *,
        now: datetime,
    ) -> list[Decision]:
        """Another device for each message that needs one; without one, retry later."""
        wanted = [d for d in decisions if d.reallocate]
        if not wanted:
            return decisions
        allocator = await recording.allocator(session, now=now)
        chosen = recording.reallocate(
            allocator,
            [
                (d.message_id, by_id[d.message_id].channel.value, by_id[d.message_id].prospect_id)
                for d in wanted
            ],
        )
        moved = []
        for decision in decisions:
            if not decision.reallocate:
                moved.append(decision)
                continue
            message = by_id[decision.message_id]
            device = chosen.get(decision.message_id)
            if device is None:
                decision = without_device(
                    decision,
                    platform=message.channel.value,
                    policy=facts.rules_for(message.campaign_id).retry,
                    now=now,
                )
                moved.append(self._in_window(message, decision, facts))
            else:
                moved.append(replace(decision, device_id=device, reallocate=False))
        return moved


def _device_reports(
    decisions: Sequence[Decision], by_id: dict[uuid.UUID, ClaimedMessage]
) -> list[recording.DeviceReport]:
    reports = []
    for decision in decisions:
        device_id = by_id[decision.message_id].device_id
        if decision.device_report is not None and device_id is not None:
            reports.append(
                recording.DeviceReport(
                    device_id, decision.device_report, decision.reason or "", decision.code
                )
            )
    return reports


class DispatchJob:
    """The ``dispatch`` job: batches back to back while there is work, a short nap when not."""

    name = "dispatch"

    def __init__(
        self, options: DispatchOptions | None = None, *, limiter: RateLimiter | None = None
    ) -> None:
        self.options = options or DispatchOptions()
        self.limiter = limiter

    async def run(self, context: WorkerContext, stop: asyncio.Event) -> None:
        dispatcher = Dispatcher(context, self.options, limiter=self.limiter)
        pipelines = self.options.pipelines
        if context.runtime.settings.is_sqlite:
            pipelines = 1  # SQLite has one writer at a time: one dispatcher is the embedded way
        await asyncio.gather(
            *(
                every(self.options.idle_interval, stop, dispatcher.step, name=self.name)
                for _ in range(pipelines)
            )
        )


class LeaseSweeperJob:
    """The ``leases`` job: puts messages whose worker died back in line, and completes
    campaigns whose last messages were cancelled rather than sent (nothing else would)."""

    name = "leases"

    def __init__(self, interval: float = 5.0, *, completion_every: int = 6) -> None:
        self.interval = interval
        self.completion_every = completion_every
        self._ticks = 0

    async def run(self, context: WorkerContext, stop: asyncio.Event) -> None:
        async def step() -> int:
            return await self.sweep(context)

        await every(self.interval, stop, step, name=self.name)

    async def sweep(self, context: WorkerContext) -> int:
        """Release one round of expired leases (and, every few rounds, complete campaigns)."""
        runtime = context.runtime
        async with runtime.sessions() as session, session.begin():
            released = await repository.release_expired(session, now=context.clock())
        if self._ticks % self.completion_every == 0:
            async with runtime.sessions() as session, session.begin():
                await recording.complete_campaigns(session, None, now=context.clock())
        self._ticks += 1
        return released
