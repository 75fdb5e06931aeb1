"""Benchmark: the real-time scoring job (events/s), persisted state against recomputing from
history, and champion inference (single-prospect latency, batch throughput).

    .venv/bin/python scripts/bench_scoring_job.py --prospects 5000 \
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test

Creates a scratch database on PostgreSQL (dropped afterwards) or a temporary SQLite file, one
PM with ``--prospects`` prospects, and a champion trained on simulated engagement histories
(the full feature vector). Then, timed, with a commit per batch as the worker does:

1. first contact: queued, sent, delivered, read for everyone, and a reply (sealed text, as
   inbound stores it) from 30% of them; every prospect is new to the job;
2. a second contact round: every prospect already has persisted aggregates to load and extend.

Then the alternative the job does not take, recomputing each batch's prospects from their
whole history (every event re-read, every reply decrypted and sentiment-scored again), and the
champion's inference speed through the raw booster.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from scratch_db import drop_database, scratch_database
from sqlalchemy import select

from mcep.auth import service as auth_service
from mcep.auth.models import Role
from mcep.contacts import service as contacts_service
from mcep.contacts.schemas import Handles, ProspectCreate
from mcep.db import migrate
from mcep.db.bulk import bulk_insert
from mcep.dispatch.models import Event
from mcep.inbound.models import InboundMessage
from mcep.runtime import Runtime, build_runtime
from mcep.scoring import realtime
from mcep.scoring import repository as repo
from mcep.scoring.champion import ModelCache
from mcep.scoring.dataset import table_from_features
from mcep.scoring.features import EngagementEvent, EventKind, FeatureState, compute_features
from mcep.scoring.model import Scorer, dump_model
from mcep.scoring.registry import MODEL_NAME
from mcep.scoring.store import DatabaseModelRegistry
from mcep.scoring.training import TrainingConfig, train_model
from mcep.settings import Settings

ZONES = ["Europe/London", "America/New_York", "Asia/Tokyo", "Europe/Paris", "Asia/Singapore"]
REPLIES = {
    "interest": ["Sounds interesting, tell me more", "Yes please, call me", "I'd like more info"],
    "objection": ["Not interested, thanks", "Too expensive for me", "Maybe later"],
    "question": ["What are the fees?", "How does it work?", "Which funds?"],
}
T0 = datetime.now(UTC) - timedelta(days=20)


# --- a champion over the real feature vector ---------------------------------------------


def simulated_history(rng: random.Random) -> tuple[list[EngagementEvent], bool]:
    """A prospect's contacts and replies, and whether they became a lead."""
    events, appetite = [], rng.random()
    for n in range(rng.randint(1, 4)):
        at = T0 + timedelta(days=4 * n, hours=rng.uniform(0, 48))
        channel = rng.choice(["whatsapp", "telegram", "signal", "imessage"])
        events.append(EngagementEvent(EventKind.SENT, at, channel, campaign_id=f"c{n}"))
        if rng.random() < 0.95:
            events.append(EngagementEvent(EventKind.DELIVERED, at + timedelta(minutes=1), channel))
        if rng.random() < 0.3 + 0.5 * appetite:
            events.append(EngagementEvent(EventKind.READ, at + timedelta(minutes=30), channel))
        if rng.random() < 0.1 + 0.5 * appetite:
            kind = rng.choices(["interest", "objection", "question"], [appetite, 1 - appetite, 0.5])
            reply_at = at + timedelta(hours=rng.expovariate(0.2))
            events.append(EngagementEvent(EventKind.REPLIED, reply_at, channel,
                                          text=rng.choice(REPLIES[kind[0]])))  # fmt: skip
    interested = any(e.text in REPLIES["interest"] for e in events)
    return events, rng.random() < (0.55 if interested else 0.04) + 0.1 * appetite


def train_champion(rows: int) -> bytes:
    rng = random.Random(0)
    vectors, outcomes = [], []
    for _ in range(rows):
        history, lead = simulated_history(rng)
        tz = ZoneInfo(rng.choice(ZONES))
        vectors.append(compute_features(history, now=T0 + timedelta(days=20), tz=tz))
        outcomes.append(lead)
    config = TrainingConfig(seed=0, max_rounds=300, early_stopping_rounds=300, num_threads=2)
    return dump_model(train_model(table_from_features(vectors, outcomes), config=config))


# --- the database ------------------------------------------------------------------------


