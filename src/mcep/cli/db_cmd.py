"""``mcep db``: schema migrations."""

from __future__ import annotations

import typer

from mcep.cli.common import console, open_runtime, run
from mcep.db import migrate

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("heads", help="Target revision")) -> None:
    """Apply migrations up to REVISION (every head by default)."""

    async def work() -> str:
        async with open_runtime() as runtime:
            await migrate.upgrade(runtime.engine, revision)
            return await migrate.current_revision(runtime.engine)

    console.print(f"database at revision [bold]{run(work())}[/]")


@app.command("current")
def current() -> None:
    """Show the database's revision and the newest one."""

    async def work() -> str:
        async with open_runtime() as runtime:
            return await migrate.current_revision(runtime.engine)

    console.print(f"database: {run(work())}  newest: {migrate.head_revision()}")
