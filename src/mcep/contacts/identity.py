"""Pure validation of a prospect's identities: phone numbers, channel handles, time zones."""

from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache

import phonenumbers

from mcep.contacts.models import Channel
from mcep.errors import ValidationFailed

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TELEGRAM_USERNAME = re.compile(r"^@[A-Za-z][A-Za-z0-9_]{4,31}$")
_TELEGRAM_CHAT_ID = re.compile(r"^-?[0-9]{1,20}$")
PHONE_CHANNELS = (Channel.WHATSAPP, Channel.SIGNAL, Channel.IMESSAGE)


def normalize_phone(raw: str, *, field: str, default_region: str | None = None) -> str:
    """E.164 form of ``raw``; a 422 naming ``field`` when it is not a valid number."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        hint = "" if raw.strip().startswith("+") else " (use the +<country code> form)"
        raise ValidationFailed.of(field, f"not a phone number: {exc._msg}{hint}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValidationFailed.of(field, "not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(name: str, *, field: str = "timezone") -> str:
    if name not in _zones():
        raise ValidationFailed.of(field, f"unknown IANA time zone {name!r} (e.g. Europe/London)")
    return name


def normalize_handle(
    channel: Channel, raw: str, *, field: str, default_region: str | None = None
) -> str:
    """The canonical handle for ``channel``: E.164 for WhatsApp and Signal, a chat id or
    @username for Telegram, E.164 or an e-mail address for iMessage."""
    raw = raw.strip()
    if channel is Channel.TELEGRAM:
        if _TELEGRAM_CHAT_ID.match(raw) or _TELEGRAM_USERNAME.match(raw):
            return raw
        raise ValidationFailed.of(field, "a Telegram chat id (digits) or @username is required")
    if channel is Channel.IMESSAGE and "@" in raw:
        if not _EMAIL.match(raw):
            raise ValidationFailed.of(field, "not a valid e-mail address")
        return raw.lower()
    return normalize_phone(raw, field=field, default_region=default_region)