async def setup(
    runtime: Runtime, prospects: int, artifact: bytes
) -> tuple[uuid.UUID, list[dict[str, Any]]]:
    async with runtime.sessions() as session, session.begin():
        user = await auth_service.create_user(
            session, email="bench@example.com", password="bench password", role=Role.PM,
            pm_name="Bench", actor="bench",
        )  # fmt: skip
        registry = DatabaseModelRegistry(session, actor="bench")
        info = await registry.register(MODEL_NAME, artifact=artifact, metrics={})
        await registry.promote(MODEL_NAME, info.version)
    assert user.pm_id is not None
    now, batch = datetime.now(UTC), []
    for i in range(prospects):
        data = ProspectCreate(
            name=f"Bench {i}",
            timezone=ZONES[i % len(ZONES)],
            handles=Handles(telegram=str(10**9 + i)),
            attributes={"aum_musd": round(random.uniform(0.5, 20), 1)},
        )
        batch.append(contacts_service.prepare(data, pm_id=user.pm_id, keyring=runtime.keyring,
                                              now=now))  # fmt: skip
    for start in range(0, len(batch), 2000):
        async with runtime.sessions() as session, session.begin():
            await contacts_service.insert_prepared(session, batch[start : start + 2000])
    return user.pm_id, [p.prospect for p in batch]


async def add_round(
    runtime: Runtime, pm_id: uuid.UUID, prospects: list[dict[str, Any]], *, day: int, seed: int
) -> int:
    """One contact per prospect, and a reply from 30%; returns how many events were logged."""
    rng = random.Random(seed)
    campaign_id, events, inbound = uuid.uuid4(), [], []
    for p in prospects:
        at = T0 + timedelta(days=day, minutes=rng.uniform(0, 600))
        for i, kind in enumerate(("queued", "sent", "delivered", "read")):
            events.append(_event(kind, p, pm_id, at + timedelta(minutes=i), campaign_id))
        if rng.random() < 0.3:
            kind = rng.choice(list(REPLIES))
            row_id, provider_id = uuid.uuid4(), f"bench-{uuid.uuid4().hex}"
            key = runtime.keyring.unwrap(p["wrapped_key"])
            inbound.append({
                "id": row_id, "at": at + timedelta(hours=2), "channel": "telegram",
                "event_id": provider_id, "device_id": None, "prospect_id": p["id"],
                "pm_id": pm_id, "in_reply_to": None,
                "text_enc": key.seal(f"inbound:{row_id}", rng.choice(REPLIES[kind])),
                "text_sha256": "0" * 64, "is_stop": False,
            })  # fmt: skip
            reply = _event("replied", p, pm_id, at + timedelta(hours=2), campaign_id)
            reply["details"] = {"stop": False, "provider_event_id": provider_id}
            events.append(reply)
    async with runtime.sessions() as session, session.begin():
        await bulk_insert(session, InboundMessage.__table__, inbound)  # type: ignore[arg-type]
        await bulk_insert(session, Event.__table__, events)  # type: ignore[arg-type]
    return len(events)


def _event(
    kind: str, p: dict[str, Any], pm_id: uuid.UUID, at: datetime, campaign_id: uuid.UUID
) -> dict[str, Any]:
    return {
        "at": at, "kind": kind, "campaign_id": campaign_id, "variant": "A",
        "channel": "telegram", "device_id": None, "prospect_id": p["id"], "pm_id": pm_id,
        "message_id": None, "details": {},
    }  # fmt: skip


# --- timing ------------------------------------------------------------------------------


Batches = list[tuple[int, int, float]]


async def drain(
    runtime: Runtime, models: ModelCache, batch_size: int
) -> tuple[int, float, Batches]:
    guard = realtime.GapGuard(timeout=0)
    total, started = 0, time.perf_counter()
    batches: Batches = []
    while True:
        begun = time.perf_counter()
        async with runtime.sessions() as session, session.begin():
            result = await realtime.process_events(
                session, keyring=runtime.keyring, models=models, now=datetime.now(UTC),
                batch_size=batch_size, guard=guard,
            )  # fmt: skip
        if not result.events:
            return total, time.perf_counter() - started, batches
        total += result.events
        batches.append((result.events, result.prospects, time.perf_counter() - begun))


async def recompute_cost(runtime: Runtime, prospects: list[dict[str, Any]], batch: int) -> float:
    """Seconds to rebuild ``batch`` prospects' vectors from their whole stored history."""
    chosen = prospects[:batch]
    ids = [p["id"] for p in chosen]
    started = time.perf_counter()
    async with runtime.sessions() as session:
        rows = (await session.execute(
            select(Event.id, Event.kind, Event.at, Event.channel, Event.campaign_id,
                   Event.prospect_id, Event.details)
            .where(Event.prospect_id.in_(ids)).order_by(Event.id)
        )).all()  # fmt: skip
        wanted = {("telegram", r.details["provider_event_id"]) for r in rows if r.kind == "replied"}
        texts = await repo.inbound_texts(session, wanted)
    by_prospect: dict[uuid.UUID, list[EngagementEvent]] = defaultdict(list)
    keys = {p["id"]: runtime.keyring.unwrap(p["wrapped_key"]) for p in chosen}
    for r in rows:
        if r.kind not in realtime.FOLDED:
            continue
        body = None
        if r.kind == "replied":
            row_id, _, sealed = texts[("telegram", r.details["provider_event_id"])]
            assert sealed is not None
            body = keys[r.prospect_id].open(f"inbound:{row_id}", sealed)
        by_prospect[r.prospect_id].append(
            EngagementEvent(EventKind(r.kind), r.at, r.channel, str(r.campaign_id), text=body)
        )
    now = datetime.now(UTC)
    for p in chosen:
        compute_features(by_prospect[p["id"]], now=now, tz=ZoneInfo(p["timezone"]))
    return time.perf_counter() - started


