"""A prospect's feature vector, computed from its engagement history.

Two ways to the same numbers: :func:`compute_features` is the pure reference over a whole
history, and :class:`FeatureState` folds events one at a time, in any arrival order, so a
worker can keep the vector current without re-reading the history. Both build a
:class:`_Summary` of aggregates; :meth:`_Summary.to_features` turns it into the vector.

The vector, in :data:`FEATURE_NAMES` order (rates and shares are ``nan`` when their
denominator is zero or the event never happened; LightGBM treats ``nan`` as missing):

- ``contacts_sent``: messages sent; ``campaigns_contacted``: distinct campaigns among them.
- ``delivered_rate``, ``read_rate``, ``reply_rate``, ``failure_rate``: per message sent,
  capped at 1 (callbacks may arrive for sends recorded elsewhere).
- ``replies_count``: replies received.
- ``median_reply_latency_h``: median hours from the latest send at or before each reply.
- ``days_since_last_contact``, ``days_since_last_reply``: from ``now``, never negative.
- ``sentiment_mean``, ``sentiment_last``, ``sentiment_min``: VADER compound (-1..1) of reply
  texts; VADER reads English, so other languages score near 0.
- ``intent_question``, ``intent_interest``, ``intent_objection``, ``intent_stop``: replies
  showing each cue (see :func:`reply_intents`).
- ``opted_out``: 1 if the prospect ever opted out.
- ``sent_share_<platform>``: share of sends per messaging platform.
- ``sent_share_business_hours``: share of sends on weekdays 09:00-18:00 in the prospect's zone;
  ``reply_share_business_hours``, ``reply_share_evening`` (18:00-23:00) and
  ``reply_share_weekend`` do the same for replies.
- ``prev_campaign_successes``, ``prev_campaign_failures``: outcomes of earlier campaigns.

Profile attributes follow as ``attr_<name>`` in sorted name order (:func:`feature_names`).
``qualified`` events are the training label and never feed a feature.
"""

from __future__ import annotations

import bisect
import enum
import functools
import math
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from mcep.channels.base import Platform
from mcep.inbound.stopwords import is_stop_request

NAN = math.nan
PLATFORMS: tuple[str, ...] = tuple(p.value for p in Platform)
INTENTS: tuple[str, ...] = ("question", "interest", "objection", "stop")

FEATURE_NAMES: tuple[str, ...] = (
    "contacts_sent",
    "campaigns_contacted",
    "delivered_rate",
    "read_rate",
    "reply_rate",
    "failure_rate",
    "replies_count",
    "median_reply_latency_h",
    "days_since_last_contact",
    "days_since_last_reply",
    "sentiment_mean",
    "sentiment_last",
    "sentiment_min",
    *(f"intent_{name}" for name in INTENTS),
    "opted_out",
    *(f"sent_share_{p}" for p in PLATFORMS),
    "sent_share_business_hours",
    "reply_share_business_hours",
    "reply_share_evening",
    "reply_share_weekend",
    "prev_campaign_successes",
    "prev_campaign_failures",
)


