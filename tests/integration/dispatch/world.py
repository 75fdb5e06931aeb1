"""A dispatch test's world: sender devices pointed at the sandbox, prospects with unique
handles, campaigns launched through the real launch, and a dispatcher with a clock.

Devices are addressed the way each provider addresses them: WhatsApp by phone-number id
under ``/whatsapp``, Telegram by the bot id before the token's colon under ``/telegram``,
Signal by account number under ``/signal``, iMessage by the server's path under
``/imessage/<server>``. The sandbox's ledger counts what it accepted per message key: our
attempt key where the protocol echoes one (WhatsApp, iMessage), the text otherwise.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any

from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from sqlalchemy import func, select

from mcep.channels.base import (
    Accepted,
    ChannelAdapter,
    DeviceRef,
    Health,
    HealthStatus,
    OutboundMessage,
    Platform,
    SendResult,
)
from mcep.channels.http import close_sessions, open_sessions
from mcep.channels.registry import build_adapters
from mcep.contacts import service as contacts_service
from mcep.contacts.models import Channel
from mcep.contacts.schemas import ConsentIn, Handles, ProspectCreate
from mcep.dispatch.models import Message, MessageState
from mcep.dispatch.worker import BatchReport, Dispatcher, DispatchOptions
from mcep.fleet import service as fleet_service
from mcep.fleet.schemas import DeviceCreate
from mcep.runtime import Runtime
from mcep.sandbox.behaviour import Behaviour
from mcep.sandbox.server import run_sandbox
from mcep.sandbox.state import SandboxState
from mcep.worker.base import WorkerContext
from tests.conftest import Actor
from tests.integration.campaigns import builders
from tests.integration.campaigns.builders import ADMIN

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # a Thursday noon: inside the default window
FAST = 60_000  # per-minute device rate for tests that are not about rate limits


@dataclass
class Sandbox:
    url: str
    state: SandboxState
    adapters: dict[Platform, ChannelAdapter]

    def accepted(self) -> Counter[str]:
        """Accepted sends per message: the key's message id where echoed, else the text."""
        counts: Counter[str] = Counter()
        for key, n in self.state.ledger.counts().items():
            counts[key.message_key.split(":", 1)[0]] += n
        return counts


@asynccontextmanager
async def sandbox(behaviour: Behaviour | None = None, **state: Any) -> AsyncIterator[Sandbox]:
    """The sandbox on an ephemeral loopback port and the real adapters over real HTTP."""
    sessions = open_sessions()
    try:
        sandbox_state = SandboxState(behaviour=behaviour or Behaviour(), **state)
        async with run_sandbox(sandbox_state) as url:
            yield Sandbox(url, sandbox_state, build_adapters(sessions))
    finally:
        await close_sessions(sessions)


@dataclass
class AcceptAll:
    """A provider that accepts every send at once (for tests about the worker, not HTTP)."""

    platform: Platform
    sent: list[str] = field(default_factory=list)

    async def send(self, message: OutboundMessage, device: DeviceRef) -> SendResult:
        self.sent.append(message.key)
        return Accepted(provider_message_id=f"{self.platform.value}.{len(self.sent)}")

    async def probe(self, device: DeviceRef) -> Health:
        return Health(HealthStatus.OK)


@dataclass(frozen=True)
class DeviceSpec:
    platform: Platform
    address: str
    base_path: str
    token: str
    ledger_device: str
    """How the sandbox's ledger names this device."""


def device_spec(platform: Platform, n: int) -> DeviceSpec:
    if platform is Platform.WHATSAPP:
        address = f"1065403522{n:05d}"
        return DeviceSpec(platform, address, "/whatsapp", f"EAAGtestToken{n:04d}", address)
    if platform is Platform.TELEGRAM:
        bot = f"7000{n:05d}"
        return DeviceSpec(platform, f"mcep_test_{n}_bot", "/telegram", f"{bot}:AAtest{n}", bot)
    if platform is Platform.SIGNAL:
        number = f"+1555010{n:04d}"
        return DeviceSpec(platform, number, "/signal", "unused", number)
    server = f"mac{n}"
    return DeviceSpec(platform, f"sender{n}@icloud.example", f"/imessage/{server}", "pw", server)


async def add_device(
    runtime: Runtime, url: str, platform: Platform, n: int = 0, *, rate_per_minute: int = FAST
) -> uuid.UUID:
    spec = device_spec(platform, n)
    data = DeviceCreate(
        platform=platform,
        address=spec.address,
        base_url=f"{url}{spec.base_path}",
        token=spec.token,
        rate_per_minute=rate_per_minute,
    )
    async with runtime.sessions() as session, session.begin():
        return (await fleet_service.create(session, ADMIN, data, keyring=runtime.keyring)).id


