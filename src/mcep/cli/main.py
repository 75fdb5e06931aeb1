"""``mcep``: serve, work, import, administer. Each domain's commands live in its own module."""

from __future__ import annotations

import typer

from mcep.cli import (
    audit_cmd,
    db_cmd,
    demo_cmd,
    import_cmd,
    serve_cmd,
    users_cmd,
    worker_cmd,
)
from mcep.experiments import cli as experiments_cli
from mcep.sandbox import cli as sandbox_cli
from mcep.scoring import commands as scoring_cli

app = typer.Typer(
    name="mcep",
    help="MCEP: the Multi-Channel Client Engagement Platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("demo")(demo_cmd.demo)
app.command("serve")(serve_cmd.serve)
app.command("worker")(worker_cmd.worker)
app.add_typer(db_cmd.app, name="db")
app.add_typer(users_cmd.app, name="users")
app.add_typer(import_cmd.app, name="import")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(experiments_cli.app, name="experiments")
app.add_typer(sandbox_cli.app, name="sandbox")
app.add_typer(scoring_cli.app, name="scoring")


if __name__ == "__main__":
    app()