class EventKind(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    REPLIED = "replied"
    FAILED = "failed"
    OPTED_OUT = "opted_out"
    QUALIFIED = "qualified"
    CAMPAIGN_OUTCOME = "campaign_outcome"


class CampaignOutcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class EngagementEvent:
    """One fact from a prospect's history.

    ``text`` is the body of a reply; ``outcome`` the result of a finished campaign
    (``campaign_outcome`` events, a :class:`CampaignOutcome` value or any other label).
    """

    kind: EventKind
    at: datetime
    channel: str
    campaign_id: str | None = None
    text: str | None = None
    outcome: str | None = None

    def __post_init__(self) -> None:
        _require_aware(self.at, "event time")
        object.__setattr__(self, "kind", EventKind(self.kind))


def feature_names(attribute_names: Iterable[str] = ()) -> tuple[str, ...]:
    """The full vector order: the event features, then ``attr_<name>`` sorted by name."""
    return FEATURE_NAMES + tuple(f"attr_{name}" for name in sorted(set(attribute_names)))


def compute_features(
    events: Iterable[EngagementEvent],
    *,
    now: datetime,
    attributes: Mapping[str, float] | None = None,
    tz: tzinfo = UTC,
) -> dict[str, float]:
    """The feature vector of one prospect as of ``now``, from its whole event history.

    ``tz`` is the prospect's time zone, for the time-of-day features.
    """
    history = list(events)
    return _summarise(history, tz=tz).to_features(now=now, attributes=attributes or {})


# --- reply text --------------------------------------------------------------------------


@functools.cache
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def reply_sentiment(text: str) -> float:
    """VADER compound score of a reply, from -1 (negative) to 1 (positive)."""
    return float(_analyzer().polarity_scores(text)["compound"])


def _cue(*phrases: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(phrases) + r")\b")


# Phrases are written without accents: replies are matched after folding case and accents.
# English, Spanish, Portuguese, French, German, Italian.
_OBJECTION = _cue(
    r"not (?:really )?interested", r"no interest", r"no thanks?", r"no thank you", r"not now",
    r"too expensive", r"not for me", r"maybe later", r"already have",
    r"no me interesa", r"no estoy interesad[oa]", r"no gracias", r"ahora no", r"muy caro",
    r"ya tengo",
    r"nao tenho interesse", r"sem interesse", r"nao estou interessad[oa]", r"nao obrigad[oa]",
    r"agora nao", r"muito caro", r"ja tenho",
    r"pas interesse(?:e|s)?", r"non merci", r"pas maintenant", r"trop cher",
    r"kein interesse", r"nicht interessiert", r"nein danke", r"nicht jetzt", r"zu teuer",
    r"non mi interessa", r"non sono interessat[oa]", r"no grazie", r"non ora", r"troppo caro",
)  # fmt: skip
_INTEREST = _cue(
    r"interested", r"interesting", r"tell me more", r"sounds good", r"let'?s talk", r"call me",
    r"more info(?:rmation)?", r"yes please", r"i'?d like", r"book a (?:call|meeting)",
    r"me interesa", r"interesad[oa]", r"mas informacion", r"llamame", r"hablemos",
    r"tenho interesse", r"interessad[oa]", r"mais informac(?:oes|ao)", r"me liga",
    r"interesse(?:e|s)?", r"plus d'?infos?", r"appelez-moi",
    r"interessiert", r"mehr infos?", r"rufen sie mich an",
    r"mi interessa", r"interessat[oa]", r"piu informazioni", r"chiamami",
)  # fmt: skip
# Bare keywords ("stop", "baja") count only as a whole message, exactly as the opt-out check
# in mcep.inbound.stopwords reads them; inside a sentence only unambiguous phrases count.
_STOP = _cue(
    r"unsubscribe", r"remove me", r"opt[ -]?out", r"leave me alone",
    r"(?:do not|don'?t|never) (?:contact|message|text|write to|call) me",
    r"stop (?:messaging|texting|contacting|sending|writing|calling)",
    r"darme de baja", r"no me (?:escrib|mand|contact)\w*", r"descadastr\w*",
    r"nao me (?:mande|envie|contate)\w*", r"parem? de (?:enviar|mandar)",
    r"desabonn\w*", r"desinscri\w*", r"arretez de m'?(?:ecrire|envoyer)",
    r"abmelden", r"abbestellen", r"keine nachrichten mehr",
    r"disiscriv\w*", r"cancellami", r"non scrivetemi",
)  # fmt: skip
_QUESTION_START = re.compile(
    r"^(?:what|when|how|why|who|where|which|can|could|would|do|does|is|are"
    r"|cuando|como|donde|cual|quanto|onde|qual|quoi|quand|comment|pourquoi|quel"
    r"|wann|wie|wo|warum|welche|cosa|dove|perche|quale)\b"
)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip()


def reply_intents(text: str) -> frozenset[str]:
    """The intent cues in a reply: any of ``question``, ``interest``, ``objection``, ``stop``.

    Objections and stop phrases are removed before looking for interest, so neither
    "not interested" nor "don't call me" reads as interest.
    A reply the opt-out check would take as a stop request always shows ``stop``.
    """
    folded = _fold(text)
    found: set[str] = set()
    if "?" in folded or "¿" in folded or _QUESTION_START.search(folded):
        found.add("question")
    if _OBJECTION.search(folded):
        found.add("objection")
    if _INTEREST.search(_STOP.sub(" ", _OBJECTION.sub(" ", folded))):
        found.add("interest")
    if _STOP.search(folded) or is_stop_request(text):
        found.add("stop")
    return frozenset(found)


# --- local time --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Moment:
    """When something happened in the prospect's own day."""

    business_hours: bool
    evening: bool
    weekend: bool


def _moment(at: datetime, tz: tzinfo) -> _Moment:
    local = at.astimezone(tz)
    weekend = local.weekday() >= 5
    return _Moment(
        business_hours=not weekend and 9 <= local.hour < 18,
        evening=18 <= local.hour < 23,
        weekend=weekend,
    )


# --- the aggregates both paths build -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Summary:
    counts: Mapping[EventKind, int]
    campaigns: int
    last_sent: datetime | None
    last_reply: datetime | None
    latencies_h: tuple[float, ...]
    sentiments: int
    sentiment_sum: float
    sentiment_min: float
    sentiment_last: float
    intents: Mapping[str, int]
    sent_by_platform: Mapping[str, int]
    sent_business: int
    replies_business: int
    replies_evening: int
    replies_weekend: int
    outcomes: Mapping[str, int]

    def to_features(self, *, now: datetime, attributes: Mapping[str, float]) -> dict[str, float]:
        _require_aware(now, "now")
        features = {
            **self._volume(),
            **self._recency(now),
            **self._replies(),
            **self._timing(),
        }
        features.update((f"attr_{k}", float(attributes[k])) for k in sorted(attributes))
        return features

    def _volume(self) -> dict[str, float]:
        sent = self.counts.get(EventKind.SENT, 0)
        return {
            "contacts_sent": float(sent),
            "campaigns_contacted": float(self.campaigns),
            "delivered_rate": _rate(self.counts.get(EventKind.DELIVERED, 0), sent),
            "read_rate": _rate(self.counts.get(EventKind.READ, 0), sent),
            "reply_rate": _rate(self.counts.get(EventKind.REPLIED, 0), sent),
            "failure_rate": _rate(self.counts.get(EventKind.FAILED, 0), sent),
            "replies_count": float(self.counts.get(EventKind.REPLIED, 0)),
        }

    def _recency(self, now: datetime) -> dict[str, float]:
        latency = statistics.median(self.latencies_h) if self.latencies_h else NAN
        return {
            "median_reply_latency_h": latency,
            "days_since_last_contact": _days_between(self.last_sent, now),
            "days_since_last_reply": _days_between(self.last_reply, now),
        }

    def _replies(self) -> dict[str, float]:
        n = self.sentiments
        return {
            "sentiment_mean": self.sentiment_sum / n if n else NAN,
            "sentiment_last": self.sentiment_last if n else NAN,
            "sentiment_min": self.sentiment_min if n else NAN,
            **{f"intent_{name}": float(self.intents.get(name, 0)) for name in INTENTS},
            "opted_out": 1.0 if self.counts.get(EventKind.OPTED_OUT, 0) else 0.0,
        }

    def _timing(self) -> dict[str, float]:
        sent = self.counts.get(EventKind.SENT, 0)
        replies = self.counts.get(EventKind.REPLIED, 0)
        return {
            **{f"sent_share_{p}": _share(self.sent_by_platform.get(p, 0), sent) for p in PLATFORMS},
            "sent_share_business_hours": _share(self.sent_business, sent),
            "reply_share_business_hours": _share(self.replies_business, replies),
            "reply_share_evening": _share(self.replies_evening, replies),
            "reply_share_weekend": _share(self.replies_weekend, replies),
            "prev_campaign_successes": float(self.outcomes.get(CampaignOutcome.SUCCESS, 0)),
            "prev_campaign_failures": float(self.outcomes.get(CampaignOutcome.FAILURE, 0)),
        }


def _summarise(history: list[EngagementEvent], *, tz: tzinfo) -> _Summary:
    """The reference aggregation over a whole history (the batch path)."""
    by_kind: dict[EventKind, list[EngagementEvent]] = {kind: [] for kind in EventKind}
    for event in history:
        by_kind[event.kind].append(event)
    sent, replies = by_kind[EventKind.SENT], by_kind[EventKind.REPLIED]
    scored = sorted((r.at, reply_sentiment(r.text)) for r in replies if r.text)
    sentiments = [s for _, s in scored]
    intents = Counter(i for r in replies if r.text for i in reply_intents(r.text))
    sent_moments = [_moment(e.at, tz) for e in sent]
    reply_moments = [_moment(e.at, tz) for e in replies]
    return _Summary(
        counts={kind: len(items) for kind, items in by_kind.items()},
        campaigns=len({e.campaign_id for e in sent if e.campaign_id is not None}),
        last_sent=max((e.at for e in sent), default=None),
        last_reply=max((e.at for e in replies), default=None),
        latencies_h=_merge_latencies([e.at for e in sent], [e.at for e in replies]),
        sentiments=len(sentiments),
        sentiment_sum=math.fsum(sentiments),
        sentiment_min=min(sentiments, default=NAN),
        sentiment_last=max(scored, default=(None, NAN))[1],
        intents=intents,
        sent_by_platform=Counter(e.channel for e in sent),
        sent_business=sum(m.business_hours for m in sent_moments),
        replies_business=sum(m.business_hours for m in reply_moments),
        replies_evening=sum(m.evening for m in reply_moments),
        replies_weekend=sum(m.weekend for m in reply_moments),
        outcomes=Counter(e.outcome for e in by_kind[EventKind.CAMPAIGN_OUTCOME] if e.outcome),
    )


def _merge_latencies(sends: list[datetime], replies: list[datetime]) -> tuple[float, ...]:
    """Hours from the latest send at or before each reply, walking both timelines in order."""
    sends = sorted(sends)
    latencies: list[float] = []
    i, latest = 0, None
    for reply in sorted(replies):
        while i < len(sends) and sends[i] <= reply:
            latest, i = sends[i], i + 1
        if latest is not None:
            latencies.append((reply - latest).total_seconds() / 3600)
    return tuple(sorted(latencies))


# --- the incremental path ----------------------------------------------------------------


@dataclass(slots=True)
class FeatureState:
    """A prospect's aggregates, updated one event at a time in whatever order they arrive.

    ``add`` updates counters and keeps the send and reply times sorted; ``features`` derives
    only the reply latencies afresh, so a late callback for an old send is still placed right.
    It gives what :func:`compute_features` gives for the same events (the sentiment sum may
    differ in the last bits, being added up in arrival order).
    """

    tz: tzinfo = UTC
    _counts: Counter[EventKind] = field(default_factory=Counter)
    _campaigns: set[str] = field(default_factory=set)
    _sends: list[datetime] = field(default_factory=list)
    _replies: list[datetime] = field(default_factory=list)
    _sentiments: int = 0
    _sentiment_sum: float = 0.0
    _sentiment_min: float = NAN
    _sentiment_last: tuple[datetime, float] | None = None
    _intents: Counter[str] = field(default_factory=Counter)
    _sent_by_platform: Counter[str] = field(default_factory=Counter)
    _moments: Counter[str] = field(default_factory=Counter)
    _outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, event: EngagementEvent) -> None:
        """Fold one event into the aggregates."""
        self._counts[event.kind] += 1
        if event.kind is EventKind.SENT:
            self._add_send(event)
        elif event.kind is EventKind.REPLIED:
            self._add_reply(event)
        elif event.kind is EventKind.CAMPAIGN_OUTCOME and event.outcome:
            self._outcomes[event.outcome] += 1

    def features(
        self, *, now: datetime, attributes: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """The current feature vector as of ``now``."""
        return self._summary().to_features(now=now, attributes=attributes or {})

    def to_dict(self) -> dict[str, Any]:
        """The aggregates as JSON-ready values (times in integer microseconds since the epoch).

        The time zone is not kept: it is the prospect's, handed back to :meth:`from_dict`.
        """
        return {
            "v": _STATE_FORMAT,
            "counts": {kind.value: n for kind, n in self._counts.items() if n},
            "campaigns": sorted(self._campaigns),
            "sends": [_micros(at) for at in self._sends],
            "replies": [_micros(at) for at in self._replies],
            "sentiments": self._sentiments,
            "sentiment_sum": self._sentiment_sum,
            "sentiment_min": None if self._sentiments == 0 else self._sentiment_min,
            "sentiment_last": None
            if self._sentiment_last is None
            else [_micros(self._sentiment_last[0]), self._sentiment_last[1]],
            "intents": dict(self._intents),
            "sent_by_platform": dict(self._sent_by_platform),
            "moments": dict(self._moments),
            "outcomes": dict(self._outcomes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, tz: tzinfo = UTC) -> FeatureState:
        """Rebuild a state from :meth:`to_dict` output."""
        if data.get("v") != _STATE_FORMAT:
            raise ValueError(f"feature state format {data.get('v')!r} is not {_STATE_FORMAT}")
        last = data["sentiment_last"]
        sentiments = int(data["sentiments"])
        return cls(
            tz=tz,
            _counts=Counter({EventKind(k): int(n) for k, n in data["counts"].items()}),
            _campaigns=set(data["campaigns"]),
            _sends=[_from_micros(t) for t in data["sends"]],
            _replies=[_from_micros(t) for t in data["replies"]],
            _sentiments=sentiments,
            _sentiment_sum=float(data["sentiment_sum"]),
            _sentiment_min=NAN if sentiments == 0 else float(data["sentiment_min"]),
            _sentiment_last=None if last is None else (_from_micros(last[0]), float(last[1])),
            _intents=Counter(data["intents"]),
            _sent_by_platform=Counter(data["sent_by_platform"]),
            _moments=Counter(data["moments"]),
            _outcomes=Counter(data["outcomes"]),
        )

    def _add_send(self, event: EngagementEvent) -> None:
        bisect.insort(self._sends, event.at)
        if event.campaign_id is not None:
            self._campaigns.add(event.campaign_id)
        self._sent_by_platform[event.channel] += 1
        self._moments["sent_business"] += _moment(event.at, self.tz).business_hours

    def _add_reply(self, event: EngagementEvent) -> None:
        bisect.insort(self._replies, event.at)
        moment = _moment(event.at, self.tz)
        self._moments["replies_business"] += moment.business_hours
        self._moments["replies_evening"] += moment.evening
        self._moments["replies_weekend"] += moment.weekend
        if event.text:
            self._add_text(event.at, event.text)

    def _add_text(self, at: datetime, text: str) -> None:
        score = reply_sentiment(text)
        self._sentiments += 1
        self._sentiment_sum += score
        self._sentiment_min = score if self._sentiments == 1 else min(self._sentiment_min, score)
        if self._sentiment_last is None or (at, score) > self._sentiment_last:
            self._sentiment_last = (at, score)
        self._intents.update(reply_intents(text))

    def _latencies(self) -> tuple[float, ...]:
        latencies: list[float] = []
        for reply in self._replies:
            i = bisect.bisect_right(self._sends, reply)
            if i:
                latencies.append((reply - self._sends[i - 1]).total_seconds() / 3600)
        return tuple(sorted(latencies))

    def _summary(self) -> _Summary:
        return _Summary(
            counts=self._counts,
            campaigns=len(self._campaigns),
            last_sent=self._sends[-1] if self._sends else None,
            last_reply=self._replies[-1] if self._replies else None,
            latencies_h=self._latencies(),
            sentiments=self._sentiments,
            sentiment_sum=self._sentiment_sum,
            sentiment_min=self._sentiment_min,
            sentiment_last=self._sentiment_last[1] if self._sentiment_last else NAN,
            intents=self._intents,
            sent_by_platform=self._sent_by_platform,
            sent_business=self._moments["sent_business"],
            replies_business=self._moments["replies_business"],
            replies_evening=self._moments["replies_evening"],
            replies_weekend=self._moments["replies_weekend"],
            outcomes=self._outcomes,
        )


# --- small helpers -----------------------------------------------------------------------

_STATE_FORMAT = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


def _from_micros(value: int) -> datetime:
    return _EPOCH + int(value) * _MICROSECOND


def vector_to_json(features: Mapping[str, float]) -> dict[str, float | None]:
    """A feature vector as JSON can hold it: missing values (``nan``) become ``None``."""
    return {k: None if math.isnan(v) else v for k, v in features.items()}


def vector_from_json(data: Mapping[str, float | None]) -> dict[str, float]:
    """The inverse of :func:`vector_to_json`."""
    return {k: NAN if v is None else float(v) for k, v in data.items()}


def _require_aware(at: datetime, what: str) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {at.isoformat()}")


def _rate(count: int, sent: int) -> float:
    return min(count, sent) / sent if sent else NAN


def _share(count: int, total: int) -> float:
    return count / total if total else NAN


def _days_between(then: datetime | None, now: datetime) -> float:
    if then is None:
        return NAN
    return max((now - then).total_seconds(), 0.0) / 86400
