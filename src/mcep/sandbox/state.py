"""The sandbox's mutable run state, shared by every simulated provider.

A :class:`SandboxState` holds the behaviour model, the ledger of accepted sends, strict-mode
tokens, webhook targets registered by the app (Telegram ``setWebhook``, BlueBubbles
``/webhook``), pull mailboxes (Telegram ``getUpdates``, signal-cli events) and a scheduler that
runs the delayed callbacks (delivered, read, reply, opt-out) as asyncio tasks. Provider modules
call :meth:`SandboxState.decide` and :meth:`SandboxState.accept` and only render the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from mcep.sandbox.behaviour import (
    Behaviour,
    Fate,
    LedgerKey,
    SendDecision,
    SendLedger,
    decide_send,
    plan_fate,
)

log = logging.getLogger(__name__)

Action = Callable[[], Awaitable[None]]


class CallbackScheduler:
    """Runs delayed actions as tasks; errors are logged and counted, never raised."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures = 0
        self._closed = False

    def schedule(self, delay: float, action: Action) -> None:
        """Run ``action`` after ``delay`` seconds (ignored once closed)."""
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._run(delay, action))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, delay: float, action: Action) -> None:
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            await action()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failures += 1
            log.exception("sandbox callback failed")

    @property
    def pending(self) -> int:
        """How many actions are waiting or running."""
        return len(self._tasks)

    async def drain(self, *, within: float = 30.0) -> None:
        """Wait until every scheduled action (including ones scheduled meanwhile) has run."""
        async with asyncio.timeout(within):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel whatever is still pending and wait for the cancellations."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Mailbox:
    """Events waiting to be pulled by one account, numbered from ``first_id`` upwards.

    Telegram ``getUpdates`` semantics: items below a confirmed offset are forgotten; a reader
    waits up to its timeout for something new.
    """

    def __init__(self, *, first_id: int = 1) -> None:
        self._items: list[tuple[int, Any]] = []
        self._next = first_id
        self._changed: asyncio.Event | None = None

    def put(self, item: Any, *, item_id: int | None = None) -> int:
        """Add an item (ids must increase); returns its id."""
        item_id = self._next if item_id is None else item_id
        self._next = item_id + 1
        self._items.append((item_id, item))
        if self._changed is not None:
            self._changed.set()
        return item_id

    def confirm(self, before: int) -> None:
        """Forget every item whose id is below ``before``."""
        self._items = [(i, item) for i, item in self._items if i >= before]

    def peek(self, *, from_id: int = 0, limit: int = 100) -> list[tuple[int, Any]]:
        """Up to ``limit`` items with id at least ``from_id``, oldest first."""
        return [(i, item) for i, item in self._items if i >= from_id][:limit]

    async def wait(
        self, *, from_id: int = 0, limit: int = 100, max_wait: float = 0.0
    ) -> list[tuple[int, Any]]:
        """Like :meth:`peek`, but wait up to ``max_wait`` seconds for an item to arrive."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while not (items := self.peek(from_id=from_id, limit=limit)):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            self._changed = self._changed or asyncio.Event()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return items

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where the app asked a provider to push events, and the secret to send along."""

    url: str
    secret: str | None = None