def handle(channel: Channel, n: int) -> str:
    """A unique, valid handle per ``n`` (French mobile numbers, Telegram chat ids)."""
    if channel is Channel.TELEGRAM:
        return str(5_300_000_000 + n)
    return f"+33612{n:06d}"


async def add_prospects(
    runtime: Runtime,
    owner: Actor,
    channels: Sequence[Channel],
    count: int,
    *,
    start: int = 0,
    timezone: str = "Europe/London",
    consent: bool = True,
) -> list[uuid.UUID]:
    """``count`` prospects, the i-th consented on ``channels[i % len(channels)]`` only, each
    with a unique name (so Telegram and Signal texts, which the ledger counts, differ)."""
    assert owner.pm_id is not None
    now = datetime.now(UTC)
    batch = []
    for i in range(start, start + count):
        channel = channels[i % len(channels)]
        batch.append(
            contacts_service.prepare(
                ProspectCreate(
                    name=f"Client{i} Example",
                    timezone=timezone,
                    handles=Handles(**{channel.value: handle(channel, i)}),
                    consents=[ConsentIn(channel=channel, source="test")] if consent else [],
                ),
                pm_id=owner.pm_id,
                keyring=runtime.keyring,
                now=now,
            )
        )
    async with runtime.sessions() as session, session.begin():
        await contacts_service.insert_prepared(session, batch)
    return [p.prospect["id"] for p in batch]


async def launch(
    runtime: Runtime,
    owner: Actor,
    prospect_ids: Sequence[uuid.UUID],
    *,
    now: datetime | None = None,
    body: str = "Hello {{ name }}",
    whatsapp: dict[str, Any] | None = None,
    start_at: datetime | None = None,
    **profile: Any,
) -> uuid.UUID:
    """Launch a campaign to ``prospect_ids`` with a profile that sends at any hour (unless
    ``profile`` says otherwise); returns the campaign id."""
    fields = {"window_start": time(0), "window_end": time(0)} | profile
    profile_id = await builders.add_profile(runtime, owner, **fields)
    template = {"whatsapp": whatsapp} if whatsapp else {}
    template_id = await builders.add_template(runtime, owner, body, **template)
    extra: dict[str, Any] = {"start_at": start_at} if start_at else {}
    campaign_id = await builders.add_campaign(
        runtime,
        owner,
        prospect_ids=prospect_ids,
        template_id=template_id,
        profile_id=profile_id,
        **extra,
    )
    campaign = await builders.launch_campaign(runtime, owner, campaign_id, now=now)
    assert campaign.launch_result["queued"] == len(prospect_ids), campaign.launch_result
    return campaign_id


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime = T0
    ticks: list[datetime] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    def set(self, at: datetime) -> None:
        self.now = at


def dispatcher(
    runtime: Runtime,
    box: Sandbox | dict[Platform, ChannelAdapter],
    *,
    clock: Callable[[], datetime] | None = None,
    owner: str = "test-worker",
    **options: Any,
) -> Dispatcher:
    """A dispatcher with its own in-memory rate limits (so tests don't share buckets)."""
    adapters = box.adapters if isinstance(box, Sandbox) else box
    context = WorkerContext(runtime=runtime, owner=owner, adapters=adapters)
    if clock is not None:
        context.clock = clock
    limiter = MovingWindowRateLimiter(MemoryStorage())
    return Dispatcher(context, DispatchOptions(**options), limiter=limiter)


async def run(worker: Dispatcher) -> BatchReport:
    """One batch with fresh rate-limit buckets: the limits count real seconds, and a test that
    moves its clock by minutes must not be held back by a limit that saw real milliseconds."""
    worker.limiter = MovingWindowRateLimiter(MemoryStorage())
    return await worker.run_batch()


async def states(runtime: Runtime, campaign_id: uuid.UUID | None = None) -> Counter[MessageState]:
    stmt = select(Message.state, func.count()).group_by(Message.state)
    if campaign_id is not None:
        stmt = stmt.where(Message.campaign_id == campaign_id)
    async with runtime.sessions() as session:
        return Counter({state: n for state, n in await session.execute(stmt)})


async def messages(runtime: Runtime, *where: Any) -> list[Message]:
    async with runtime.sessions() as session:
        rows = await session.scalars(select(Message).where(*where).order_by(Message.id))
        return list(rows.all())
