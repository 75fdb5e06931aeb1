"""CSV import through the CLI: per-row errors in a file, a malformed file imports nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from mcep.audit import service as audit_service
from mcep.auth.models import Role
from mcep.cli.main import app as cli
from mcep.contacts.models import ConsentEntry, Prospect, ProspectTag
from mcep.runtime import Runtime
from tests.conftest import make_actor

GOOD = """name,phone,timezone,telegram,consent,tags,attr.segment
Ana Lima,+44 20 7946 0958,Europe/London,,whatsapp;signal,vip;uk,hnw
Bo Chen,+1 212 555 0100,America/New_York,,whatsapp,,retail
Bad Phone,+44 12,Europe/London,,,,
Bad Zone,+1 212 555 0101,Mars/Base,,,,
Tg Only,,Asia/Tokyo,987654321,telegram,,
Dup Ana,+442079460958,Europe/London,,,,
"""


@pytest.fixture
def env(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCEP_DATABASE_URL", runtime.settings.database_url)
    assert runtime.settings.master_key is not None
    monkeypatch.setenv("MCEP_MASTER_KEY", runtime.settings.master_key.get_secret_value())


async def invoke(args: list[str]) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, args)


async def prospect_count(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return await session.scalar(select(func.count()).select_from(Prospect)) or 0


async def test_import_reports_bad_rows_and_imports_the_rest(
    runtime: Runtime, env: None, tmp_path: Path
) -> None:
    pm = await make_actor(runtime, Role.PM)
    source = tmp_path / "people.csv"
    source.write_text(GOOD)
    result = await invoke(["import", "prospects", str(source), "--pm", pm.email])
    assert result.exit_code == 0, result.output
    assert "imported 3 prospects; 3 rows rejected" in result.output
    errors = (tmp_path / "people.csv.errors.csv").read_text().splitlines()
    assert errors[0] == "line,field,reason"
    assert (
        errors[1].startswith("4,phone,")
        and errors[2].startswith("5,timezone,")
        and errors[3].startswith("7,phone,")
    )
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Prospect)) == 3
        assert await session.scalar(select(func.count()).select_from(ConsentEntry)) == 4
        assert set((await session.scalars(select(ProspectTag.tag))).all()) == {"vip", "uk"}
        assert (await audit_service.verify(session)).ok
    # Importing the same file again adds nobody: phones and handles are already there.
    again = await invoke(["import", "prospects", str(source), "--pm", pm.email])
    assert "imported 0 prospects; 2 rows rejected; 4 already present" in again.output
    assert await prospect_count(runtime) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,phone\nAna,+442079460958\n", "missing required column(s): timezone"),
        ("name,timezone,shoe_size\nAna,Europe/London,42\n", "unknown column(s): shoe_size"),
        ("name,timezone,phone\nAna,Europe/London\n", "line 2: 2 fields"),
        ('name,timezone,phone\n"Ana,Europe/London,+442079460958\n', "malformed CSV"),
        ("", "the file is empty"),
    ],
)
async def test_malformed_file_imports_nothing(
    runtime: Runtime, env: None, tmp_path: Path, content: str, message: str
) -> None:
    pm = await make_actor(runtime, Role.PM)
    source = tmp_path / "bad.csv"
    source.write_text(content)
    result = await invoke(["import", "prospects", str(source), "--pm", pm.email])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert await prospect_count(runtime) == 0


async def test_ragged_row_late_in_a_good_file_imports_nothing(
    runtime: Runtime, env: None, tmp_path: Path
) -> None:
    pm = await make_actor(runtime, Role.PM)
    source = tmp_path / "late.csv"
    source.write_text(GOOD + "Late,+44 20 7946 0000\n")
    result = await invoke(["import", "prospects", str(source), "--pm", pm.email])
    assert result.exit_code == 2 and "line 8" in result.output
    assert await prospect_count(runtime) == 0


async def test_not_utf8_and_unknown_pm(runtime: Runtime, env: None, tmp_path: Path) -> None:
    pm = await make_actor(runtime, Role.PM)
    source = tmp_path / "latin1.csv"
    source.write_bytes("name,timezone\nJosé,Europe/Lisbon\n".encode("latin-1"))
    result = await invoke(["import", "prospects", str(source), "--pm", pm.email])
    assert result.exit_code == 2 and "not UTF-8" in result.output
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    nobody = await invoke(["import", "prospects", str(good), "--pm", "nobody@example.com"])
    assert nobody.exit_code == 2 and "no PM user" in nobody.output
    assert await prospect_count(runtime) == 0


async def test_users_create_cli(runtime: Runtime, env: None) -> None:
    ok = await invoke(
        [
            "users",
            "create",
            "--email",
            "Boss@Example.com",
            "--role",
            "pm",
            "--pm-name",
            "Boss",
            "--password",
            "long enough pw",
        ]
    )
    assert ok.exit_code == 0, ok.output
    bad = await invoke(
        [
            "users",
            "create",
            "--email",
            "not-an-email",
            "--role",
            "admin",
            "--password",
            "long enough pw",
        ]
    )
    assert bad.exit_code == 2 and "--email" in bad.output
    short = await invoke(
        ["users", "create", "--email", "a@example.com", "--role", "admin", "--password", "short"]
    )
    assert short.exit_code == 2
    role = await invoke(
        [
            "users",
            "create",
            "--email",
            "a@example.com",
            "--role",
            "root",
            "--password",
            "long enough pw",
        ]
    )
    assert role.exit_code == 2
    dup = await invoke(
        [
            "users",
            "create",
            "--email",
            "boss@example.com",
            "--role",
            "admin",
            "--password",
            "long enough pw",
        ]
    )
    assert dup.exit_code == 2 and "already exists" in dup.output
    prompted = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["users", "create", "--email", "c@example.com", "--role", "compliance"],
        input="long enough pw\nlong enough pw\n",
    )
    assert prompted.exit_code == 0, prompted.output
