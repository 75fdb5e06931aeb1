"""The sandbox's behaviour model: send decisions, fates and the ledger."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from mcep.sandbox.behaviour import (
    Behaviour,
    DecisionKind,
    Delay,
    DeviceBehaviour,
    Fate,
    LedgerKey,
    RecipientBehaviour,
    SendLedger,
    decide_send,
    is_on_platform,
    plan_fate,
)


def decide(behaviour: Behaviour, **kwargs: object) -> DecisionKind:
    args: dict[str, object] = {
        "platform": "whatsapp",
        "device": "dev",
        "recipient": "15550001111",
        "now": 10.0,
    }
    args.update(kwargs)
    return decide_send(behaviour, random.Random(1), **args).kind  # type: ignore[arg-type]


def test_default_behaviour_accepts() -> None:
    assert decide(Behaviour()) is DecisionKind.ACCEPT


@pytest.mark.parametrize(
    ("behaviour", "kwargs", "expected"),
    [
        (Behaviour(rate_limit_rate=1.0), {"authorized": False}, DecisionKind.UNAUTHORIZED),
        (
            Behaviour(rate_limit_rate=1.0, devices={"dev": DeviceBehaviour(banned_at=5.0)}),
            {},
            DecisionKind.DEVICE_BANNED,
        ),
        (
            Behaviour(
                rate_limit_rate=1.0, devices={"dev": DeviceBehaviour(offline=((5.0, 20.0),))}
            ),
            {},
            DecisionKind.DEVICE_OFFLINE,
        ),
        (Behaviour(rate_limit_rate=1.0, transient_error_rate=1.0), {}, DecisionKind.RATE_LIMITED),
        (Behaviour(transient_error_rate=1.0, not_on_platform_rate=1.0), {}, DecisionKind.TRANSIENT),
        (Behaviour(not_on_platform_rate=1.0), {"opted_out": True}, DecisionKind.NOT_ON_PLATFORM),
        (Behaviour(), {"opted_out": True}, DecisionKind.OPTED_OUT),
    ],
)
def test_account_problems_come_before_throttling_before_recipient(
    behaviour: Behaviour, kwargs: dict[str, object], expected: DecisionKind
) -> None:
    assert decide(behaviour, **kwargs) is expected


def test_device_timeline() -> None:
    device = DeviceBehaviour(offline=((5.0, 20.0),), banned_at=100.0)
    behaviour = Behaviour(devices={"dev": device})
    assert decide(behaviour, now=4.9) is DecisionKind.ACCEPT
    assert decide(behaviour, now=5.0) is DecisionKind.DEVICE_OFFLINE
    assert decide(behaviour, now=20.0) is DecisionKind.ACCEPT
    assert decide(behaviour, now=100.0) is DecisionKind.DEVICE_BANNED
    assert decide(behaviour, device="other", now=100.0) is DecisionKind.ACCEPT


def test_rate_limit_carries_the_configured_delay() -> None:
    decision = decide_send(
        Behaviour(rate_limit_rate=1.0, retry_after=7.5),
        random.Random(0),
        platform="telegram",
        device="d",
        recipient="1",
        now=0.0,
    )
    assert decision.retry_after == 7.5 and not decision.accepted


def test_per_device_rates_override_the_run() -> None:
    behaviour = Behaviour(devices={"flaky": DeviceBehaviour(transient_error_rate=1.0)})
    assert decide(behaviour, device="flaky") is DecisionKind.TRANSIENT
    assert decide(behaviour, device="fine") is DecisionKind.ACCEPT


def test_rates_are_honoured_statistically_and_reproducibly() -> None:
    behaviour = Behaviour(seed=3, transient_error_rate=0.05, rate_limit_rate=0.02)

    def run() -> Counter[DecisionKind]:
        rng = random.Random(behaviour.seed)
        return Counter(
            decide_send(behaviour, rng, platform="p", device="d", recipient=str(i), now=0).kind
            for i in range(20_000)
        )

    counts = run()
    assert counts == run()
    assert 0.015 < counts[DecisionKind.RATE_LIMITED] / 20_000 < 0.025
    # transient is drawn only for sends not already throttled
    assert 0.04 < counts[DecisionKind.TRANSIENT] / 20_000 < 0.06


def test_not_on_platform_is_stable_per_recipient_and_overridable() -> None:
    behaviour = Behaviour(seed=9, not_on_platform_rate=0.3)
    absent = [
        r for r in map(str, range(2000)) if not is_on_platform(behaviour, platform="p", recipient=r)
    ]
    assert 0.25 < len(absent) / 2000 < 0.35
    again = [
        r for r in map(str, range(2000)) if not is_on_platform(behaviour, platform="p", recipient=r)
    ]
    assert absent == again
    pinned = behaviour.with_recipient(absent[0], RecipientBehaviour(on_platform=True))
    assert is_on_platform(pinned, platform="p", recipient=absent[0])


def test_fate_follows_probabilities_and_ordering() -> None:
    behaviour = Behaviour(
        deliver_probability=1.0,
        read_probability=1.0,
        reply_probability=1.0,
        opt_out_probability=1.0,
        deliver_delay=Delay(1, 2),
        read_delay=Delay(1, 2),
        reply_delay=Delay(1, 2),
        reply_corpus=("STOP",),
    )
    fate = plan_fate(behaviour, random.Random(0), recipient="r")
    assert fate.delivered_after is not None and fate.read_after is not None
    assert fate.reply_after is not None and fate.opt_out_after is not None
    assert 1 <= fate.delivered_after <= 2
    assert fate.delivered_after < fate.read_after < fate.reply_after
    assert fate.reply_text == "STOP"


def test_undelivered_messages_have_no_later_events() -> None:
    behaviour = Behaviour(deliver_probability=0.0, read_probability=1.0, reply_probability=1.0)
    assert plan_fate(behaviour, random.Random(0), recipient="r") == Fate()


def test_recipient_overrides_the_fate() -> None:
    behaviour = Behaviour(read_probability=0.0).with_recipient(
        "fan", RecipientBehaviour(read_probability=1.0, reply_probability=1.0, reply_text="Hi!")
    )
    fan = plan_fate(behaviour, random.Random(0), recipient="fan")
    assert fan.read_after is not None and fan.reply_text == "Hi!"
    assert plan_fate(behaviour, random.Random(0), recipient="other").read_after is None


def test_reply_share_matches_probability() -> None:
    behaviour = Behaviour(reply_probability=0.2)
    rng = random.Random(5)
    replies = sum(
        plan_fate(behaviour, rng, recipient="r").reply_after is not None for _ in range(5000)
    )
    assert 0.17 < replies / 5000 < 0.23


def test_ledger_counts_per_key_and_finds_duplicates() -> None:
    ledger = SendLedger()
    a = LedgerKey("whatsapp", "dev", "1555", "k1")
    b = LedgerKey("telegram", "42", "7", "hello")
    assert ledger.record(a, provider_message_id="w1", at=0.0) == 1
    assert ledger.record(b, provider_message_id="t1", at=0.0) == 1
    assert ledger.record(a, provider_message_id="w2", at=1.0) == 2
    assert ledger.count(a) == 2 and ledger.total == 3
    assert ledger.duplicates() == {a: 2}
    assert ledger.counts_by_message_key("whatsapp") == {"k1": 2}
    assert ledger.counts_by_message_key() == {"k1": 2, "hello": 1}
    entry = ledger.lookup("t1")
    assert entry is not None and entry.key == b
    ledger.note_decision("telegram", DecisionKind.TRANSIENT)
    assert ledger.decisions() == {("telegram", DecisionKind.TRANSIENT): 1}
