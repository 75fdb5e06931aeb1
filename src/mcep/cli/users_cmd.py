"""``mcep users``: create users from the command line (the first admin, say)."""

from __future__ import annotations

import typer
from pydantic import EmailStr, TypeAdapter, ValidationError

from mcep.auth import service
from mcep.auth.models import Role
from mcep.cli.common import console, fail, in_transaction, open_runtime, run

app = typer.Typer(help="Users and roles.", no_args_is_help=True)
MIN_PASSWORD = 10


@app.command("create")
def create(
    email: str = typer.Option(..., "--email", help="The user's e-mail, used to log in"),
    role: Role = typer.Option(..., "--role", help="admin, pm or compliance"),
    pm_name: str | None = typer.Option(None, "--pm-name", help="The PM's name (role pm only)"),
    password: str | None = typer.Option(None, "--password", help="Prompted for when not given"),
) -> None:
    """Create a user; a PM user gets its own portfolio manager record."""
    try:
        email = TypeAdapter(EmailStr).validate_python(email)
    except ValidationError:
        fail(f"--email: {email!r} is not a valid e-mail address", code=2)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        fail(f"--password: at least {MIN_PASSWORD} characters are required", code=2)

    async def work() -> str:
        async with open_runtime(upgrade=True) as runtime:
            user = await in_transaction(
                runtime,
                lambda s: service.create_user(
                    s, email=email, password=password, role=role, pm_name=pm_name, actor="cli"
                ),
            )
            return str(user.id)

    console.print(f"created {role} user [bold]{email}[/] ({run(work())})")
