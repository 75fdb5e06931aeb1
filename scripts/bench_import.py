"""Benchmark: `mcep import prospects` of N generated rows into a fresh database.

    python scripts/bench_import.py --rows 250000 --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test

Creates a scratch database on PostgreSQL (dropped afterwards) or a temporary SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import tempfile
import time
from pathlib import Path

from scratch_db import drop_database, scratch_database

from mcep.auth import service as auth_service
from mcep.auth.models import Role
from mcep.contacts import importer
from mcep.db import migrate
from mcep.runtime import build_runtime
from mcep.settings import Settings

ZONES = ["Europe/London", "America/New_York", "Asia/Tokyo", "Europe/Paris", "Asia/Singapore"]


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["name", "phone", "timezone", "consent", "tags", "attr.segment"])
        for i in range(rows):
            phone = f"+1212{200 + i // 10000:03d}{i % 10000:04d}"
            out.writerow([f"Prospect {i}", phone, ZONES[i % 5], "whatsapp;signal", "bench", "hnw"])


async def main(rows: int, database_url: str) -> None:
    workdir = Path(tempfile.mkdtemp())
    source = workdir / "prospects.csv"
    write_csv(source, rows)
    url, scratch = await scratch_database(database_url)
    settings = Settings(
        database_url=url,
        master_key=base64.urlsafe_b64encode(b"b" * 32).decode(),  # type: ignore[arg-type]
        key_file=workdir / "k",
    )
    runtime = build_runtime(settings)
    try:
        await migrate.upgrade(runtime.engine)
        async with runtime.sessions() as session, session.begin():
            user = await auth_service.create_user(
                session,
                email="bench@example.com",
                password="bench password",
                role=Role.PM,
                pm_name="Bench",
                actor="bench",
            )
        assert user.pm_id is not None
        started = time.perf_counter()
        async with runtime.sessions() as session, session.begin():
            report = await importer.import_prospects(
                session, source, pm_id=user.pm_id, keyring=runtime.keyring, actor="bench"
            )
        elapsed = time.perf_counter() - started
        print(
            f"{report.imported} rows imported in {elapsed:.1f} s "
            f"({report.imported / elapsed:,.0f} rows/s) on {url.split(':')[0]}"
        )
    finally:
        await runtime.aclose()
        if scratch:
            await drop_database(database_url, scratch)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument(
        "--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.database_url))
