"""CSV import of prospects: all-or-nothing on the file's format, row by row on its data.

A file whose format is wrong (not UTF-8, not CSV, missing or unknown columns, ragged rows)
imports nothing. A well-formed file imports every valid row in one transaction; each invalid
row is reported with its line number, field and reason, in the error file.

Columns: ``name``, ``timezone`` (required), ``phone``, ``whatsapp``, ``telegram``, ``signal``,
``imessage``, ``consent`` (channels granted, ``;``-separated), ``consent_source``, ``tags``
(``;``-separated) and any number of ``attr.<key>`` columns.
"""

from __future__ import annotations

import asyncio
import csv
import io
import multiprocessing
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.audit.chain import merkle_root
from mcep.contacts import service
from mcep.contacts.crypto import Keyring
from mcep.contacts.models import Channel, Prospect, ProspectHandle
from mcep.contacts.schemas import ConsentIn, Handles, ProspectCreate
from mcep.errors import MCEPError

REQUIRED = ("name", "timezone")
OPTIONAL = (
    "phone",
    "whatsapp",
    "telegram",
    "signal",
    "imessage",
    "consent",
    "consent_source",
    "tags",
)
ATTR_PREFIX = "attr."
BATCH = 5000
# Below this many rows, starting worker processes costs more than it saves.
PARALLEL_FROM = 20_000
PREPARE_WORKERS = max(1, (os.cpu_count() or 2) - 1)


class ImportFormatError(MCEPError):
    status_code = 400
    code = "import_format"
    title = "The file cannot be imported"


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    field: str
    message: str


@dataclass
class ImportReport:
    imported: int = 0
    errors: list[RowError] = field(default_factory=list)
    duplicates: int = 0


def _check_header(header: list[str] | None) -> list[str]:
    if not header:
        raise ImportFormatError("the file is empty: a header row is required")
    names = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ImportFormatError(f"missing required column(s): {', '.join(missing)}")
    unknown = [n for n in names if n not in REQUIRED + OPTIONAL and not n.startswith(ATTR_PREFIX)]
    if unknown:
        raise ImportFormatError(
            f"unknown column(s): {', '.join(unknown)} (attributes go in attr.<key> columns)"
        )
    if len(set(names)) != len(names):
        raise ImportFormatError("a column name appears twice in the header")
    return names


def read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Parse the whole file first, so that a format error imports nothing."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"the file is not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ImportFormatError(f"cannot read the file: {exc.strerror}") from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        names = _check_header(next(reader, None))
        rows = []
        for record in reader:
            if not record:
                continue
            if len(record) != len(names):
                raise ImportFormatError(
                    f"line {reader.line_num}: {len(record)} fields, "
                    f"where the header has {len(names)}"
                )
            rows.append((reader.line_num, record))
    except csv.Error as exc:
        raise ImportFormatError(f"line {reader.line_num}: malformed CSV ({exc})") from exc
    return names, rows


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def row_to_create(names: list[str], record: list[str]) -> ProspectCreate:
    row = dict(zip(names, (v.strip() for v in record), strict=True))
    source = row.get("consent_source") or "csv import"
    return ProspectCreate(
        name=row["name"],
        timezone=row["timezone"],
        phone=row.get("phone") or None,
        handles=Handles(**{c.value: row.get(c.value) or None for c in Channel}),
        consents=[
            ConsentIn(channel=Channel(c), source=source) for c in _split(row.get("consent", ""))
        ],
        tags=_split(row.get("tags", "")),
        attributes={
            k[len(ATTR_PREFIX) :]: v for k, v in row.items() if k.startswith(ATTR_PREFIX) and v
        },
    )


def _row_error(line: int, exc: Exception) -> RowError:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return RowError(line, ".".join(str(p) for p in err["loc"]) or "row", str(err["msg"]))
    if isinstance(exc, MCEPError) and exc.problems:
        return RowError(line, exc.problems[0].field, exc.problems[0].message)
    return RowError(line, "consent", str(exc))  # an unknown channel name in the consent column


def prepare_chunk(
    names: list[str],
    rows: list[tuple[int, list[str]]],
    *,
    pm_id: uuid.UUID,
    keyring: Keyring,
    default_region: str | None,
    now: datetime,
) -> tuple[list[service.PreparedProspect], list[RowError]]:
    """Validate and encrypt a chunk of rows: CPU work that runs in worker processes."""
    prepared: list[service.PreparedProspect] = []
    errors: list[RowError] = []
    for line, record in rows:
        try:
            create = row_to_create(names, record)
            prepared.append(
                service.prepare(
                    create, pm_id=pm_id, keyring=keyring, now=now, default_region=default_region
                )
            )
        except (ValidationError, MCEPError, ValueError) as exc:
            errors.append(_row_error(line, exc))
        else:
            prepared[-1].prospect["_line"] = line
    return prepared, errors


