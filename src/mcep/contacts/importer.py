"""CSV import of prospects: all-or-nothing on the file's format, row by row on its data.

A file whose format is wrong (not UTF-8, not CSV, missing or unknown columns, ragged rows)
imports nothing. A well-formed file imports every valid row in one transaction; each invalid
row is reported with its line number, field and reason, in the error file.

Columns: ``name``, ``timezone`` (required), ``phone``, ``whatsapp``, ``telegram``, ``signal``,
``imessage``, ``consent`` (channels granted, ``;``-separated), ``consent_source``, ``tags``
(``;``-separated) and any number of ``attr.<key>`` columns.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.audit import service as audit
from mcep.audit.chain import merkle_root
from mcep.contacts import service
from mcep.contacts.crypto import Keyring
from mcep.contacts.models import Channel, Prospect
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


def _prepare_rows(
    names: list[str],
    rows: list[tuple[int, list[str]]],
    *,
    pm_id: uuid.UUID,
    keyring: Keyring,
    default_region: str | None,
    report: ImportReport,
) -> Iterator[service.PreparedProspect]:
    now = datetime.now(UTC)
    seen: set[str] = set()
    for line, record in rows:
        try:
            prepared = service.prepare(
                row_to_create(names, record),
                pm_id=pm_id,
                keyring=keyring,
                now=now,
                default_region=default_region,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "row"
            report.errors.append(RowError(line, where, str(err["msg"])))
            continue
        except ValueError as exc:  # an unknown channel name in the consent column
            report.errors.append(RowError(line, "consent", str(exc)))
            continue
        except MCEPError as exc:
            problem = exc.problems[0] if exc.problems else None
            report.errors.append(
                RowError(
                    line,
                    problem.field if problem else "row",
                    problem.message if problem else exc.detail,
                )
            )
            continue
        phone_hash = prepared.prospect["phone_hash"]
        if phone_hash and phone_hash in seen:
            report.errors.append(
                RowError(line, "phone", "the same phone number appears earlier in the file")
            )
            continue
        if phone_hash:
            seen.add(phone_hash)
        yield prepared


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
    existing = await _existing_phone_hashes(session, pm_id)
    batch: list[service.PreparedProspect] = []
    ids: list[bytes] = []
    for prepared in _prepare_rows(
        names, rows, pm_id=pm_id, keyring=keyring, default_region=default_region, report=report
    ):
        if prepared.prospect["phone_hash"] in existing:
            report.duplicates += 1
            continue
        batch.append(prepared)
        if len(batch) >= BATCH:
            await _flush(session, batch, ids, report, progress)
    await _flush(session, batch, ids, report, progress)
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


async def _existing_phone_hashes(session: AsyncSession, pm_id: uuid.UUID) -> set[str]:
    stmt = select(Prospect.phone_hash).where(
        Prospect.pm_id == pm_id, Prospect.erased_at.is_(None), Prospect.phone_hash.is_not(None)
    )
    return {h for h in (await session.scalars(stmt)).all() if h}


async def _flush(
    session: AsyncSession,
    batch: list[service.PreparedProspect],
    ids: list[bytes],
    report: ImportReport,
    progress: Callable[[int], None] | None,
) -> None:
    if not batch:
        return
    await service.insert_prepared(session, batch)
    ids.extend(p.prospect["id"].bytes for p in batch)
    report.imported += len(batch)
    if progress:
        progress(len(batch))
    batch.clear()


def write_error_file(path: Path, errors: list[RowError]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "field", "reason"])
        writer.writerows((e.line, e.field, e.message) for e in errors)
