"""What the simulated providers and their users do: a seeded behaviour model.

Everything here is a value or a pure function over values (plus a seeded ``random.Random``),
so a provider module only has to render a :class:`SendDecision` in its own wire format and
schedule the callbacks a :class:`Fate` describes. The :class:`SendLedger` counts every
accepted send, so tests can prove that each message went out exactly once.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

DEFAULT_REPLY_CORPUS: tuple[str, ...] = (
    "Thanks!",
    "Yes please, tell me more",
    "Who is this?",
    "Not now, maybe later",
    "Sounds good",
    "Can you call me tomorrow?",
    "STOP",
    "stop",
    "Unsubscribe",
)


@dataclass(frozen=True, slots=True)
class Delay:
    """A uniformly drawn delay in seconds, ``low`` to ``high``."""

    low: float = 0.0
    high: float = 0.0

    def draw(self, rng: random.Random) -> float:
        """One delay from this range."""
        return self.low if self.high <= self.low else rng.uniform(self.low, self.high)


@dataclass(frozen=True, slots=True)
class RecipientBehaviour:
    """Overrides for one recipient; ``None`` means "use the run's default"."""

    on_platform: bool | None = None
    deliver_probability: float | None = None
    read_probability: float | None = None
    reply_probability: float | None = None
    opt_out_probability: float | None = None
    reply_text: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceBehaviour:
    """Overrides and a timeline for one sender account at the provider.

    Times are seconds since the sandbox started. ``offline`` is a list of ``(start, end)``
    windows; from ``banned_at`` on the account is banned for good. ``quality_rating`` and
    ``messaging_tier`` are what the provider's health call reports.
    """

    offline: tuple[tuple[float, float], ...] = ()
    banned_at: float | None = None
    transient_error_rate: float | None = None
    rate_limit_rate: float | None = None
    quality_rating: str = "GREEN"
    messaging_tier: str = "TIER_1K"
    display_name: str | None = None

    def is_banned(self, now: float) -> bool:
        """Whether the account is banned at ``now``."""
        return self.banned_at is not None and now >= self.banned_at

    def is_offline(self, now: float) -> bool:
        """Whether ``now`` falls inside one of the offline windows."""
        return any(start <= now < end for start, end in self.offline)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """One run's configuration of the simulated providers and people.

    Rates are per send; probabilities are per accepted message (read needs delivered, a reply
    needs delivered). ``not_on_platform_rate`` is drawn once per (platform, recipient) from the
    seed, so the same number is consistently absent. ``reply_corpus`` contains some opt-out words
    ("STOP"): recognising them is the app's job. ``opt_out_probability`` is the provider-level
    opt-out (WhatsApp marketing stop, Telegram block): later sends to that person are refused.
    """

    seed: int = 0
    latency: Delay = Delay()
    transient_error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: float = 1.0
    not_on_platform_rate: float = 0.0
    deliver_probability: float = 1.0
    read_probability: float = 0.5
    reply_probability: float = 0.0
    opt_out_probability: float = 0.0
    deliver_delay: Delay = Delay(0.01, 0.05)
    read_delay: Delay = Delay(0.05, 0.2)
    reply_delay: Delay = Delay(0.1, 0.5)
    opt_out_delay: Delay = Delay(0.1, 0.5)
    reply_corpus: tuple[str, ...] = DEFAULT_REPLY_CORPUS
    recipients: Mapping[str, RecipientBehaviour] = field(default_factory=dict)
    devices: Mapping[str, DeviceBehaviour] = field(default_factory=dict)

    def device(self, device: str) -> DeviceBehaviour:
        """The behaviour of one sender account (defaults if not configured)."""
        return self.devices.get(device) or DeviceBehaviour()

    def recipient(self, recipient: str) -> RecipientBehaviour:
        """The overrides for one recipient (all ``None`` if not configured)."""
        return self.recipients.get(recipient) or RecipientBehaviour()

    def with_device(self, device: str, behaviour: DeviceBehaviour) -> Behaviour:
        """A copy with one device's behaviour set."""
        return replace(self, devices={**self.devices, device: behaviour})

    def with_recipient(self, recipient: str, behaviour: RecipientBehaviour) -> Behaviour:
        """A copy with one recipient's behaviour set."""
        return replace(self, recipients={**self.recipients, recipient: behaviour})


# --- the send decision -------------------------------------------------------------------


class DecisionKind(enum.StrEnum):
    ACCEPT = "accept"
    UNAUTHORIZED = "unauthorized"
    DEVICE_BANNED = "device_banned"
    DEVICE_OFFLINE = "device_offline"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    NOT_ON_PLATFORM = "not_on_platform"
    OPTED_OUT = "opted_out"


@dataclass(frozen=True, slots=True)
class SendDecision:
    """What the simulated provider does with one send request."""

    kind: DecisionKind
    retry_after: float | None = None

    @property
    def accepted(self) -> bool:
        return self.kind is DecisionKind.ACCEPT


