"""The audit chain: appends link up, the database refuses changes, tampering is caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from mcep.audit import service
from mcep.cli.main import app as cli
from mcep.runtime import Runtime


async def _append_three(runtime: Runtime) -> None:
    async with runtime.sessions() as session, session.begin():
        for n in range(3):
            await service.append(
                session,
                actor="test",
                action="thing.done",
                object_type="thing",
                object_id=str(n),
                details={"n": n, "note": "é"},
            )


async def test_appended_entries_verify(runtime: Runtime) -> None:
    await _append_three(runtime)
    async with runtime.sessions() as session:
        result = await service.verify(session)
    assert result.ok and result.checked == 3


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET actor = 'mallory' WHERE id = 2",
        "DELETE FROM audit_entries WHERE id = 2",
    ],
)
async def test_database_rejects_update_and_delete(runtime: Runtime, statement: str) -> None:
    await _append_three(runtime)
    with pytest.raises(DBAPIError, match="append-only"):
        async with runtime.engine.begin() as connection:
            await connection.execute(text(statement))
    async with runtime.sessions() as session:
        assert (await service.verify(session)).checked == 3


async def _tamper(runtime: Runtime, statement: str) -> None:
    """Change a row behind the trigger's back, as someone with the database's keys could."""
    async with runtime.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            await connection.execute(text("DROP TRIGGER audit_entries_no_update"))
            await connection.execute(text(statement))
        else:
            await connection.execute(text("SET LOCAL session_replication_role = replica"))
            await connection.execute(text(statement))


async def test_tampered_content_is_caught(runtime: Runtime) -> None:
    await _append_three(runtime)
    await _tamper(runtime, "UPDATE audit_entries SET actor = 'mallory' WHERE id = 2")
    async with runtime.sessions() as session:
        result = await service.verify(session)
    assert result.broken_id == 2 and "content" in result.reason and result.checked == 1


async def test_rewritten_hash_breaks_the_next_link(runtime: Runtime) -> None:
    await _append_three(runtime)
    await _tamper(runtime, "UPDATE audit_entries SET hash = '" + "a" * 64 + "' WHERE id = 2")
    async with runtime.sessions() as session:
        result = await service.verify(session)
    assert result.broken_id == 2


async def test_cli_verify_exit_codes(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    await _append_three(runtime)
    monkeypatch.setenv("MCEP_DATABASE_URL", runtime.settings.database_url)
    monkeypatch.setenv("MCEP_MASTER_KEY", runtime.settings.master_key.get_secret_value())  # type: ignore[union-attr]
    runner = CliRunner()
    ok = await _invoke(runner, ["audit", "verify"])
    assert ok.exit_code == 0 and "3 entries verified" in ok.output
    await _tamper(runtime, "UPDATE audit_entries SET details = '{\"n\": 99}' WHERE id = 3")
    broken = await _invoke(runner, ["audit", "verify"])
    assert broken.exit_code == 1
    assert "broken at entry 3" in broken.output


async def _invoke(runner: CliRunner, args: list[str]):  # type: ignore[no-untyped-def]
    import asyncio

    return await asyncio.to_thread(runner.invoke, cli, args)