async def _prepared_chunks(
    names: list[str],
    rows: list[tuple[int, list[str]]],
    *,
    pm_id: uuid.UUID,
    keyring: Keyring,
    default_region: str | None,
) -> AsyncIterator[tuple[list[service.PreparedProspect], list[RowError]]]:
    """Chunks in file order; large files are prepared on every core while the DB inserts."""
    now = datetime.now(UTC)
    chunks = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
    work = partial(
        prepare_chunk, names, pm_id=pm_id, keyring=keyring, default_region=default_region, now=now
    )
    # Fork is only safe with no other thread alive (aiosqlite keeps one per connection), so
    # SQLite imports prepare inline; PostgreSQL imports prepare in workers while COPY runs.
    if len(rows) < PARALLEL_FROM or threading.active_count() > 1:
        for chunk in chunks:
            yield work(chunk)
        return
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=PREPARE_WORKERS, mp_context=context) as pool:
        futures = [loop.run_in_executor(pool, work, chunk) for chunk in chunks]
        for future in futures:
            yield await future


async def import_prospects(
    session: AsyncSession,
    path: Path,
    *,
    pm_id: uuid.UUID,
    keyring: Keyring,
    actor: str,
    default_region: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``path`` for PM ``pm_id`` in the caller's transaction."""
    names, rows = read_rows(path)
    report = ImportReport()
    existing = await _existing_identities(session, pm_id)
    in_file: set[str] = set()
    ids: list[bytes] = []
    chunks = _prepared_chunks(
        names, rows, pm_id=pm_id, keyring=keyring, default_region=default_region
    )
    async for prepared, errors in chunks:
        report.errors.extend(errors)
        batch = _drop_duplicates(prepared, existing, in_file, report)
        await _flush(session, batch, ids, report)
        if progress:
            progress(len(errors) + len(prepared))
    report.errors.sort(key=lambda e: e.line)
    await audit.append(
        session,
        actor=actor,
        action="prospects.imported",
        object_type="pm",
        object_id=str(pm_id),
        details={
            "file": path.name,
            "imported": report.imported,
            "rejected": len(report.errors),
            "duplicates": report.duplicates,
            "merkle_root": merkle_root(ids),
        },
    )
    return report


def _drop_duplicates(
    prepared: list[service.PreparedProspect],
    existing: set[str],
    in_file: set[str],
    report: ImportReport,
) -> list[service.PreparedProspect]:
    """Skip people the PM already has (counted) and people repeated in the file (errors)."""
    batch = []
    for item in prepared:
        line = item.prospect.pop("_line")
        identity = _identity(item)
        if identity in existing:
            report.duplicates += 1
            continue
        if identity in in_file:
            report.errors.append(
                RowError(line, "phone", "the same person appears earlier in the file")
            )
            continue
        in_file.add(identity)
        batch.append(item)
    return batch


def _identity(item: service.PreparedProspect) -> str:
    """A prospect is its phone number, or (without one) its first channel handle."""
    phone_hash: str | None = item.prospect["phone_hash"]
    if phone_hash:
        return phone_hash
    return min(f"{h['channel'].value}:{h['handle_hash']}" for h in item.handles)


async def _existing_identities(session: AsyncSession, pm_id: uuid.UUID) -> set[str]:
    live = (Prospect.pm_id == pm_id, Prospect.erased_at.is_(None))
    phones = select(Prospect.phone_hash).where(*live, Prospect.phone_hash.is_not(None))
    handles = (
        select(ProspectHandle.channel, ProspectHandle.handle_hash)
        .join(Prospect, Prospect.id == ProspectHandle.prospect_id)
        .where(*live, Prospect.phone_hash.is_(None))
    )
    found = {h for h in (await session.scalars(phones)).all() if h}
    found.update(f"{c.value}:{h}" for c, h in (await session.execute(handles)).all())
    return found


async def _flush(
    session: AsyncSession,
    batch: list[service.PreparedProspect],
    ids: list[bytes],
    report: ImportReport,
) -> None:
    if batch:
        await service.insert_prepared(session, batch)
        ids.extend(p.prospect["id"].bytes for p in batch)
        report.imported += len(batch)


def write_error_file(path: Path, errors: list[RowError]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "field", "reason"])
        writer.writerows((e.line, e.field, e.message) for e in errors)
