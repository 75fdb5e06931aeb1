"""Features from hand-made histories, and the incremental path against the batch one."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mcep.scoring.features import (
    FEATURE_NAMES,
    EngagementEvent,
    EventKind,
    FeatureState,
    compute_features,
    feature_names,
    reply_intents,
    reply_sentiment,
)

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)  # a Friday
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


def ev(kind: str, at: datetime, channel: str = "whatsapp", **extra: str) -> EngagementEvent:
    return EngagementEvent(EventKind(kind), at, channel, **extra)


def history() -> list[EngagementEvent]:
    """Three sends over two campaigns; two replies; one earlier campaign won, one lost."""
    h = timedelta(hours=1)
    return [
        ev("campaign_outcome", T0 - timedelta(days=90), outcome="success"),
        ev("campaign_outcome", T0 - timedelta(days=40), outcome="failure"),
        ev("queued", T0 - h, campaign_id="c1"),
        ev("sent", T0, campaign_id="c1"),
        ev("delivered", T0 + 0.01 * h, campaign_id="c1"),
        ev("read", T0 + h, campaign_id="c1"),
        ev("replied", T0 + 2 * h, text="Sounds great, tell me more!"),
        ev("sent", T0 + 48 * h, campaign_id="c1"),
        ev("delivered", T0 + 48.1 * h, campaign_id="c1"),
        ev("sent", T0 + 96 * h, "telegram", campaign_id="c2"),
        ev("replied", T0 + 96.5 * h, "telegram", text="What are the fees?"),
        ev("failed", T0 + 100 * h, "telegram", campaign_id="c2"),
    ]


def test_hand_made_history_gives_the_hand_computed_vector() -> None:
    f = compute_features(history(), now=NOW)
    assert f["contacts_sent"] == 3
    assert f["campaigns_contacted"] == 2
    assert f["delivered_rate"] == pytest.approx(2 / 3)
    assert f["read_rate"] == pytest.approx(1 / 3)
    assert f["reply_rate"] == pytest.approx(2 / 3)
    assert f["failure_rate"] == pytest.approx(1 / 3)
    assert f["replies_count"] == 2
    assert f["median_reply_latency_h"] == pytest.approx((2 + 0.5) / 2)
    last_send, last_reply = T0 + timedelta(hours=96), T0 + timedelta(hours=96.5)
    assert f["days_since_last_contact"] == pytest.approx((NOW - last_send) / timedelta(days=1))
    assert f["days_since_last_reply"] == pytest.approx((NOW - last_reply) / timedelta(days=1))
    assert f["sent_share_whatsapp"] == pytest.approx(2 / 3)
    assert f["sent_share_telegram"] == pytest.approx(1 / 3)
    assert f["sent_share_signal"] == 0
    assert f["prev_campaign_successes"] == 1
    assert f["prev_campaign_failures"] == 1
    assert f["opted_out"] == 0


def test_reply_text_gives_sentiment_and_intents() -> None:
    f = compute_features(history(), now=NOW)
    positive = reply_sentiment("Sounds great, tell me more!")
    neutral = reply_sentiment("What are the fees?")
    assert positive > 0.5 and abs(neutral) < 0.2
    assert f["sentiment_last"] == neutral  # the later reply
    assert f["sentiment_min"] == min(positive, neutral)
    assert f["sentiment_mean"] == pytest.approx((positive + neutral) / 2)
    assert (f["intent_interest"], f["intent_question"]) == (1, 1)
    assert (f["intent_objection"], f["intent_stop"]) == (0, 0)


def test_no_history_gives_zero_counts_and_missing_rates() -> None:
    f = compute_features([], now=NOW)
    assert f["contacts_sent"] == 0 and f["replies_count"] == 0 and f["opted_out"] == 0
    for name in ("delivered_rate", "reply_rate", "days_since_last_contact", "sentiment_mean"):
        assert math.isnan(f[name]), name


def test_vector_order_is_the_documented_order_with_sorted_attributes() -> None:
    f = compute_features(history(), now=NOW, attributes={"wealth_band": 3, "age": 41})
    assert tuple(f) == feature_names(["wealth_band", "age"])
    assert tuple(f)[: len(FEATURE_NAMES)] == FEATURE_NAMES
    assert (f["attr_age"], f["attr_wealth_band"]) == (41.0, 3.0)


def test_qualified_events_are_the_label_and_never_a_feature() -> None:
    with_label = [*history(), ev("qualified", NOW - timedelta(hours=1))]
    assert compute_features(with_label, now=NOW) == compute_features(history(), now=NOW)


def test_opt_out_and_stop_reply() -> None:
    events = [
        ev("sent", T0),
        ev("replied", T0 + timedelta(minutes=5), text="STOP"),
        ev("opted_out", T0 + timedelta(minutes=5)),
    ]
    f = compute_features(events, now=NOW)
    assert (f["opted_out"], f["intent_stop"]) == (1.0, 1.0)


def test_latency_counts_only_replies_after_a_send_and_uses_the_latest_send() -> None:
    events = [
        ev("replied", T0 - timedelta(hours=5), text="hello?"),  # unsolicited: no latency
        ev("sent", T0),
        ev("sent", T0 + timedelta(hours=10)),
        ev("replied", T0 + timedelta(hours=13)),  # 3 h after the second send
    ]
    assert compute_features(events, now=NOW)["median_reply_latency_h"] == pytest.approx(3)


def test_rates_are_capped_when_callbacks_outnumber_sends() -> None:
    events = [ev("sent", T0), ev("delivered", T0), ev("delivered", T0 + timedelta(seconds=1))]
    assert compute_features(events, now=NOW)["delivered_rate"] == 1.0


def test_time_of_day_is_read_in_the_prospects_zone() -> None:
    zurich = ZoneInfo("Europe/Zurich")  # UTC+1 in early March
    events = [
        ev("sent", datetime(2026, 3, 2, 7, 30, tzinfo=UTC)),  # 08:30 local: before hours
        ev("sent", datetime(2026, 3, 2, 8, 30, tzinfo=UTC)),  # 09:30 local: business hours
        ev("replied", datetime(2026, 3, 2, 18, 0, tzinfo=UTC)),  # 19:00 local Monday: evening
        ev("replied", datetime(2026, 3, 7, 10, 0, tzinfo=UTC)),  # Saturday
    ]
    f = compute_features(events, now=NOW, tz=zurich)
    assert f["sent_share_business_hours"] == 0.5
    assert f["reply_share_evening"] == 0.5
    assert f["reply_share_weekend"] == 0.5
    assert f["reply_share_business_hours"] == 0.0
    in_utc = compute_features(events, now=NOW)
    assert in_utc["sent_share_business_hours"] == 0.0  # 07:30 and 08:30 UTC


def test_times_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        EngagementEvent(EventKind.SENT, datetime(2026, 1, 1), "whatsapp")
    with pytest.raises(ValueError, match="now"):
        compute_features([], now=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sounds good, tell me more", {"interest"}),
        ("Not interested, thanks", {"objection"}),
        ("no thanks, maybe later", {"objection"}),
        ("Please STOP messaging me", {"stop"}),
        ("unsubscribe", {"stop"}),
        ("How much are the fees?", {"question"}),
        ("¿Cuánto cuesta?", {"question"}),
        ("Me interesa, llámame", {"interest"}),
        ("No me interesa", {"objection"}),
        ("Tenho interesse, pode me ligar? me liga", {"interest", "question"}),
        ("Não tenho interesse", {"objection"}),
        ("Intéressé, appelez-moi", {"interest"}),
        ("Kein Interesse, bitte abmelden", {"objection", "stop"}),
        ("Mi interessa, chiamami", {"interest"}),
        ("Stopped by your office yesterday", set()),
        ("Can we stop the call at 3?", {"question"}),
        ("Please stop messaging me", {"stop"}),
        ("Baja por favor", {"stop"}),
        ("Sair", {"stop"}),
        ("No me escribas más", {"stop"}),
        ("Please don't call me again", {"stop"}),
        ("Que bom!", set()),
        ("Was great to meet you", set()),
        ("Sem interesse", {"objection"}),
    ],
)
def test_intent_cues_in_several_languages(text: str, expected: set[str]) -> None:
    assert reply_intents(text) == expected


# --- incremental == batch ----------------------------------------------------------------

TEXTS = [
    "Sounds great, tell me more!",
    "not interested",
    "STOP",
    "What are the fees?",
    "ok",
    "Terrible idea, please don't contact me",
    None,
]
KINDS = [k for k in EventKind]
OUTCOMES = ["success", "failure", "other"]


def random_history(rng: random.Random) -> list[EngagementEvent]:
    events = []
    for _ in range(rng.randint(0, 40)):
        kind = rng.choice(KINDS)
        # Whole minutes, so equal timestamps (ties) happen too.
        at = T0 + timedelta(minutes=rng.randint(0, 60 * 24 * 14))
        events.append(
            EngagementEvent(
                kind,
                at,
                rng.choice(["whatsapp", "telegram", "signal", "imessage", "sms"]),
                campaign_id=rng.choice([None, "c1", "c2", "c3"]),
                text=rng.choice(TEXTS) if kind is EventKind.REPLIED else None,
                outcome=rng.choice(OUTCOMES) if kind is EventKind.CAMPAIGN_OUTCOME else None,
            )
        )
    return events


@pytest.mark.parametrize("seed", range(150))
def test_incremental_state_equals_batch_whatever_the_arrival_order(seed: int) -> None:
    rng = random.Random(seed)
    events = random_history(rng)
    tz = rng.choice([UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Singapore")])
    attributes = {"aum_musd": rng.uniform(0, 50)}
    expected = compute_features(
        sorted(events, key=lambda e: e.at), now=NOW, attributes=attributes, tz=tz
    )
    arrival = events[:]
    rng.shuffle(arrival)  # callbacks and replies arrive out of order
    state = FeatureState(tz=tz)
    for event in arrival:
        state.add(event)
    assert state.features(now=NOW, attributes=attributes) == pytest.approx(
        expected, rel=1e-12, abs=1e-12, nan_ok=True
    )


def test_incremental_state_is_current_after_every_event() -> None:
    rng = random.Random(99)
    events = random_history(rng) + random_history(rng)
    state = FeatureState()
    for i, event in enumerate(events, start=1):
        state.add(event)
        assert state.features(now=NOW) == pytest.approx(
            compute_features(events[:i], now=NOW), rel=1e-12, abs=1e-12, nan_ok=True
        )
