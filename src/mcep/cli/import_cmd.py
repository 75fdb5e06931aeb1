"""``mcep import``: bulk loads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mcep.auth.models import Role, User
from mcep.cli.common import console, err_console, fail, in_transaction, open_runtime, run
from mcep.contacts import importer

app = typer.Typer(help="Bulk imports.", no_args_is_help=True)


@app.command("prospects")
def prospects(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV file of prospects"),
    pm: str = typer.Option(..., "--pm", help="E-mail of the PM user who will own them"),
    errors: Path | None = typer.Option(
        None, "--errors", help="Where to write rejected rows (default: FILE.errors.csv)"
    ),
) -> None:
    """Import prospects from CSV; bad rows go to an error file, a bad file imports nothing."""
    error_path = errors or file.with_name(file.name + ".errors.csv")
    _, rows = run(_read(file))
    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task("import", total=rows)
        report = run(_import(file, pm, lambda n: bar.advance(task, n)))
    if report.errors:
        importer.write_error_file(error_path, report.errors)
    console.print(
        f"imported [bold]{report.imported}[/] prospects; {len(report.errors)} rows rejected; "
        f"{report.duplicates} already present"
        + (f"; rejected rows in {error_path}" if report.errors else "")
    )


async def _read(file: Path) -> tuple[list[str], int]:
    names, rows = importer.read_rows(file)
    return names, len(rows)


async def _import(
    file: Path, pm_email: str, progress: Callable[[int], None]
) -> importer.ImportReport:
    async with open_runtime(upgrade=True) as runtime:

        async def work(session: AsyncSession) -> importer.ImportReport:
            user = await session.scalar(select(User).where(User.email == pm_email.strip().lower()))
            if user is None or user.role is not Role.PM or user.pm_id is None:
                fail(f"--pm: no PM user with the e-mail {pm_email!r}", code=2)
            return await importer.import_prospects(
                session,
                file,
                pm_id=user.pm_id,
                keyring=runtime.keyring,
                actor=f"cli:{pm_email}",
                default_region=runtime.settings.default_phone_region,
                progress=progress,
            )

        return await in_transaction(runtime, work)
