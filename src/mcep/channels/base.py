"""The contract between MCEP and the messaging providers.

Every provider adapter (WhatsApp Cloud API, Telegram Bot API, signal-cli JSON-RPC, BlueBubbles)
implements :class:`ChannelAdapter`. The dispatch engine only ever sees these value types:
what to send (:class:`OutboundMessage`), through which sender account (:class:`DeviceRef`),
and how it went (:data:`SendResult`). Inbound traffic (status webhooks, replies, opt-outs) is
parsed into :data:`ProviderEvent` values after the request has been verified.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


class Platform(enum.StrEnum):
    WHATSAPP = "whatsapp"
    TELEGRAM = "telegram"
    SIGNAL = "signal"
    IMESSAGE = "imessage"


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """One sender account as an adapter needs to know it.

    ``address`` is the account's identity at the provider: the WhatsApp phone-number id, the
    Telegram bot's username, the Signal account number, the iMessage account. ``base_url`` and
    ``token`` come from configuration, so pointing a device at the sandbox or at the real
    service is a matter of settings, never of code. ``options`` carries provider specifics
    (for example ``api_version`` for WhatsApp).
    """

    id: str
    platform: Platform
    address: str
    base_url: str
    token: str = field(repr=False)
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WhatsAppTemplate:
    """An approved WhatsApp template and the body parameters for this recipient, in order."""

    name: str
    language: str
    body_parameters: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to one recipient.

    ``key`` is MCEP's idempotency key for this send attempt (the provider echoes it where the
    protocol allows: WhatsApp ``biz_opaque_callback_data``, BlueBubbles ``tempGuid``).
    ``recipient`` is the channel handle: an E.164 number for WhatsApp and Signal, a chat id for
    Telegram, an E.164 number or e-mail address for iMessage.
    """

    key: str
    recipient: str
    body: str
    template: WhatsAppTemplate | None = None


# --- send outcomes -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    provider_message_id: str


@dataclass(frozen=True, slots=True)
class RetryLater:
    """A transient failure; ``retry_after`` is the provider's own delay in seconds, if given."""

    reason: str
    retry_after: float | None = None
    code: str | None = None
    per_recipient: bool = False


@dataclass(frozen=True, slots=True)
class PermanentFailure:
    """This recipient can't be reached by this message (not on the platform, blocked, ...)."""

    reason: str
    code: str | None = None
    opted_out: bool = False
    needs_template: bool = False


@dataclass(frozen=True, slots=True)
class DeviceFailure:
    """The sender account itself is unusable (token revoked, banned, captcha challenge)."""

    reason: str
    code: str | None = None
    retry_after: float | None = None


SendResult = Accepted | RetryLater | PermanentFailure | DeviceFailure


# --- health ------------------------------------------------------------------------------


class HealthStatus(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Health:
    status: HealthStatus
    detail: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)


# --- inbound events ----------------------------------------------------------------------


class DeliveryStatus(enum.StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """The provider reports progress of a message it accepted earlier."""

    event_id: str
    provider_message_id: str
    status: DeliveryStatus
    at: datetime
    error_code: str | None = None
    error_reason: str | None = None
    message_key: str | None = None
    """Our idempotency key when the provider echoes it (WhatsApp ``biz_opaque_callback_data``)."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A person wrote to one of our sender accounts."""

    event_id: str
    sender: str
    device_address: str
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class OptOutEvent:
    """The provider itself reports that the person opted out (for example WhatsApp 131050)."""

    event_id: str
    sender: str
    device_address: str
    at: datetime
    reason: str = ""


ProviderEvent = StatusEvent | InboundMessage | OptOutEvent


@runtime_checkable
class ChannelAdapter(Protocol):
    """What the dispatch engine needs from a provider."""

    platform: Platform

    async def send(self, message: OutboundMessage, device: DeviceRef) -> SendResult:
        """Send one message; classify every outcome, never raise for a provider answer."""
        ...

    async def probe(self, device: DeviceRef) -> Health:
        """Ask the provider's own health call how this sender account is doing."""
        ...
