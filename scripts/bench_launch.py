"""Benchmark: launch a 1,000-recipient campaign, from the launch call to all rows committed.

    python scripts/bench_launch.py --recipients 1000 --runs 5 \
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test

Creates a scratch database on PostgreSQL (dropped afterwards) or a temporary SQLite file,
a PM, four Telegram sender devices and, per run, fresh consented prospects in mixed time zones
(so frequency caps never skip anyone), then times ``launch`` plus its commit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scratch_db import drop_database, scratch_database
from sqlalchemy import event

from mcep.auth import service as auth_service
from mcep.auth.models import Role
from mcep.auth.principal import Principal
from mcep.campaigns import launch, service
from mcep.campaigns.schemas import CampaignCreate, TemplateCreate
from mcep.channels.base import Platform
from mcep.contacts import service as contacts_service
from mcep.contacts.schemas import ConsentIn, Handles, ProspectCreate
from mcep.db import migrate
from mcep.fleet import service as fleet_service
from mcep.fleet.schemas import DeviceCreate
from mcep.runtime import Runtime, build_runtime
from mcep.settings import Settings

ZONES = ["Europe/London", "America/New_York", "Asia/Tokyo", "Europe/Paris", "Asia/Singapore"]
ADMIN = Principal(uuid.uuid4(), "bench-admin@example.com", Role.ADMIN)


async def setup_pm(runtime: Runtime) -> Principal:
    async with runtime.sessions() as session, session.begin():
        user = await auth_service.create_user(
            session,
            email="bench@example.com",
            password="bench password",
            role=Role.PM,
            pm_name="Bench",
            actor="bench",
        )
        for n in range(4):
            await fleet_service.create(
                session,
                ADMIN,
                DeviceCreate(
                    platform=Platform.TELEGRAM,
                    address=f"bench_bot_{n}",
                    base_url="http://127.0.0.1:9/",
                    token="123:bench",
                ),
                keyring=runtime.keyring,
            )
    return Principal(user.id, user.email, Role.PM, user.pm_id)


async def campaign_for(runtime: Runtime, pm: Principal, recipients: int) -> uuid.UUID:
    """Fresh consented prospects and a draft campaign addressed to all of them."""
    assert pm.pm_id is not None
    now = datetime.now(UTC)
    batch = [
        contacts_service.prepare(
            ProspectCreate(
                name=f"Client {i} Bench",
                timezone=ZONES[i % len(ZONES)],
                handles=Handles(telegram=str(uuid.uuid4().int % 10**12)),
                consents=[ConsentIn(channel="telegram", source="bench")],
                attributes={"segment": "hnw"},
            ),
            pm_id=pm.pm_id,
            keyring=runtime.keyring,
            now=now,
        )
        for i in range(recipients)
    ]
    async with runtime.sessions() as session, session.begin():
        await contacts_service.insert_prepared(session, batch)
        template = await service.create_template(
            session,
            pm,
            TemplateCreate(name=uuid.uuid4().hex, body="Hello {{ first_name }}, a note from us."),
        )
        campaign = await service.create_campaign(
            session,
            pm,
            CampaignCreate.model_validate(
                {
                    "name": "bench",
                    "template_id": str(template.id),
                    "audience": {"prospect_ids": [str(p.prospect["id"]) for p in batch]},
                }
            ),
        )
    return campaign.id


async def timed_launch(
    runtime: Runtime, pm: Principal, campaign_id: uuid.UUID
) -> tuple[float, int, int]:
    """Seconds from the launch call to its commit, messages queued, SQL statements run."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
    try:
        started = time.perf_counter()
        async with runtime.sessions() as session, session.begin():
            campaign = await launch.launch(
                session, pm, campaign_id, keyring=runtime.keyring, now=datetime.now(UTC)
            )
        elapsed = time.perf_counter() - started
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", count)
    return elapsed, int(campaign.launch_result["queued"]), len(statements)


async def main(recipients: int, runs: int, database_url: str) -> None:
    workdir = Path(tempfile.mkdtemp())
    url, scratch = await scratch_database(database_url)
    settings = Settings(
        database_url=url,
        master_key=base64.urlsafe_b64encode(b"b" * 32).decode(),
        key_file=workdir / "k",
    )
    runtime = build_runtime(settings)
    try:
        await migrate.upgrade(runtime.engine)
        pm = await setup_pm(runtime)
        times = []
        for run in range(runs + 1):  # the first run warms caches and connections up
            campaign_id = await campaign_for(runtime, pm, recipients)
            elapsed, queued, statements = await timed_launch(runtime, pm, campaign_id)
            assert queued == recipients, f"expected {recipients} queued, got {queued}"
            if run:
                times.append(elapsed)
        print(
            f"launch of {recipients} recipients on {url.split(':')[0]} ({runs} runs): "
            f"median {statistics.median(times) * 1000:.0f} ms, "
            f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms; "
            f"{statements} SQL statements per launch"
        )
    finally:
        await runtime.aclose()
        if scratch:
            await drop_database(database_url, scratch)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    args = parser.parse_args()
    asyncio.run(main(args.recipients, args.runs, args.database_url))