def latency_ms(call: Any, repeat: int) -> tuple[float, float]:
    for _ in range(200):
        call()
    timings = np.empty(repeat)
    gc.disable()
    try:
        for i in range(repeat):
            start = time.perf_counter_ns()
            call()
            timings[i] = time.perf_counter_ns() - start
    finally:
        gc.enable()
    p50, p99 = np.percentile(timings, [50, 99]) / 1e6
    return float(p50), float(p99)


def report_round(name: str, events: int, seconds: float, batches: Batches) -> None:
    per_batch = [1000 * s for _, _, s in batches]
    updates = sum(b[1] for b in batches)
    print(
        f"{name}: {events} events in {seconds:.2f} s = {events / seconds:,.0f} events/s "
        f"({len(batches)} batches, median {statistics.median(per_batch):.0f} ms, "
        f"max {max(per_batch):.0f} ms; {updates} prospect updates)"
    )


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    artifact = train_champion(args.train_rows)
    scorer = Scorer.from_artifact(artifact)
    print(f"champion: {len(scorer.feature_names)} features, "
          f"{scorer._booster.current_iteration()} trees, trained in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    url, scratch = await scratch_database(args.database_url)
    runtime = build_runtime(Settings(database_url=url, master_key="a" * 43 + "="))
    try:
        await migrate.upgrade(runtime.engine)
        pm_id, prospects = await setup(runtime, args.prospects, artifact)
        backend = "PostgreSQL" if scratch else "SQLite"
        print(f"{backend}, {args.prospects} prospects, batches of {args.batch} events")
        models = ModelCache(max_age=5)
        for n, name in enumerate(("first contact (no state yet)", "second round (state loaded)")):
            await add_round(runtime, pm_id, prospects, day=n * 5, seed=n)
            report_round(name, *await drain(runtime, models, args.batch))
        fold = await fold_cost(runtime, prospects[: args.batch // 5])
        rebuilt = await recompute_cost(runtime, prospects, args.batch // 5)
        print(f"per prospect, {args.batch // 5} prospects: fold new events into stored state "
              f"{1e6 * fold / (args.batch // 5):.0f} us; recompute from whole history "
              f"{1e6 * rebuilt / (args.batch // 5):.0f} us")  # fmt: skip
    finally:
        await runtime.aclose()
        if scratch:
            await drop_database(args.database_url, scratch)
    inference(scorer, repeat=args.repeat)


async def fold_cost(runtime: Runtime, prospects: list[dict[str, Any]]) -> float:
    """Seconds to load stored states and fold one new contact into each (no writes)."""
    started = time.perf_counter()
    async with runtime.sessions() as session:
        states = await repo.lead_states(session, [p["id"] for p in prospects])
    now = datetime.now(UTC)
    for p in prospects:
        state = FeatureState.from_dict(states[p["id"]].state, tz=ZoneInfo(p["timezone"]))
        state.add(EngagementEvent(EventKind.SENT, now, "telegram", "c9"))
        state.features(now=now)
        state.to_dict()
    return time.perf_counter() - started


def inference(scorer: Scorer, *, repeat: int) -> None:
    rng = random.Random(1)
    vectors = []
    for _ in range(2000):
        history, _ = simulated_history(rng)
        vectors.append(compute_features(history, now=datetime.now(UTC)))
    one = vectors[0]
    p50, p99 = latency_ms(lambda: scorer.score(one, explain=False), repeat)
    print(f"single prospect, Scorer.score (no explanation): p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    p50, p99 = latency_ms(lambda: scorer.score(one), repeat // 5)
    print(f"single prospect, Scorer.score + top-5 reasons:  p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    matrix = scorer.encode_many(vectors * 25)
    best = min(_timed(lambda: scorer.score_batch(matrix)) for _ in range(5))
    print(f"batch: {len(matrix) / best:,.0f} prospects/s (score_batch over {len(matrix)} rows)")
    best = min(_timed(lambda: scorer.encode_many(vectors)) for _ in range(5))
    print(f"encoding vectors for the batch: {len(vectors) / best:,.0f} prospects/s")


def _timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="sqlite+aiosqlite:///ignored")
    parser.add_argument("--prospects", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--train-rows", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5000)
    asyncio.run(main(parser.parse_args()))
