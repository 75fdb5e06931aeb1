"""Who is skipped and why, and which channel the rest get."""

from __future__ import annotations

import uuid

import pytest

from mcep.campaigns.eligibility import (
    Eligible,
    RecipientFacts,
    Skipped,
    SkipReason,
    check_recipient,
    choose_channel,
)
from mcep.contacts.models import Channel as C
from mcep.dispatch.caps import FrequencyCaps

ORDER = [C.WHATSAPP, C.SIGNAL, C.TELEGRAM]
CAPS = FrequencyCaps(per_day=1, per_week=3)


def facts(**overrides: object) -> RecipientFacts:
    values: dict[str, object] = {
        "prospect_id": uuid.uuid4(),
        "opted_out": False,
        "erased": False,
        "consented": frozenset({C.WHATSAPP, C.TELEGRAM}),
        "handles": frozenset({C.WHATSAPP, C.SIGNAL, C.TELEGRAM}),
    }
    values.update(overrides)
    return RecipientFacts(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"erased": True, "opted_out": True}, SkipReason.ERASED),
        ({"opted_out": True}, SkipReason.OPTED_OUT),
        ({"consented": frozenset()}, SkipReason.NO_CONSENT),
        ({"consented": frozenset({C.IMESSAGE})}, SkipReason.NO_CONSENT),  # not in the profile
        ({"handles": frozenset({C.SIGNAL})}, SkipReason.NO_HANDLE),
        ({"last_day": 1}, SkipReason.FREQUENCY_CAP_DAY),
        ({"last_week": 3}, SkipReason.FREQUENCY_CAP_WEEK),
        ({"opted_out": True, "last_day": 5}, SkipReason.OPTED_OUT),
    ],
)
def test_skip_reasons(overrides: dict[str, object], reason: SkipReason) -> None:
    assert check_recipient(facts(**overrides), channel_order=ORDER, caps=CAPS) == Skipped(reason)


def test_channels_follow_the_profile_order_among_consented_with_handle() -> None:
    result = check_recipient(facts(), channel_order=ORDER, caps=CAPS)
    assert result == Eligible((C.WHATSAPP, C.TELEGRAM))  # signal has a handle but no consent
    reordered = check_recipient(facts(), channel_order=[C.TELEGRAM, C.WHATSAPP], caps=CAPS)
    assert reordered == Eligible((C.TELEGRAM, C.WHATSAPP))


def test_choose_channel_falls_back_when_a_platform_has_no_sender() -> None:
    channels = (C.WHATSAPP, C.TELEGRAM)
    assert choose_channel(channels, has_sender=lambda c: True) is C.WHATSAPP
    assert choose_channel(channels, has_sender=lambda c: c is C.TELEGRAM) is C.TELEGRAM
    assert choose_channel(channels, has_sender=lambda c: False) is None
