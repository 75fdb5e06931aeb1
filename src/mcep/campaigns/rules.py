"""A profile's settings as the value objects the pure decisions take."""

from __future__ import annotations

from dataclasses import dataclass, field

from mcep.campaigns.models import EngagementProfile
from mcep.contacts.models import Channel
from mcep.dispatch.caps import FrequencyCaps
from mcep.dispatch.retry import RetryPolicy
from mcep.dispatch.windows import SendWindow

DEFAULT_LEAD_THRESHOLD = 70


@dataclass(frozen=True, slots=True)
class ProfileRules:
    """Everything launch and dispatch need from an engagement profile."""

    channel_order: tuple[Channel, ...] = (
        Channel.WHATSAPP,
        Channel.IMESSAGE,
        Channel.SIGNAL,
        Channel.TELEGRAM,
    )
    window: SendWindow = field(default_factory=SendWindow)
    caps: FrequencyCaps = field(default_factory=FrequencyCaps)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lead_threshold: int = DEFAULT_LEAD_THRESHOLD


def rules_of(profile: EngagementProfile | None) -> ProfileRules:
    """The profile's rules; a campaign without a profile gets the defaults."""
    if profile is None:
        return ProfileRules()
    return ProfileRules(
        channel_order=tuple(Channel(c) for c in profile.channel_order),
        window=SendWindow(
            start=profile.window_start,
            end=profile.window_end,
            quiet_start=profile.quiet_start,
            quiet_end=profile.quiet_end,
            days=frozenset(profile.send_days),
        ),
        caps=FrequencyCaps(per_day=profile.cap_per_day, per_week=profile.cap_per_week),
        retry=RetryPolicy.of(profile.retry_delays),
        lead_threshold=profile.lead_threshold,
    )
