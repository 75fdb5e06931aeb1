"""May this prospect be messaged by this campaign, and on which channel? Pure decisions.

Skipped recipients are never dropped silently: every refusal carries a :class:`SkipReason`
that the launch result counts and lists.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mcep.contacts.models import Channel
from mcep.dispatch.caps import CapHit, FrequencyCaps, cap_hit


class SkipReason(enum.StrEnum):
    NOT_FOUND = "not_found"
    ERASED = "erased"
    OPTED_OUT = "opted_out"
    NO_CONSENT = "no_consent"
    NO_HANDLE = "no_handle"
    FREQUENCY_CAP_DAY = "frequency_cap_day"
    FREQUENCY_CAP_WEEK = "frequency_cap_week"
    NO_DEVICE = "no_device"


_CAP_REASON = {CapHit.DAY: SkipReason.FREQUENCY_CAP_DAY, CapHit.WEEK: SkipReason.FREQUENCY_CAP_WEEK}


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    """What the launch knows about one prospect, read in bulk beforehand."""

    prospect_id: uuid.UUID
    opted_out: bool
    erased: bool
    consented: frozenset[Channel]
    handles: frozenset[Channel]
    last_day: int = 0
    last_week: int = 0


@dataclass(frozen=True, slots=True)
class Eligible:
    """The channels this prospect may be reached on, best first."""

    channels: tuple[Channel, ...]


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: SkipReason


Eligibility = Eligible | Skipped


def usable_channels(
    order: Sequence[Channel], *, consented: frozenset[Channel], handles: frozenset[Channel]
) -> tuple[Channel, ...]:
    """The profile's channels, in its order, that the prospect consented to and has a handle on."""
    return tuple(c for c in order if c in consented and c in handles)


def check_recipient(
    facts: RecipientFacts, *, channel_order: Sequence[Channel], caps: FrequencyCaps
) -> Eligibility:
    """Erasure, global opt-out, consent, handles, then frequency caps, in that order."""
    if facts.erased:
        return Skipped(SkipReason.ERASED)
    if facts.opted_out:
        return Skipped(SkipReason.OPTED_OUT)
    if not any(c in facts.consented for c in channel_order):
        return Skipped(SkipReason.NO_CONSENT)
    channels = usable_channels(channel_order, consented=facts.consented, handles=facts.handles)
    if not channels:
        return Skipped(SkipReason.NO_HANDLE)
    hit = cap_hit(caps, last_day=facts.last_day, last_week=facts.last_week)
    if hit is not None:
        return Skipped(_CAP_REASON[hit])
    return Eligible(channels)


def choose_channel(
    channels: Sequence[Channel], *, has_sender: Callable[[Channel], bool]
) -> Channel | None:
    """The first usable channel that has a sender device with capacity left."""
    return next((c for c in channels if has_sender(c)), None)