class SandboxState:
    """Everything one sandbox run shares across the simulated providers."""

    def __init__(
        self,
        *,
        behaviour: Behaviour | None = None,
        strict: bool = False,
        tokens: Mapping[str, frozenset[str]] | None = None,
        callback_base: str | None = None,
        whatsapp_app_secret: str = "sandbox-app-secret",
        whatsapp_templates: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        callback_attempts: int = 3,
        callback_retry_delay: float = 0.2,
    ) -> None:
        self.behaviour = behaviour or Behaviour()
        self.rng = random.Random(self.behaviour.seed)
        self.ledger = SendLedger()
        self.strict = strict
        self.tokens: dict[str, frozenset[str]] = dict(tokens or {})
        self.callback_base = callback_base.rstrip("/") if callback_base else None
        self.whatsapp_app_secret = whatsapp_app_secret
        # Approved template name -> number of body parameters; ``None`` accepts any template.
        self.whatsapp_templates = dict(whatsapp_templates) if whatsapp_templates else None
        self.scheduler = CallbackScheduler()
        self.callback_stats: Counter[str] = Counter()
        self.callback_attempts = callback_attempts
        self.callback_retry_delay = callback_retry_delay
        self._clock = clock
        self._started = clock()
        self._webhooks: dict[tuple[str, str], WebhookTarget] = {}
        self._mailboxes: dict[tuple[str, str], Mailbox] = {}
        self._opted_out: set[tuple[str, str, str]] = set()
        self._ids: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"SandboxState(strict={self.strict}, accepted={self.ledger.total})"

    # --- clock, ids, tokens --------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the run started (the time base of device timelines)."""
        return self._clock() - self._started

    def next_id(self, namespace: str) -> int:
        """A counter per namespace, from 1 (message ids, update ids, ...)."""
        self._ids[namespace] += 1
        return self._ids[namespace]

    def authorized(self, platform: str, token: str) -> bool:
        """Any token outside strict mode; in strict mode only the configured ones."""
        return not self.strict or token in self.tokens.get(platform, frozenset())

    # --- deciding and accepting sends ----------------------------------------------------

    async def simulate_latency(self) -> None:
        """Wait the configured send latency."""
        delay = self.behaviour.latency.draw(self.rng)
        if delay > 0:
            await asyncio.sleep(delay)

    def decide(self, *, platform: str, device: str, recipient: str, token: str) -> SendDecision:
        """Decide one send with the current behaviour, and count the decision."""
        decision = decide_send(
            self.behaviour,
            self.rng,
            platform=platform,
            device=device,
            recipient=recipient,
            now=self.now(),
            authorized=self.authorized(platform, token),
            opted_out=self.is_opted_out(platform=platform, device=device, recipient=recipient),
        )
        self.ledger.note_decision(platform, decision.kind)
        return decision

    def accept(self, key: LedgerKey, *, provider_message_id: str) -> Fate:
        """Record an accepted send and draw what the recipient will do with it."""
        self.ledger.record(key, provider_message_id=provider_message_id, at=self.now())
        return plan_fate(self.behaviour, self.rng, recipient=key.recipient)

    # --- opt-outs ------------------------------------------------------------------------

    def mark_opted_out(self, *, platform: str, device: str, recipient: str) -> None:
        """The person blocked or stopped this sender; later sends are refused."""
        self._opted_out.add((platform, device, recipient))

    def is_opted_out(self, *, platform: str, device: str, recipient: str) -> bool:
        return (platform, device, recipient) in self._opted_out

    # --- webhooks and mailboxes ----------------------------------------------------------

    def set_webhook(self, platform: str, device: str, target: WebhookTarget | None) -> None:
        """Register (or with ``None`` remove) where a device's events are pushed."""
        if target is None:
            self._webhooks.pop((platform, device), None)
        else:
            self._webhooks[(platform, device)] = target

    def webhook(self, platform: str, device: str) -> WebhookTarget | None:
        return self._webhooks.get((platform, device))

    def mailbox(self, platform: str, device: str) -> Mailbox:
        """The pull mailbox of one device (created on first use)."""
        return self._mailboxes.setdefault((platform, device), Mailbox())

    def callback_url(self, path: str) -> str | None:
        """``path`` under the app's base URL, or ``None`` if no callback base is configured."""
        return f"{self.callback_base}{path}" if self.callback_base else None

    async def post_callback(
        self, url: str, body: bytes, *, headers: Mapping[str, str], platform: str
    ) -> bool:
        """POST a callback, retrying non-2xx answers and connection errors a few times."""
        for attempt in range(self.callback_attempts):
            if attempt:
                await asyncio.sleep(self.callback_retry_delay * attempt)
            if await self._post_once(url, body, headers):
                self.callback_stats[f"{platform}:delivered"] += 1
                return True
        self.callback_stats[f"{platform}:failed"] += 1
        return False

    async def _post_once(self, url: str, body: bytes, headers: Mapping[str, str]) -> bool:
        session = self._http()
        all_headers = {"Content-Type": "application/json", **headers}
        try:
            async with session.post(url, data=body, headers=all_headers) as response:
                await response.read()
                return 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("sandbox callback to %s failed: %s", url, type(exc).__name__)
            return False

    async def get_text(self, url: str, *, params: Mapping[str, str]) -> tuple[int, str]:
        """GET a URL of the app (status 0 when unreachable)."""
        try:
            async with self._http().get(url, params=dict(params)) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return 0, ""

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10),
                connector=aiohttp.TCPConnector(limit=100),
            )
        return self._session

    async def aclose(self) -> None:
        """Cancel pending callbacks and close the callback HTTP session."""
        await self.scheduler.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None
