"""10,000 sends across the four channels through the real adapters and the sandbox.

5% transient errors and 2% 429s: every send ends classified, retries honour the provider's
delay, and the sandbox's ledger of accepted sends matches what the adapters reported, message
key by message key, with nothing accepted twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from mcep.channels.base import (
    Accepted,
    ChannelAdapter,
    DeviceFailure,
    DeviceRef,
    OutboundMessage,
    PermanentFailure,
    Platform,
    RetryLater,
    SendResult,
)
from mcep.channels.http import close_sessions, open_sessions
from mcep.channels.registry import build_adapters
from mcep.sandbox.behaviour import Behaviour, DecisionKind
from mcep.sandbox.server import run_sandbox
from mcep.sandbox.state import SandboxState

log = logging.getLogger(__name__)

TOTAL = 10_000
CONCURRENCY = 200
MAX_ATTEMPTS = 25
RECIPIENTS_PER_PLATFORM = 400


def devices(base_url: str) -> dict[Platform, list[DeviceRef]]:
    """Two sender accounts per platform, addressed the way each provider addresses them."""
    return {
        Platform.WHATSAPP: [
            DeviceRef(
                f"wa-{i}",
                Platform.WHATSAPP,
                f"10654035224292{i}",
                f"{base_url}/whatsapp",
                f"EAAGloadToken{i}",
            )
            for i in range(2)
        ],
        Platform.TELEGRAM: [
            DeviceRef(
                f"tg-{i}",
                Platform.TELEGRAM,
                f"sandbox71725520{i}_bot",
                f"{base_url}/telegram",
                f"71725520{i}:AAHloadtoken{i}",
            )
            for i in range(2)
        ],
        Platform.SIGNAL: [
            DeviceRef(f"sg-{i}", Platform.SIGNAL, f"+1555000990{i}", f"{base_url}/signal", "")
            for i in range(2)
        ],
        Platform.IMESSAGE: [
            DeviceRef(
                f"im-{i}",
                Platform.IMESSAGE,
                f"sender{i}@icloud.example",
                f"{base_url}/imessage/mac{i}",
                "pw",
            )
            for i in range(2)
        ],
    }


def recipient(platform: Platform, n: int) -> str:
    if platform is Platform.TELEGRAM:
        return str(5_342_000_000 + n)
    return f"+1650555{n:04d}"


@dataclass
class Job:
    platform: Platform
    device: DeviceRef
    message: OutboundMessage

    @property
    def ledger_key(self) -> str:
        """The message key the sandbox counts: echoed key, or the text where none is echoed."""
        if self.platform in (Platform.WHATSAPP, Platform.IMESSAGE):
            return self.message.key
        return self.message.body


def jobs(base_url: str) -> list[Job]:
    platforms = list(Platform)
    by_platform = devices(base_url)
    made = []
    for i in range(TOTAL):
        platform = platforms[i % len(platforms)]
        device = by_platform[platform][(i // len(platforms)) % 2]
        to = recipient(platform, (i // len(platforms)) % RECIPIENTS_PER_PLATFORM)
        key = f"load-{i:05d}"
        made.append(
            Job(platform, device, OutboundMessage(key=key, recipient=to, body=f"Hello {key}"))
        )
    return made


@dataclass
class Outcome:
    job: Job
    result: SendResult
    attempts: int


async def send_until_settled(adapter: ChannelAdapter, job: Job, gate: asyncio.Semaphore) -> Outcome:
    """Retry transient outcomes after the provider's delay (or a short default)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        async with gate:
            result = await adapter.send(job.message, job.device)
        if not isinstance(result, RetryLater):
            return Outcome(job, result, attempt)
        await asyncio.sleep(result.retry_after if result.retry_after is not None else 0.05)
    return Outcome(job, result, MAX_ATTEMPTS)


@pytest.mark.slow
async def test_ten_thousand_sends_are_classified_and_counted_exactly_once() -> None:
    behaviour = Behaviour(
        seed=2024,
        transient_error_rate=0.05,
        rate_limit_rate=0.02,
        retry_after=1.0,
        deliver_probability=0.0,
    )
    state = SandboxState(behaviour=behaviour)
    sessions = open_sessions()
    try:
        async with run_sandbox(state) as base_url:
            adapters = build_adapters(sessions)
            work = jobs(base_url)
            gate = asyncio.Semaphore(CONCURRENCY)
            started = time.monotonic()
            async with asyncio.timeout(240):
                outcomes = await asyncio.gather(
                    *(send_until_settled(adapters[job.platform], job, gate) for job in work)
                )
            elapsed = time.monotonic() - started
    finally:
        await close_sessions(sessions)

    assert len(outcomes) == TOTAL
    kinds = Counter(type(o.result).__name__ for o in outcomes)
    attempts = sum(o.attempts for o in outcomes)
    decisions = state.ledger.decisions()
    log.warning(
        "load: %d sends (%d attempts) in %.1f s = %.0f attempts/s; outcomes %s; decisions %s",
        TOTAL,
        attempts,
        elapsed,
        attempts / elapsed,
        dict(kinds),
        {f"{p}:{k}": n for (p, k), n in decisions.items()},
    )

    # every send ended in a final class; nothing is left retrying
    assert not any(isinstance(o.result, RetryLater) for o in outcomes)
    assert set(kinds) <= {"Accepted", "PermanentFailure", "DeviceFailure"}

    # the ledger agrees with the adapters, message key by message key
    reported = Counter(
        (o.job.platform.value, o.job.ledger_key) for o in outcomes if isinstance(o.result, Accepted)
    )
    counted: Counter[tuple[str, str]] = Counter()
    for key, n in state.ledger.counts().items():
        counted[(key.platform, key.message_key)] += n
    assert counted == reported
    assert state.ledger.duplicates() == {}
    assert state.ledger.total == kinds["Accepted"]

    # the sandbox saw what the behaviour asked for (per attempt), and adapters saw every attempt
    assert sum(decisions.values()) == attempts
    transient = sum(n for (_, k), n in decisions.items() if k is DecisionKind.TRANSIENT)
    limited = sum(n for (_, k), n in decisions.items() if k is DecisionKind.RATE_LIMITED)
    assert 0.035 < transient / attempts < 0.065
    assert 0.012 < limited / attempts < 0.028

    # only Signal turns a 429 into a device failure (a captcha challenge on first contact)
    failures = {
        o.job.platform for o in outcomes if isinstance(o.result, DeviceFailure | PermanentFailure)
    }
    assert failures <= {Platform.SIGNAL}
    per_platform = Counter(o.job.platform for o in outcomes if isinstance(o.result, Accepted))
    for platform in Platform:
        assert per_platform[platform] >= 0.95 * TOTAL / 4