def is_on_platform(behaviour: Behaviour, *, platform: str, recipient: str) -> bool:
    """Whether a recipient has an account on ``platform``: explicit override, else seeded draw."""
    override = behaviour.recipient(recipient).on_platform
    if override is not None:
        return override
    if behaviour.not_on_platform_rate <= 0:
        return True
    digest = hashlib.sha256(f"{behaviour.seed}:{platform}:{recipient}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 >= behaviour.not_on_platform_rate


def decide_send(
    behaviour: Behaviour,
    rng: random.Random,
    *,
    platform: str,
    device: str,
    recipient: str,
    now: float,
    authorized: bool = True,
    opted_out: bool = False,
) -> SendDecision:
    """Decide one send. Account problems come first, then throttling, then the recipient.

    Exactly two random numbers are drawn per call (429, then transient error), whatever the
    outcome, so a seeded run stays reproducible when knobs change.
    """
    throttle_draw, error_draw = rng.random(), rng.random()
    dev = behaviour.device(device)
    if not authorized:
        return SendDecision(DecisionKind.UNAUTHORIZED)
    if dev.is_banned(now):
        return SendDecision(DecisionKind.DEVICE_BANNED)
    if dev.is_offline(now):
        return SendDecision(DecisionKind.DEVICE_OFFLINE)
    rate_limit = _pick(dev.rate_limit_rate, behaviour.rate_limit_rate)
    if throttle_draw < rate_limit:
        return SendDecision(DecisionKind.RATE_LIMITED, retry_after=behaviour.retry_after)
    if error_draw < _pick(dev.transient_error_rate, behaviour.transient_error_rate):
        return SendDecision(DecisionKind.TRANSIENT)
    if not is_on_platform(behaviour, platform=platform, recipient=recipient):
        return SendDecision(DecisionKind.NOT_ON_PLATFORM)
    if opted_out:
        return SendDecision(DecisionKind.OPTED_OUT)
    return SendDecision(DecisionKind.ACCEPT)


def _pick(override: float | None, default: float) -> float:
    return default if override is None else override


# --- what happens to an accepted message -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fate:
    """When (seconds after acceptance) each later event happens; ``None`` means never."""

    delivered_after: float | None = None
    read_after: float | None = None
    reply_after: float | None = None
    reply_text: str | None = None
    opt_out_after: float | None = None


def plan_fate(behaviour: Behaviour, rng: random.Random, *, recipient: str) -> Fate:
    """Draw what the recipient will do with an accepted message."""
    person = behaviour.recipient(recipient)
    if rng.random() >= _pick(person.deliver_probability, behaviour.deliver_probability):
        return Fate()
    delivered = behaviour.deliver_delay.draw(rng)
    read = None
    if rng.random() < _pick(person.read_probability, behaviour.read_probability):
        read = delivered + behaviour.read_delay.draw(rng)
    reply_after, reply_text = None, None
    if rng.random() < _pick(person.reply_probability, behaviour.reply_probability):
        reply_after = (read if read is not None else delivered) + behaviour.reply_delay.draw(rng)
        reply_text = person.reply_text or rng.choice(behaviour.reply_corpus)
    opt_out = None
    if rng.random() < _pick(person.opt_out_probability, behaviour.opt_out_probability):
        opt_out = delivered + behaviour.opt_out_delay.draw(rng)
    return Fate(delivered, read, reply_after, reply_text, opt_out)


# --- counting accepted sends -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerKey:
    """Who sent what to whom, as the sandbox saw it.

    ``message_key`` is the idempotency key the protocol echoes (WhatsApp
    ``biz_opaque_callback_data``, BlueBubbles ``tempGuid``) or, where the protocol has no such
    field (Telegram, Signal), the message text.
    """

    platform: str
    device: str
    recipient: str
    message_key: str


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    key: LedgerKey
    provider_message_id: str
    at: float


class SendLedger:
    """Every send the simulated providers accepted, counted per :class:`LedgerKey`."""

    def __init__(self) -> None:
        self._counts: Counter[LedgerKey] = Counter()
        self._by_provider_id: dict[str, LedgerEntry] = {}
        self._decisions: Counter[tuple[str, DecisionKind]] = Counter()

    def record(self, key: LedgerKey, *, provider_message_id: str, at: float) -> int:
        """Count one accepted send; returns how many times this key has now been accepted."""
        self._counts[key] += 1
        self._by_provider_id[provider_message_id] = LedgerEntry(key, provider_message_id, at)
        return self._counts[key]

    def note_decision(self, platform: str, kind: DecisionKind) -> None:
        """Count one decision of any kind (for load-run statistics)."""
        self._decisions[(platform, kind)] += 1

    def count(self, key: LedgerKey) -> int:
        """How many times ``key`` was accepted."""
        return self._counts[key]

    def counts(self) -> dict[LedgerKey, int]:
        """A snapshot of all counts."""
        return dict(self._counts)

    def counts_by_message_key(self, platform: str | None = None) -> dict[str, int]:
        """Accepted sends per message key, optionally for one platform."""
        totals: Counter[str] = Counter()
        for key, n in self._counts.items():
            if platform is None or key.platform == platform:
                totals[key.message_key] += n
        return dict(totals)

    def duplicates(self) -> dict[LedgerKey, int]:
        """Keys accepted more than once."""
        return {key: n for key, n in self._counts.items() if n > 1}

    def decisions(self) -> dict[tuple[str, DecisionKind], int]:
        """How many decisions of each kind were made, per platform."""
        return dict(self._decisions)

    def lookup(self, provider_message_id: str) -> LedgerEntry | None:
        """The accepted send a provider message id belongs to."""
        return self._by_provider_id.get(provider_message_id)

    @property
    def total(self) -> int:
        """All accepted sends."""
        return sum(self._counts.values())
