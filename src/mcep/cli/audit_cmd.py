"""``mcep audit``: prove the audit chain unbroken."""

from __future__ import annotations

import typer

from mcep.audit import service
from mcep.cli.common import console, fail, in_transaction, open_runtime, run

app = typer.Typer(help="The tamper-evident audit chain.", no_args_is_help=True)


@app.command("verify")
def verify() -> None:
    """Walk the whole chain; exit 1 naming the first broken entry."""

    async def work() -> service.VerifyResult:
        async with open_runtime() as runtime:
            return await in_transaction(runtime, service.verify)

    result = run(work())
    if not result.ok:
        fail(
            f"audit chain broken at entry {result.broken_id}: {result.reason} "
            f"({result.checked} entries before it are intact)"
        )
    console.print(f"audit chain intact: {result.checked} entries verified")
